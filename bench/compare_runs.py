"""Two groups of trained runs (one per seed) on the same real test set: each group's macro-F1 and the
paired difference, with the joint seed x image bootstrap of ``semgen ablate`` (semgen.ablation.stats,
on the one bootstrap core and macro-F1 of semgen.classifier.metrics).

Example::

    python bench/compare_runs.py --test ../shared/data/sem-real/dev_test \\
        --a out/ft/mnv3s_scratch_all_s{0,1,2} --b out/ft/mnv3s_semgen96k_all_s{0,1,2}

``--tta d4`` evaluates both groups with test-time augmentation; ``--tta-b d4`` only group B (give
the same runs as A and B to measure what test-time augmentation adds). A run may be an ensemble
folder (``semgen ensemble``): compare one ensemble with another, one "seed" each. ``--saved``
reads the predictions that ``semgen evaluate`` / ``bench/pretrain_finetune.py`` saved in each run
(``metrics.json``, ``metrics_tta-d4.json``) when they were made on the same test set with the same
``--tta``, and evaluates only the runs without them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semgen.ablation.stats import bootstrap, paired_difference  # noqa: E402
from semgen.classifier.evaluate import evaluate_run  # noqa: E402
from semgen.classifier.tta import TTA_MODES, metrics_name  # noqa: E402


def _saved(run, test, tta: str) -> dict | None:
    """The metrics ``semgen evaluate`` wrote in ``run`` for ``test`` and ``tta``, if any."""
    f = Path(run) / metrics_name(tta)
    if not f.is_file():
        return None
    m = json.loads(f.read_text())
    same = [os.path.realpath(d) for d in m.get("data", [])] == [os.path.realpath(test)]
    return m if same and m.get("tta", "none") == tta else None


def predictions(run, test, tta: str = "none", saved: bool = False) -> tuple[list[str], list[str]]:
    """(true labels, predicted labels) of a run's best checkpoint on ``test``, as ``semgen evaluate``
    (``--tta``) has them (``saved``: from the run's metrics file for them, if there is one)."""
    m = _saved(run, test, tta) if saved else None
    if m is not None:
        classes = m["classes"]
        return [classes[i] for i in m["y_true"]], [classes[i] for i in m["y_pred"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = evaluate_run(run, test, n_boot=0, write=False, tta=tta)
    classes = m["classes"]
    return [classes[i] for i in m["y_true"]], [classes[i] for i in m["y_pred"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", required=True)
    ap.add_argument("--a", nargs="+", required=True, help="runs of group A (one per seed)")
    ap.add_argument("--b", nargs="+", required=True, help="runs of group B (same seeds, same order)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--tta", default="none", choices=tuple(TTA_MODES),
                    help="test-time augmentation of both groups (semgen evaluate --tta)")
    ap.add_argument("--tta-b", default=None, choices=tuple(TTA_MODES),
                    help="group B's test-time augmentation instead (e.g. the same runs with and without)")
    ap.add_argument("--saved", action="store_true",
                    help="use each run's saved metrics file for this test set and --tta where there is one")
    a = ap.parse_args(argv)
    ya = [predictions(r, a.test, a.tta, a.saved) for r in a.a]
    yb = [predictions(r, a.test, a.tta_b or a.tta, a.saved) for r in a.b]
    y = ya[0][0]
    for name, group in (("A", ya), ("B", yb)):
        s = bootstrap(y, [p for _, p in group], n_boot=a.n_boot)
        m = s["macro_f1"]
        print(f"{name}: macro-F1 {m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}], accuracy "
              f"{s['accuracy']['mean']:.3f}  ({len(group)} seeds)")
    d = paired_difference(y, [p for _, p in ya], [p for _, p in yb], n_boot=a.n_boot)
    m = d["macro_f1"]
    print(f"B - A: macro-F1 {m['mean']:+.3f} [{m['lo']:+.3f}, {m['hi']:+.3f}], accuracy "
          f"{d['accuracy']['mean']:+.3f} [{d['accuracy']['lo']:+.3f}, {d['accuracy']['hi']:+.3f}]")
    print("per-class F1 change: " + ", ".join(f"{c} {v['f1']['mean']:+.2f}" for c, v in d["per_class"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
