"""Curation: texture metrics, scoring, deduplication, leakage checks, reports, and ImageFolder import.

Library entry points: :func:`semgen.curation.curate.curate` (its settings:
:class:`semgen.curation.curate_config.CurateConfig`), :func:`semgen.curation.importer.import_imagefolder`,
:func:`semgen.curation.metrics.compute_metrics`, :class:`semgen.curation.index.HammingIndex`,
:func:`semgen.curation.report.write_report`. The CLI (``semgen curate``, ``semgen import``) wraps them.
"""
