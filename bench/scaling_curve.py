"""The scaling curve of issue 11: real-test macro-F1 against the synthetic samples a model's
backbone saw, from fine-tuned runs and ensembles already made, as a table and a plot.

Each run's place on the x axis is read from its lineage (``semgen info RUN``;
semgen.classifier.lineage): the streamed procedural samples of every pretraining cycle behind it.
Runs with the same lineage budget are one point: the joint seed x image bootstrap of
``semgen ablate`` (semgen.ablation.stats) gives the mean over seeds and its 95 % interval; an
ensemble of them is drawn beside it with its own image bootstrap. A point whose cycles repeated
scenes (fewer distinct scenes than samples seen) is drawn hollow.

Example::

    python bench/scaling_curve.py --test ../shared/data/sem-real/dev_test --tta d4 \\
        --runs out/ft/lite0_imagenet_r1_all_s? out/ft/lite0_imagenet_semgen*_r1_all_s? \\
        --ensembles out/ens/lite0_*_r1_s012 --plot docs/img/scaling_lite0.png

Predictions are read from the metrics each run saved for ``--test`` and ``--tta`` (``semgen
evaluate``, ``bench/pretrain_finetune.py``); a run without them is evaluated.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_runs import predictions  # noqa: E402

from semgen.ablation.stats import bootstrap  # noqa: E402
from semgen.classifier.ensemble import is_ensemble, read_ensemble  # noqa: E402
from semgen.classifier.lineage import lineage, synthetic_budget  # noqa: E402
from semgen.classifier.tta import TTA_MODES  # noqa: E402
from semgen.errors import SemgenError  # noqa: E402


def budget_of(run) -> dict:
    """The synthetic budget behind a run, or behind every member of an ensemble (which must agree)."""
    members = [m["absolute"] for m in read_ensemble(run)["members"]] if is_ensemble(run) else [run]
    budgets = {tuple(sorted(synthetic_budget(lineage(m, verify=False)).items())) for m in members}
    if len(budgets) != 1:
        raise SemgenError(f"{run}: its members were pretrained on different budgets; one point needs one")
    return dict(budgets.pop())


def curve(runs, ensembles, test, tta="none", n_boot=2000, synthetic_only=()) -> list[dict]:
    """One row per budget: seeds' mean macro-F1 with its CI, the ensemble's if one was given, and
    the synthetic-only figure of a pretraining run of that budget (no real image: its fine labels
    folded onto the test classes) if one was given."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"runs": [], "ensembles": [], "synthetic_only": []})
    for kind, items in (("runs", runs), ("ensembles", ensembles), ("synthetic_only", synthetic_only)):
        for r in items:
            b = budget_of(r)
            groups[(b["seen"], b["distinct"])][kind].append(r)
    rows = []
    for (seen, distinct), g in sorted(groups.items()):
        row = {"seen": seen, "distinct": distinct, "n_seeds": len(g["runs"]), "runs": g["runs"]}
        if g["runs"]:
            ys = [predictions(r, test, tta, saved=True) for r in g["runs"]]
            s = bootstrap(ys[0][0], [p for _, p in ys], n_boot=n_boot)
            row.update(f1=s["macro_f1"]["mean"], lo=s["macro_f1"]["lo"], hi=s["macro_f1"]["hi"],
                       # each seed's point figure (the mean field is the point estimate, not a replicate's)
                       seeds=[bootstrap(y, [p], n_boot=1)["macro_f1"]["mean"] for y, p in ys])
        for e in g["ensembles"][:1]:
            y, p = predictions(e, test, tta, saved=True)
            s = bootstrap(y, [p], n_boot=n_boot)
            row.update(ensemble=e, ens_f1=s["macro_f1"]["mean"], ens_lo=s["macro_f1"]["lo"],
                       ens_hi=s["macro_f1"]["hi"])
        for z in g["synthetic_only"][:1]:
            y, p = predictions(z, test, tta, saved=True)
            s = bootstrap(y, [p], n_boot=n_boot)
            row.update(synthetic_only=z, syn_f1=s["macro_f1"]["mean"], syn_lo=s["macro_f1"]["lo"],
                       syn_hi=s["macro_f1"]["hi"])
        rows.append(row)
    return rows


