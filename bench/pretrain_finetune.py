"""What a starting point is worth on real images: fine-tune from each init, test on real images.

For every (init, seed, shots) this trains ``semgen train``'s classifier on the real pool (all of
it, or ``shots`` images per class drawn as ``semgen ablate`` draws them), evaluates it on the real
test set, and prints one row; ``--out`` keeps every run, so an interrupted sweep resumes (finished
runs are not retrained). Inits are ``scratch``, ``imagenet``, ``semgen``, or a run dir /
checkpoint (e.g. a ``semgen pretrain`` run); ``NAME=INIT`` names a row; ``INIT@ARCH`` picks the arch.

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
from semgen.classifier.evaluate import evaluate_run  # noqa: E402
from semgen.classifier.train import train_classifier  # noqa: E402


def _parse_init(s: str) -> tuple[str, str, str | None]:
    name, _, rest = s.partition("=") if "=" in s else (None, "", s)
    init, _, arch = rest.partition("@")
    return (name or s), init, (arch or None)


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
    ap.add_argument("--test", required=True, help="real test set")
    ap.add_argument("--init", action="append", required=True, metavar="[NAME=]INIT[@ARCH]")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--shots", nargs="+", default=["all"], help="images per class: all or integers")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/ft")
    a = ap.parse_args(argv)
    out = Path(a.out)
    pool = load_pool(a.real)
    rows = []
    print(f"{'init':28s} {'arch':24s} {'shots':>5s} {'seed':>4s} {'macro-F1':>9s} {'95% CI':>15s} {'acc':>6s} {'min':>5s}")
    for spec in a.init:
        name, init, arch = _parse_init(spec)
        for shots in a.shots:
            k = None if shots == "all" else int(shots)
            for seed in a.seeds:
                data = a.real if k is None else materialize(per_class_subset(pool, k, seed), out / "subsets",
                                                            tag=f"{k}-shot seed {seed}")
                run = out / f"{name.replace('/', '_')}_{shots}_s{seed}"
                t = time.perf_counter()
                train_classifier(data, run, arch=arch, init=None if init == "scratch" else init, size=a.size,
                                 epochs=a.epochs, lr=a.lr, seed=seed, progress=False, num_threads=a.threads)
                m = evaluate_run(run, a.test, num_threads=a.threads)
                lo, hi = m.get("ci", {}).get("macro_f1", [float("nan")] * 2)
                cfg = json.loads((run / "config.json").read_text())
                row = {"name": name, "init": init, "arch": cfg["arch"], "shots": shots, "seed": seed,
                       "macro_f1": m["macro_f1"], "macro_f1_ci": [lo, hi], "accuracy": m["accuracy"],
                       "minutes": (time.perf_counter() - t) / 60, "run": str(run)}
                rows.append(row)
                _save_row(out / "results.jsonl", row)
                print(f"{name:28s} {row['arch']:24s} {shots:>5s} {seed:>4d} {row['macro_f1']:9.3f} "
                      f"[{lo:.3f}, {hi:.3f}] {row['accuracy']:6.3f} {row['minutes']:5.1f}", flush=True)
    print("\nmean over seeds:")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["name"], r["shots"]), []).append(r["macro_f1"])
    for (name, shots), v in groups.items():
        print(f"  {name:28s} shots {shots:>4s}: macro-F1 {np.mean(v):.3f} (seeds: {', '.join(f'{x:.3f}' for x in v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
