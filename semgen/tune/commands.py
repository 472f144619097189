"""CLI: ``semgen tune`` (thin over :func:`semgen.tune.search.tune`)."""

from __future__ import annotations

from ..cli import long_running
from ..errors import SemgenError


def register(sub) -> None:
    p = sub.add_parser(
        "tune", help="fit each class's parameter ranges and choice weights to real reference images (Optuna TPE)",
        description="Search per-class sampling ranges so that generated images match a real reference "
                    "(objective: cross-validated AUC of a real-vs-generated discriminator on texture metrics) "
                    "and write a --profile for `semgen procedural`. Resumes from PROFILE.tune/optuna.db. "
                    "Give it a training pool only, never a test set.")
    long_running(p)
    p.add_argument("--reference", required=True, metavar="REAL_DIR", help="real images: dataset dir or ImageFolder")
    p.add_argument("--out", required=True, metavar="PROFILE.yaml", help="profile to write (work files in PROFILE.tune/)")
    p.add_argument("--classes", nargs="+", metavar="CLASS", help="classes to tune (default: every class the reference has)")
    p.add_argument("--trials", type=int, default=30, help="trials per class in all, resumed ones included")
    p.add_argument("--minutes", type=float, help="wall-clock budget of the search (evaluation and sheets on top)")
    p.add_argument("--n", type=int, default=30, help="generated images per trial and class")
    p.add_argument("--size", type=int, default=64, help="image side for the objective")
    p.add_argument("--seed", type=int, default=0, help="master seed")
    p.add_argument("--no-sheets", action="store_true", help="skip the before/after contact sheets")
    p.set_defaults(func=_tune)


def _tune(args) -> int:
    try:
        from .search import tune
    except ImportError as e:  # optuna / scikit-learn are the `tune` extra
        raise SemgenError(f"semgen tune needs the tune extra: pip install 'semgen[tune]' ({e.name} missing)") from None
    rep = tune(args.reference, args.out, classes=args.classes, trials=args.trials, minutes=args.minutes,
               n_images=args.n, size=args.size, seed=args.seed, sheets=not args.no_sheets,
               progress=not args.no_progress)
    for lb, r in rep["classes"].items():
        print(f"{lb}: discriminator AUC {r['before_auc']:.3f} (defaults) -> {r['after_auc']:.3f} (profile), "
              f"{r['trials']} trials")
    print(f"wrote {rep['profile']} and {rep['profile'].rsplit('.', 1)[0]}.tune/report.md")
    return 0