def plot(rows, path, title) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    xs = sorted({r["seen"] for r in rows})

    def at(r, shift=0.0):  # repeated-scene points a little left, ensembles a little right (log axis)
        x = r["seen"] * (0.88 if r["distinct"] < r["seen"] else 1.0)
        return x * (1 + shift) + (1500 * shift / 0.05 if x == 0 else 0)

    seeds = [r for r in rows if "f1" in r]
    line = [r for r in seeds if r["distinct"] == r["seen"]]  # the curve: new scenes only
    ax.plot([at(r) for r in line], [r["f1"] for r in line], "-", color="C0", lw=1, alpha=0.6)
    for r in seeds:
        full = r["distinct"] == r["seen"]
        ax.errorbar(at(r), r["f1"], yerr=[[r["f1"] - r["lo"]], [r["hi"] - r["f1"]]], fmt="o", color="C0",
                    mfc="C0" if full else "white", capsize=3)
        ax.scatter([at(r)] * len(r["seeds"]), r["seeds"], s=10, color="0.55", zorder=3)
    ens = [r for r in rows if "ens_f1" in r]
    for r in ens:
        full = r["distinct"] == r["seen"]
        ax.errorbar(at(r, 0.05), r["ens_f1"], yerr=[[r["ens_f1"] - r["ens_lo"]], [r["ens_hi"] - r["ens_f1"]]],
                    fmt="*", ms=10, color="C3", mfc="C3" if full else "white", capsize=3)
    syn = [r for r in rows if "syn_f1" in r]
    syn_line = [r for r in syn if r["distinct"] == r["seen"]]
    ax.plot([at(r, -0.05) for r in syn_line], [r["syn_f1"] for r in syn_line], "--", color="C2", lw=1, alpha=0.6)
    for r in syn:
        full = r["distinct"] == r["seen"]
        ax.errorbar(at(r, -0.05), r["syn_f1"], yerr=[[r["syn_f1"] - r["syn_lo"]], [r["syn_hi"] - r["syn_f1"]]],
                    fmt="s", ms=5, color="C2", mfc="C2" if full else "white", capsize=3)
    # legend proxies
    ax.errorbar([], [], yerr=[], fmt="o", color="C0", capsize=3, label="mean of seeds, 95% CI (seed x image bootstrap)")
    ax.scatter([], [], s=10, color="0.55", label="each seed")
    if ens:
        ax.errorbar([], [], yerr=[], fmt="*", ms=10, color="C3", capsize=3, label="ensemble of the seeds, 95% CI")
    if syn:
        ax.errorbar([], [], yerr=[], fmt="s", ms=5, color="C2", capsize=3,
                    label="no real image: the pretraining run itself, 95% CI")
    if any(r["distinct"] < r["seen"] for r in rows):
        ax.plot([], [], "o", color="C0", mfc="white", label="hollow: scenes repeated (same seed twice)")
    ax.set_xscale("symlog", linthresh=10000)
    ax.set_xticks(xs)
    ax.set_xticklabels(["ImageNet\nonly" if x == 0 else f"+{x / 1000:g}k" for x in xs])
    ax.set_xlim(-2000, max(xs) * 1.35 + 1)
    ax.set_xlabel("procedural samples seen in semgen pretraining (after ImageNet)")
    ax.set_ylabel("macro-F1 on the real test set")
    ax.grid(alpha=0.3)
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=9)
    ax.legend(fontsize=7, loc="upper left" if syn else "lower right")  # the synthetic-only points sit low
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", required=True, help="the real test set (a dataset dir or class folders)")
    ap.add_argument("--runs", nargs="+", default=[], metavar="RUN", help="fine-tuned run dirs (one per seed)")
    ap.add_argument("--ensembles", nargs="*", default=[], metavar="DIR", help="ensemble folders of those runs")
    ap.add_argument("--synthetic-only", nargs="*", default=[], metavar="RUN",
                    help="`semgen pretrain` runs scored with no real image (fine labels folded onto the test classes)")
    ap.add_argument("--tta", default="none", choices=TTA_MODES)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--plot", metavar="PNG", help="write the curve here")
    ap.add_argument("--title", default=None)
    a = ap.parse_args(argv)
    if not a.runs and not a.ensembles and not a.synthetic_only:
        ap.error("give --runs, --ensembles and/or --synthetic-only")
    try:
        rows = curve(a.runs, a.ensembles, a.test, a.tta, a.n_boot, a.synthetic_only)
    except SemgenError as e:
        print(f"scaling_curve: {e}", file=sys.stderr)
        return 2
    print("| synthetic samples seen | distinct scenes | seeds | mean macro-F1 [95% CI] | each seed | ensemble [95% CI] "
          "| no real image [95% CI] |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        seeds = (f"{r['f1']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]", " / ".join(f"{s:.3f}" for s in r["seeds"])) \
            if "f1" in r else ("-", "-")
        ens = f"{r['ens_f1']:.3f} [{r['ens_lo']:.3f}, {r['ens_hi']:.3f}]" if "ens_f1" in r else "-"
        syn = f"{r['syn_f1']:.3f} [{r['syn_lo']:.3f}, {r['syn_hi']:.3f}]" if "syn_f1" in r else "-"
        print(f"| {r['seen']:,} | {r['distinct']:,} | {r['n_seeds']} | {seeds[0]} | {seeds[1]} | {ens} | {syn} |")
    if a.plot:
        title = a.title or f"{os.path.basename(os.path.normpath(a.test))}, tta {a.tta}"
        plot(rows, a.plot, title)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
