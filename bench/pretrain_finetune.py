"""What a starting point is worth on real images: fine-tune from each init, test on real images.

For every (init, seed, shots) this trains ``semgen train``'s classifier on the real pool (all of
it, or ``shots`` images per class drawn as ``semgen ablate`` draws them), evaluates it on the real
test set, and prints one row; ``--out`` keeps every run, so an interrupted sweep resumes (finished
runs are not retrained). Inits are ``scratch``, ``imagenet``, ``semgen``, or a run dir /
checkpoint (e.g. a ``semgen pretrain`` run); ``NAME=INIT`` names a row; ``INIT@ARCH`` picks the arch.

``--cv K`` decides a recipe without the test set: the real pool is split into K stratified folds
(drawn with the seed), each fold is tested by a model trained on the other K-1, and a row reports
the mean macro-F1 over the folds. ``--val-fraction 0`` trains on every image and keeps the last
epoch; ``--head-only-epochs 1`` first fits the new head on the frozen backbone (LP-FT, Kumar et
al. 2022), so the random head's first gradients do not disturb the pretrained features.
``--tta d4`` evaluates with test-time augmentation (:mod:`semgen.classifier.tta`); runs already
trained are only evaluated again. ``--ensemble`` also evaluates the ensemble of each init's seeds
(``semgen ensemble``, :mod:`semgen.classifier.ensemble`) as a row of its own (seed ``ens``).
``--teacher RUN [--transfer DIR=W]`` fine-tunes every run by distillation (``semgen train
--teacher``, :mod:`semgen.classifier.distill`): the student learns the teacher's softened
predictions on the real pool and on the unlabelled transfer images; each row records its teachers.

Example (the figures in docs/results.md)::

    R=../shared/data/sem-real
    python bench/pretrain_finetune.py --real $R/train --test $R/dev_test --out out/ft \\
        --init scratch@mobilenetv3_small_100 --init semgen=out/pt/mnv3s --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semgen.ablation.subsets import load_pool, materialize, per_class_subset  # noqa: E402
from semgen.classifier.ensemble import make_ensemble  # noqa: E402
from semgen.classifier.distill import DistillConfig  # noqa: E402
from semgen.classifier.evaluate import evaluate_run  # noqa: E402
from semgen.classifier.train import train_classifier  # noqa: E402
from semgen.classifier.train_config import TrainConfig  # noqa: E402
from semgen.errors import SemgenError  # noqa: E402
from semgen.classifier.tta import TTA_MODES, metrics_name  # noqa: E402


def _parse_init(s: str) -> tuple[str, str, str | None]:
    name, _, rest = s.partition("=") if "=" in s else (None, "", s)
    init, _, arch = rest.partition("@")
    return (name or s), init, (arch or None)


def cv_folds(items: list, k: int) -> list[tuple[list, list]]:
    """``k`` stratified ``(train, test)`` item lists from ``per_class_subset``'s output (each class in
    its seeded order), dealt round-robin; dealing runs on across classes, so fold sizes differ by one."""
    folds: list[list] = [items[i::k] for i in range(k)]
    return [([it for j, f in enumerate(folds) if j != i for it in f], folds[i]) for i in range(k)]


def _print_row(row: dict) -> None:
    lo, hi = row["macro_f1_ci"]
    print(f"{row['name']:28s} {row['arch']:24s} {row['shots']:>5s} {row['seed']!s:>4s} {row['macro_f1']:9.3f} "
          f"[{lo:.3f}, {hi:.3f}] {row['accuracy']:6.3f} {row['minutes']:5.1f}", flush=True)


def _save_row(path: Path, row: dict) -> None:
    """Keep one line per (name, shots, seed): a resumed sweep replaces its rows, never repeats them."""
    key = (row["name"], row["shots"], row["seed"])
    old = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    keep = [r for r in old if (r["name"], r["shots"], r["seed"]) != key] + [row]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--real", required=True, help="real training pool (ImageFolder or dataset dir)")
    ap.add_argument("--test", help="real test set (not read with --cv)")
    ap.add_argument("--init", action="append", required=True, metavar="[NAME=]INIT[@ARCH]")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--shots", nargs="+", default=["all"], help="images per class: all or integers")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-fraction", type=float, default=0.2,
                    help="held out for early stopping; 0 = train on all, keep the last epoch")
    ap.add_argument("--head-only-epochs", type=int, default=0, help="epochs on the head alone first (LP-FT)")
    ap.add_argument("--recipe", default="", help="a tag appended to each row's name and run dir")
    ap.add_argument("--cv", type=int, default=0, metavar="K",
                    help="K-fold cross-validation on --real instead of testing on --test")
    ap.add_argument("--tta", default="none", choices=tuple(TTA_MODES),
                    help="test-time augmentation at evaluation (semgen evaluate --tta); a trained run is "
                    "evaluated again, not retrained, and its row's name gains _tta-MODE")
    ap.add_argument("--ensemble", action="store_true",
                    help="also evaluate the ensemble of each init's seeds (needs 2+ seeds; not with --cv)")
    ap.add_argument("--teacher", action="append", default=[], metavar="RUN",
                    help="distil from this run or ensemble (repeatable); see semgen train --teacher")
    ap.add_argument("--transfer", action="append", default=[], metavar="DIR[=W]",
                    help="unlabelled images only the teachers label (needs --teacher)")
    ap.add_argument("--distill-temperature", type=float, default=4.0)
    ap.add_argument("--distill-weight", type=float, default=0.7)
    ap.add_argument("--out", default="out/ft")
    a = ap.parse_args(argv)
    if not a.cv and not a.test:
        ap.error("--test is required (or --cv K)")
    if a.ensemble and (a.cv or len(a.seeds) < 2):
        ap.error("--ensemble needs 2 or more --seeds and no --cv (each seed draws its own folds)")
    out = Path(a.out)
    pool = load_pool(a.real)
    # the settings every run shares; each run replaces its data, out, arch, seed and init
    settings = dict(size=a.size, epochs=a.epochs, lr=a.lr, progress=False, num_threads=a.threads,
                    val_fraction=a.val_fraction, head_only_epochs=a.head_only_epochs)
    if a.teacher or a.transfer:
        try:  # --transfer without --teacher, or a weight over 1, is a one-line error before any run
            settings["distill"] = DistillConfig(teachers=a.teacher, transfer=a.transfer,
                                                temperature=a.distill_temperature, weight=a.distill_weight)
        except SemgenError as e:
            ap.error(str(e))
    # what every row (seed or ensemble) records of how it was fine-tuned, set once here
    recorded = {"val_fraction": a.val_fraction, "head_only_epochs": a.head_only_epochs, "tta": a.tta,
                **({"teachers": list(a.teacher), "transfer": list(a.transfer)} if a.teacher else {})}
    TrainConfig.make(data=a.real, out=out, **settings)  # a bad flag fails here, before any run
    rows = []
    tag = f"_{a.recipe}" if a.recipe else ""
    print(f"{'init':28s} {'arch':24s} {'shots':>5s} {'seed':>4s} {'macro-F1':>9s} {'95% CI':>15s} {'acc':>6s} {'min':>5s}")
    for spec in a.init:
        name, init, arch = _parse_init(spec)
        name = name + tag
        row_name = name + (f"_tta-{a.tta}" if a.tta != "none" else "")
        for shots in a.shots:
            k = None if shots == "all" else int(shots)
            for seed in a.seeds:
                items = per_class_subset(pool, k, seed)
                if a.cv:  # (train dir, test dir, run suffix) per fold; the test set is never read
                    jobs = [(materialize(tr, out / "subsets", tag=f"cv{a.cv} fold {f} train"),
                             materialize(te, out / "subsets", tag=f"cv{a.cv} fold {f} test"), f"_cv{a.cv}f{f}")
                            for f, (tr, te) in enumerate(cv_folds(items, a.cv))]
                else:
                    data = a.real if k is None else materialize(items, out / "subsets", tag=f"{k}-shot seed {seed}")
                    jobs = [(data, a.test, "")]
                t = time.perf_counter()
                scores = []
                for data, test, suffix in jobs:
                    run = out / f"{name.replace('/', '_')}_{shots}_s{seed}{suffix}"
                    train_classifier(data, out=run, arch=arch, seed=seed, init=None if init == "scratch" else init,
                                     **settings)
                    scores.append(evaluate_run(run, test, num_threads=a.threads, tta=a.tta, out_name=metrics_name(a.tta)))
                m = scores[0]
                lo, hi = m.get("ci", {}).get("macro_f1", [float("nan")] * 2)
                if a.cv:  # the spread over folds stands in for a confidence interval
                    f1s = [x["macro_f1"] for x in scores]
                    m = {"macro_f1": float(np.mean(f1s)), "accuracy": float(np.mean([x["accuracy"] for x in scores]))}
                    lo, hi = min(f1s), max(f1s)
                cfg = json.loads((run / "config.json").read_text())
                row = {"name": row_name, "init": init, "arch": cfg["arch"], "shots": shots, "seed": seed,
                       "macro_f1": m["macro_f1"], "macro_f1_ci": [lo, hi], "accuracy": m["accuracy"],
                       "minutes": (time.perf_counter() - t) / 60, "run": str(run), "cv": a.cv, **recorded}
                if a.cv:
                    row["fold_macro_f1"] = [x["macro_f1"] for x in scores]
                rows.append(row)
                _save_row(out / ("cv.jsonl" if a.cv else "results.jsonl"), row)
                _print_row(row)
            if a.ensemble:  # the seeds' runs above, averaged as one model
                t = time.perf_counter()
                ens = out / f"{name.replace('/', '_')}_{shots}_ens_s{'-'.join(map(str, a.seeds))}"
                make_ensemble([r["run"] for r in rows[-len(a.seeds):]], ens, overwrite=True)
                m = evaluate_run(ens, a.test, num_threads=a.threads, tta=a.tta, out_name=metrics_name(a.tta))
                lo, hi = m["ci"]["macro_f1"]
                row = {"name": row_name, "init": init, "arch": rows[-1]["arch"], "shots": shots, "seed": "ens",
                       "seeds": list(a.seeds), "macro_f1": m["macro_f1"], "macro_f1_ci": [lo, hi],
                       "accuracy": m["accuracy"], "minutes": (time.perf_counter() - t) / 60, "run": str(ens),
                       "cv": 0, **recorded}
                _save_row(out / "results.jsonl", row)
                _print_row(row)
    print("\nmean over seeds:")
    groups: dict = {}
    for r in rows:  # the ensemble rows printed above are not seeds
        groups.setdefault((r["name"], r["shots"]), []).append(r["macro_f1"])
    for (name, shots), v in groups.items():
        print(f"  {name:28s} shots {shots:>4s}: macro-F1 {np.mean(v):.3f} (seeds: {', '.join(f'{x:.3f}' for x in v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
