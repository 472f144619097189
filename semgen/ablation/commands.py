"""CLI: ``semgen ablate``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..cli import long_running
from ..errors import SemgenError
from ..parallel import add_executor_args, backend_from_args

QUICK_LIMIT_S = 15 * 60


def register(sub) -> None:
    p = sub.add_parser(
        "ablate",
        help="measure what synthetic data adds on real test images (experiment matrix, seeds, CIs)",
        description="Train the classifier on every cell of an experiment matrix (arms x real shots x seeds), "
                    "evaluate on real test sets, and report mean and 95 % bootstrap CIs. Cells are cached: "
                    "re-running resumes, and a widened matrix reuses finished cells.",
    )
    long_running(p)
    p.add_argument("config", nargs="?", help="YAML config (see docs/ablation.md); flags below override it")
    p.add_argument("--out", "-o", default=None, help="output dir (default: runs/ablate-<config name>)")
    p.add_argument("--preset", choices=("quick", "full"), help="quick: a small matrix, about 8 min on 2 free CPU cores; full: the published matrix (hours)")
    p.add_argument("--real", metavar="DIR", help="real training pool: dataset dir or ImageFolder")
    p.add_argument("--test", action="append", metavar="[NAME=]DIR", help="real test set (repeatable)")
    p.add_argument("--synthetic", action="append", metavar="NAME=DIR", help="synthetic source (repeatable)")
    p.add_argument("--amount", help="synthetic images per class for --synthetic sources (int or 'all')")
    p.add_argument("--shots", nargs="+", help="real images per class, e.g. 5 10 20 all")
    p.add_argument("--seeds", type=int, help="number of seeds (>= 3)")
    p.add_argument("--arms", nargs="+", metavar="ARM",
                   help="real | synthetic:NAME | mix:NAME:RATIO | pretrain:NAME (default: all four per source)")
    p.add_argument("--epochs", type=int, help="training epochs of every stage (synthetic pretraining and fine-tuning too)")
    p.add_argument("--size", type=int, help="image size for the classifier")
    p.add_argument("--arch", help="classifier architecture (timm name)")
    # no argparse choices: the config's field says what is wrong in one line, for the flag and the YAML alike
    p.add_argument("--tta", metavar="{none,flips,d4}",
                   help="test-time augmentation of every evaluation: average over 4 (flips) or 8 (d4) flipped and "
                        "turned views; costs 4x / 8x evaluation, retrains nothing (cached cells are re-evaluated)")
    p.add_argument("--cache", metavar="DIR", help="cell cache dir (default OUT/cache); share it between runs to reuse cells")
    p.add_argument("--estimate", action="store_true", help="state the expected time and stop")
    p.add_argument("--report", action="store_true", help="only rebuild summary.md / plots from OUT/results.jsonl")
    add_executor_args(p)
    p.set_defaults(func=_ablate)


def _overrides(args) -> dict:
    o: dict = {}
    if args.real:
        o["real"] = str(Path(args.real).resolve())
    if args.test:
        tests = {}
        for t in args.test:
            name, sep, path = t.partition("=")
            if not sep:
                name, path = Path(t).name, t
            tests[name] = str(Path(path).resolve())
        o["test"] = tests
    if args.synthetic:
        syn = {}
        for s in args.synthetic:
            name, sep, path = s.partition("=")
            if not sep or not name or not path:
                raise SemgenError(f"--synthetic {s}: expected NAME=DIR (e.g. procedural=data/proc)")
            syn[name] = {"path": str(Path(path).resolve()), "amount": args.amount or "all"}
        o["synthetic"] = syn
    elif args.amount:
        raise SemgenError("--amount applies to --synthetic sources; set amounts in the config file instead")
    if args.shots:
        o["shots"] = [int(s) if s.isdigit() else s for s in args.shots]
    if args.seeds is not None:
        o["seeds"] = args.seeds
    if args.arms:
        o["arms"] = args.arms
    clf = {k: v for k, v in (("epochs", args.epochs), ("size", args.size), ("arch", args.arch)) if v is not None}
    if clf:
        o["classifier"] = clf
        if args.epochs is not None:
            o["finetune"] = {"epochs": args.epochs}
    if args.tta is not None:
        o["tta"] = args.tta
    if args.cache:
        o["cache"] = str(Path(args.cache).resolve())
    return o


def _ablate(args) -> int:
    from ..manifests.ops import check_writable_dir
    from .config import load_config

    out = Path(args.out) if args.out else Path("runs") / f"ablate-{Path(args.config).stem if args.config else 'cli'}"
    check_writable_dir(out)  # before the config is read: a file or read-only --out is one line, never a traceback
    if args.report:
        from .report import write_report

        write_report(out)
        print(f"report rewritten: {out / 'summary.md'}")
        return 0
    cfg = load_config(args.config, preset=args.preset, overrides=_overrides(args))
    from .runner import run_ablation

    with backend_from_args(args) as backend:
        res = run_ablation(cfg, out, estimate_only=args.estimate, progress=not args.no_progress,
                           warn_seconds=QUICK_LIMIT_S if args.preset == "quick" else None, backend=backend)
    if args.estimate:
        est, free = res["estimate_s"], res.get("estimate_free_s")
        what = f"{res['cells']} cells, {res['cells'] - res['reused']} to train, {res['evaluations']} evaluations to run"
        if est is None:
            print(f"{what}: no estimate")
        else:
            print(f"{what}: about {est / 60:.1f} min at the "
                  "measured speed" + (f", {free / 60:.1f} min on free cores" if free else ""))
        return 0
    if args.preset == "quick" and res["wall_s"] > QUICK_LIMIT_S:
        print(f"semgen: warning: this quick run took {res['wall_s'] / 60:.1f} min, over the 15 min the preset "
              "aims for", file=sys.stderr)
    print(f"{res['cells']} cells ({res['trained']} trained, {res['reused']} reused) in {res['wall_s'] / 60:.1f} min; "
          f"see {out / 'summary.md'}")
    return 0
