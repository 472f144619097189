"""CLI: ``semgen procedural`` (generate / list classes) and ``semgen sheet`` (contact sheets)."""

from __future__ import annotations

import json
import os
import sys

from ...cli import long_running
from ...errors import SemgenError


def register(sub) -> None:
    from ...parallel import add_executor_args
    from . import DEFAULT_OUT, POOL_FROM

    p = sub.add_parser(
        "procedural", help="generate synthetic SEM images of a class with the procedural simulator",
        description="Generate N synthetic SEM images of a class into a dataset dir (resumes an "
                    "interrupted run of the same command). --list shows the classes and parameters.")
    long_running(p)
    p.add_argument("--class", dest="cls", metavar="CLASS", help="class (or alias) to generate, e.g. bridge")
    p.add_argument("--n", type=int, help="number of images (the whole run; a shard makes its share)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="dataset dir to write")
    p.add_argument("--size", type=int, default=256, help="image width and height in pixels")
    p.add_argument("--seed", type=int, default=0, help="master seed")
    p.add_argument("--workers", type=int, default=None,
                   help=f"processes; the output does not depend on it (default: 2 for {POOL_FROM} images or more "
                        "on a machine with 2 cores or more, else 1)")
    add_executor_args(p)
    p.add_argument("--shard", metavar="K/N", help="make only shard K of N (K = 0..N-1) of the indices")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a parameter (NAME=v), or change how it is sampled: NAME=lo:hi (a range within "
                        "its limits), NAME=a,b,c or NAME=a:2,b:1 (choices, optional weights); repeatable; see --list")
    p.add_argument("--profile", metavar="FILE.yaml",
                   help="per-class ranges, choice weights and values (e.g. from `semgen tune`); --set wins")
    p.add_argument("--list", action="store_true",
                   help="list classes with their parameters, defaults and effective ranges (with --profile/--set)")
    p.add_argument("--json", action="store_true", help="with --list: print JSON")
    p.set_defaults(func=_procedural)

    s = sub.add_parser("sheet", help="contact sheet of a dataset dir (optionally beside real images)")
    s.add_argument("dir", help="dataset dir (or ImageFolder tree)")
    s.add_argument("--beside", metavar="DIR", help="dataset dir or ImageFolder tree to show next to it, per class")
    s.add_argument("--per-class", type=int, default=16, help="images per class and side")
    s.add_argument("--classes", nargs="+", metavar="CLASS", help="only these classes (default: every class)")
    s.add_argument("--cell", type=int, default=96, help="thumbnail size in pixels")
    s.add_argument("--seed", type=int, default=0, help="seed of which images are picked")
    s.add_argument("-o", "--out", required=True, metavar="FILE.png", help="output PNG")
    s.set_defaults(func=_sheet)


def _overrides(args) -> tuple[dict, dict, dict | None]:
    """``(pins, ranges, profile)`` from ``--set`` and ``--profile``."""
    from .params import split_sets
    from .profile import load_profile

    pins, ranges = split_sets(args.sets)
    return pins, ranges, (load_profile(args.profile) if args.profile else None)


def _procedural(args) -> int:
    if args.list:
        return _list(args)
    if not args.cls:
        raise SemgenError("--class is required (or --list to see the classes)")
    if args.n is None:
        raise SemgenError("--n is required")
    from ...parallel import backend_from_args, start_pool_early
    from . import POOL_FROM, POOL_PRELOAD

    if args.workers is None:
        args.workers = min(2, os.cpu_count() or 1) if args.n >= POOL_FROM else 1
    if args.workers > 1 and args.executor == "local":
        start_pool_early(POOL_PRELOAD)  # its workers' imports, while this process makes its own
    from .generation import generate

    pins, ranges, profile = _overrides(args)
    with backend_from_args(args) as backend:
        res = generate(args.cls, args.n, args.out, seed=args.seed, size=args.size, workers=args.workers,
                       shard=args.shard, overrides=pins, ranges=ranges, profile=profile,
                       progress=not args.no_progress, backend=backend)
    print(f"{res['out']}: {res['label']} ({res['generator']}): made {res['made']}, "
          f"already there {res['skipped']}, {res['total']} in this run")
    return 0


def _list(args) -> int:
    return _write_list(args, sys.stdout)  # a closed pipe (`--list | head`) ends quietly in semgen.cli


def _write_list(args, out) -> int:
    from .generation import run_profile
    from .registry import create_generator, list_generators

    names = [create_generator(args.cls).name] if args.cls else list_generators()
    set_pins, set_ranges, profile = _overrides(args)
    if (set_pins or set_ranges) and not args.cls:
        raise SemgenError("--list with --set needs --class (parameters differ between classes)")
    rows = []
    for name in names:
        g = create_generator(name)
        pins, ranges, _ = run_profile(g, profile, set_pins, set_ranges)
        eff = g.with_ranges(ranges).space
        fixed = eff.check_overrides(pins)

        def row(n, eff=eff, fixed=fixed):
            d = eff[n].describe()
            if n in fixed:
                d["range"] = f"= {fixed[n]} (set)"
            return d

        own = set(g.params.names)
        changed = [n for n in eff.names if n not in own and (n in ranges or n in fixed or n in g.overlay_p)]
        rows.append({"name": g.name, "label": g.label, "version": g.version, "description": g.description,
                     "class_params": [row(n) for n in g.params.names] + [row(n) for n in changed],
                     "imaging_params": None})
    from .imaging import IMAGING

    if args.json:
        from .overlays import OVERLAYS

        for r in rows:
            r["imaging_params"] = IMAGING.describe()
            r["overlay_params"] = OVERLAYS.describe()
        out.write(json.dumps(rows, indent=2, default=str) + "\n")
        out.flush()
        return 0
    for r in rows:
        out.write(f"{r['name']}  (class {r['label']}, v{r['version']}): {r['description']}\n")
        _table(r["class_params"], out)
        out.write("\n")
    out.write("imaging parameters (every class):\n")
    _table(IMAGING.describe(), out)
    from .overlays import OVERLAYS

    out.write("\noverlay parameters (every class; bool defaults are per-image probabilities):\n")
    _table(OVERLAYS.describe(), out)
    out.flush()  # a closed pipe shows here, inside _list's handler, not at interpreter exit
    return 0


def _table(rows: list[dict], out) -> None:
    if not rows:
        out.write("  (none)\n")
        return
    wn = max(len(r["name"]) for r in rows)
    wd = max(len(str(r["default"])) for r in rows)
    wr = min(40, max(len(r["range"]) for r in rows))
    wu = max(len(r["unit"]) for r in rows)
    for r in rows:
        when = ""
        if r.get("when"):
            when = " [" + ", ".join(f"{k}={'|'.join(map(str, v))}" for k, v in r["when"].items()) + "]"
        line = f"  {r['name']:<{wn}}  {str(r['default']):<{wd}}  {r['range']:<{wr}}  {r['unit']:<{wu}}  {r['doc']}{when}"
        out.write(line.rstrip() + "\n")


def _sheet(args) -> int:
    from .sheet import contact_sheet

    res = contact_sheet(args.dir, args.out, beside=args.beside, per_class=args.per_class, classes=args.classes,
                        cell=args.cell, seed=args.seed)
    print(f"wrote {res['out']} ({res['width']}x{res['height']}, {len(res['classes'])} classes)")
    return 0
