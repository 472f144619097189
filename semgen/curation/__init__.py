"""Curation: texture metrics, scoring, deduplication, leakage checks, reports, and ImageFolder import.

Library entry points: :func:`semgen.curation.curate.curate` (its settings:
:class:`semgen.curation.curate_config.CurateConfig`), :func:`semgen.curation.importer.import_imagefolder`,
:func:`semgen.curation.metrics.compute_metrics`, :class:`semgen.curation.index.HammingIndex`,
:func:`semgen.curation.report.write_report`. The CLI (``semgen curate``, ``semgen import``) wraps them.
"""

#: Imported once by the fork server of the analysis pools rather than by every worker: about 1.5 s
#: of CPU per worker (scipy, OpenCV, PIL, numba and the compiled metrics). ``__main__`` is the fork
#: server's own default, which a preload list replaces: without it every worker would import the
#: main script again. Here, not in ``curate``, so that the CLI can start that server
#: (:func:`semgen.parallel.start_pool_early`) before it imports the curation code itself.
ANALYSIS_MODULES = ("__main__", "semgen.curation.analyze", "semgen.curation.pixelstats")
