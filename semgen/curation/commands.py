"""CLI: ``semgen curate`` and ``semgen import`` (thin wrappers over the library)."""

from __future__ import annotations

import os
import sys

from ..cli import long_running
from ..imageio import MAX_PIXELS
from ..parallel import add_executor_args, backend_from_args, start_pool_early
from . import ANALYSIS_MODULES
from .dedup import HASH_RADIUS, LEAK_RMS_FLOOR, MAX_LOCAL, MAX_RMS, NOISE_RATIO, PHASH_RADIUS, RMS_FLOOR


def register(sub) -> None:
    p = sub.add_parser(
        "curate", help="score, deduplicate and leak-check a dataset dir into a new one",
        description="Keep the plausible, distinct, non-leaking images of a dataset dir, with a reason for "
                    "every rejection. The input dir is never modified.")
    long_running(p)
    p.add_argument("input", help="dataset dir to curate")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="new dataset dir for the kept images")
    p.add_argument("--reference", metavar="DIR", help="dataset dir or ImageFolder whose per-class metrics define 'typical' "
                                       "(e.g. real train images imported with `semgen import`)")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON with sanity thresholds, z_max and per-class metric bands")
    p.add_argument("--against", metavar="DIR", help="test set (dataset dir or ImageFolder): drop near-duplicates of its images")
    p.add_argument("--no-dihedral", action="store_true",
                   help="match test images only as they are, not also rotated / flipped")
    p.add_argument("--per-class", type=int, metavar="N", help="keep at most the N best per class")
    p.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="analysis processes (default: 2, or 1 on a 1-core machine)")
    add_executor_args(p)
    p.add_argument("--hash-radius", type=int, default=HASH_RADIUS,
                   help=f"thumbnail-SimHash Hamming radius for near-duplicate candidates (default {HASH_RADIUS})")
    p.add_argument("--phash-radius", type=int, default=PHASH_RADIUS,
                   help=f"imagehash pHash radius for more candidates; -1 turns it off (default {PHASH_RADIUS})")
    p.add_argument("--max-local", type=float, default=MAX_LOCAL,
                   help=f"largest local thumbnail deviation of a near-duplicate, robust sigmas (default {MAX_LOCAL})")
    p.add_argument("--noise-ratio", type=float, default=NOISE_RATIO,
                   help="largest thumbnail difference RMS of a near-duplicate, in units of what the two images' "
                        f"noise predicts (default {NOISE_RATIO})")
    p.add_argument("--rms-floor", type=float, default=RMS_FLOOR,
                   help=f"difference RMS (z units) always allowed for a near-duplicate (default {RMS_FLOOR})")
    p.add_argument("--leak-rms-floor", type=float, default=LEAK_RMS_FLOOR,
                   help=f"the same for a near-duplicate of a test image (default {LEAK_RMS_FLOOR})")
    p.add_argument("--max-rms", type=float, default=MAX_RMS,
                   help=f"difference RMS (z units) never allowed, whatever the noise (default {MAX_RMS})")
    p.add_argument("--z-max", type=float, help="robust z beyond which a metric is atypical (default 6)")
    p.add_argument("--cache", metavar="FILE", help="analysis cache file (default: $SEMGEN_CACHE_DIR or ~/.cache/semgen/curation.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the analysis cache")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="larger images are rejected as too_large")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if any input image is unreadable or any manifest line makes no image")
    p.set_defaults(func=_curate)

    p = sub.add_parser(
        "import", help="turn an ImageFolder tree into a dataset dir (source: real)",
        description="ROOT/<class>/*.{png,jpg,tif,...} -> dataset dir. Grayscale PNGs are hard-linked; colour, "
                    "palette, alpha and other formats become new 8-bit grayscale PNGs. Resumable.")
    long_running(p)
    p.add_argument("root", help="ImageFolder root (class sub-folders)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="dataset dir to write (resumed if it exists)")
    p.add_argument("--label-map", nargs="+", default=[], metavar="RAW=CLASS",
                   help="map folder names to classes before the taxonomy's aliases")
    p.add_argument("--source", default="real", help="record source")
    p.add_argument("--allow-16bit", action="store_true", help="rescale 16-bit images instead of rejecting them")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="larger images are rejected as too_large")
    p.add_argument("--strict", action="store_true", help="exit 1 if any input image is unreadable")
    add_executor_args(p)
    p.set_defaults(func=_import)


def _strict(run, **kw):
    """``(result, failure)``: the library decides what ``--strict`` fails on; the CLI only reports it."""
    from ..errors import StrictFailure

    try:
        return run(**kw), None
    except StrictFailure as e:
        return e.result, e


def _fail(failure) -> int:
    print(f"semgen: error: {failure}", file=sys.stderr)
    return 1


def _curate(args) -> int:
    if args.workers > 1 and args.executor == "local":
        start_pool_early(ANALYSIS_MODULES)  # its workers' imports, while this process makes its own
    from .curate import REJECTED_NAME, curate
    from .curate_config import CurateConfig

    cfg = CurateConfig.make(
        input=args.input, out=args.out, reference=args.reference, config=args.config,
        against=args.against, per_class=args.per_class, workers=args.workers,
        cache=False if args.no_cache else (args.cache or True),
        hash_radius=args.hash_radius, phash_radius=args.phash_radius, max_local=args.max_local,
        max_rms=args.max_rms, noise_ratio=args.noise_ratio, rms_floor=args.rms_floor,
        leak_rms_floor=args.leak_rms_floor, z_max=args.z_max, max_pixels=args.max_pixels,
        dihedral=not args.no_dihedral, strict=args.strict, progress=not args.no_progress)
    with backend_from_args(args) as backend:
        res, failure = _strict(curate, input_dir=cfg, backend=backend)
    c = res.counts()
    print(f"curated {c['input']} images from {args.input}: kept {c['kept']}, rejected {c['rejected']} "
          f"({c['computed']} analysed, {c['cached']} from cache)")
    for k, v in sorted(c["reasons"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:<22} {v:>7}")
    print(f"kept -> {res.out}/metadata.jsonl; rejected -> {res.out}/{REJECTED_NAME}")
    if args.report:
        from .report import write_report

        try:
            path = write_report(res, args.report)
        except OSError as e:  # the outputs are written; only the report failed
            from ..errors import SemgenError

            raise SemgenError(f"cannot write the report {args.report}: {e.strerror or e} "
                              f"(the curated dir {res.out} is complete)") from None
        print(f"report -> {path}")
    return _fail(failure) if failure else 0


def _import(args) -> int:
    from .importer import REJECTED_NAME, import_imagefolder, parse_label_map

    label_map = parse_label_map(args.label_map)
    with backend_from_args(args) as backend:
        res, failure = _strict(import_imagefolder, root=args.root, out=args.out, label_map=label_map,
                               source=args.source, allow_16bit=args.allow_16bit, max_pixels=args.max_pixels,
                               strict=args.strict, progress=not args.no_progress, backend=backend)
    print(f"imported {res.added} images into {res.out} ({res.linked} linked, {res.converted} converted to "
          f"8-bit grayscale PNG), {res.skipped} already there, {len(res.rejected)} rejected")
    for rel, reason, detail in res.rejected[:20]:
        print(f"  rejected {rel}: {reason}" + (f" ({detail})" if detail else ""))
    if len(res.rejected) > 20:
        print(f"  ... see {res.out}/{REJECTED_NAME}")
    return _fail(failure) if failure else 0
