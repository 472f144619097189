"""CLI: ``semgen tune`` (thin over :func:`semgen.tune.search.tune`)."""

from __future__ import annotations

from ..cli import long_running
from ..errors import SemgenError


def register(sub) -> None:
    p = sub.add_parser(
        "tune", help="fit each class's parameter ranges and choice weights to real reference images (Optuna TPE)",
        description="Search per-class sampling ranges so that generated images match a real reference "
                    "(objective: macro-F1 on the reference of a probe trained on generated images (tstr, the "
                    "default), or the AUC of a real-vs-generated discriminator on texture metrics (auc)) "
                    "and write a --profile for `semgen procedural`. Resumes from PROFILE.tune/optuna.db. "
                    "Give it a training pool only, never a test set.")
    long_running(p)
    p.add_argument("--reference", required=True, metavar="REAL_DIR", help="real images: dataset dir or ImageFolder")
    p.add_argument("--out", required=True, metavar="PROFILE.yaml", help="profile to write (work files in PROFILE.tune/)")
    p.add_argument("--classes", nargs="+", metavar="CLASS", help="classes to tune (default: every class the reference has)")
    p.add_argument("--trials", type=int, default=30, help="trials per class in all, resumed ones included")
    p.add_argument("--minutes", type=float, help="wall-clock budget of the search (evaluation and sheets on top)")
    p.add_argument("--n", type=int, default=30, help="generated images per trial and class")
    p.add_argument("--select-n", type=int, metavar="N",
                   help="generated images per class of the selection and check sets (default 8 x --n)")
    p.add_argument("--size", type=int, help="image side for the objective (default 64 for auc, 128 for tstr)")
    p.add_argument("--objective", choices=("tstr", "auc"), default="tstr",
                   help="tstr: macro-F1 on the reference of a linear probe on frozen features, fitted on generated "
                        "images (what the data is for); auc: a texture discriminator's AUC (measured: its profiles "
                        "made pretraining worse)")
    p.add_argument("--features", default="imagenet", metavar="INIT",
                   help="tstr: the frozen backbone, any `semgen train --init` value (default imagenet: the imagenet extra)")
    p.add_argument("--features-arch", metavar="ARCH", help="tstr: its architecture (default: the init's own)")
    p.add_argument("--seed", type=int, default=0, help="master seed")
    p.add_argument("--no-sheets", action="store_true", help="skip the before/after contact sheets")
    p.set_defaults(func=_tune)


def _tune(args) -> int:
    try:
        from .search import tune
    except ImportError as e:  # optuna / scikit-learn are the `tune` extra
        raise SemgenError(f"semgen tune needs the tune extra: pip install 'semgen[tune]' ({e.name} missing)") from None
    rep = tune(args.reference, args.out, classes=args.classes, trials=args.trials, minutes=args.minutes,
               n_images=args.n, size=args.size, seed=args.seed, objective=args.objective, features=args.features,
               features_arch=args.features_arch, select_n=args.select_n, sheets=not args.no_sheets,
               progress=not args.no_progress)
    what = "discriminator AUC" if args.objective == "auc" else "TSTR macro-F1"
    for lb, r in rep["classes"].items():
        print(f"{lb}: {what} {r['before']:.3f} (defaults) -> {r['after']:.3f} (profile), {r['trials']} trials")
    if "joint" in rep:
        j = rep["joint"]
        print(f"every class at once: TSTR macro-F1 {j['before']['macro_f1']:.3f} (defaults) -> "
              f"{j['after']['macro_f1']:.3f} (profile)")
    print(f"wrote {rep['profile']} and {rep['profile'].rsplit('.', 1)[0]}.tune/report.md")
    return 0
