"""The scaling curve of issue 11: real-test macro-F1 against the synthetic samples a model's
backbone saw, from fine-tuned runs and ensembles already made, as a table and a plot.

Each run's place on the x axis is read from its lineage (``semgen info RUN``;
semgen.classifier.lineage): the streamed procedural samples of every pretraining cycle behind it.
Runs fine-tuned from the same pretraining run(s) are one point: the joint seed x image bootstrap
of ``semgen ablate`` (semgen.ablation.stats) gives the mean over seeds and its 95 % interval; an
ensemble of them is drawn beside it with its own image bootstrap. Two pretraining runs of one
budget stay two points (one schedule of 153,600 samples is not two cycles of 76,800). A point whose
cycles repeated scenes (fewer distinct scenes than samples seen) is drawn hollow; a point of more
than one pretraining cycle is a diamond, off the line (the line is one schedule per budget).

Example::

    python bench/scaling_curve.py --test ../shared/data/sem-real/dev_test --tta d4 \\
        --runs out/ft/lite0_imagenet_r1_all_s? out/ft/lite0_imagenet_semgen*_r1_all_s? \\
        --ensembles out/ens/lite0_*_r1_s012 --plot docs/img/scaling_lite0.png

Joint pretraining runs (``--joint``: a share of each batch from the real pool, the runs themselves
the models; ``semgen recipe``'s default) are a second series: each seed is its own pretraining, so
the runs of one budget are one point, at the procedural samples they streamed (the real share of
their batches is not counted), with their ensemble (``--joint-ensembles``) beside it::

    python bench/scaling_curve.py --test ../shared/data/sem-real/dev_test --tta d4 \
        --runs out/recipe/joint3/baseline_s? --ensembles out/recipe/joint3/baseline_ensemble \
        --joint out/recipe/joint3/pretrain_s? out/pt/joint153600_s0 \
        --joint-ensembles out/recipe/joint3/ensemble --plot docs/img/scaling_joint.png

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


def pretraining_of(run) -> tuple[tuple[str, ...], dict]:
    """The pretraining runs behind a run (resolved paths, oldest first; empty for none) and their
    synthetic budget; for an ensemble, its members' (which must agree)."""
    members = [m["absolute"] for m in read_ensemble(run)["members"]] if is_ensemble(run) else [run]
    found = set()
    for m in members:
        st = lineage(m, verify=False)
        runs = tuple(str(Path(s["run"]).resolve()) for s in st if s.get("kind") == "pretrain")
        found.add((runs, tuple(sorted(synthetic_budget(st).items()))))
    if len(found) != 1:
        raise SemgenError(f"{run}: its members were pretrained differently; one point needs one pretraining")
    runs, budget = found.pop()
    return runs, dict(budget)


def joint_budget(run) -> dict:
    """The streamed budget of a joint pretraining run, or of an ensemble of them (its members, each
    its own pretraining, must have streamed the same)."""
    members = [m["absolute"] for m in read_ensemble(run)["members"]] if is_ensemble(run) else [run]
    found = {tuple(sorted(pretraining_of(m)[1].items())) for m in members}
    if len(found) != 1:
        raise SemgenError(f"{run}: its members streamed different budgets; one point needs one budget")
    return dict(found.pop())


def curve(runs, ensembles, test, tta="none", n_boot=2000, synthetic_only=(), joint=(), joint_ensembles=()) -> list[dict]:
    """One row per pretraining (the run or chain of runs behind a model; none for ImageNet alone),
    sorted by budget: seeds' mean macro-F1 with its CI, the ensemble's if one was given, and the
    synthetic-only figure of that pretraining run (no real image: its fine labels folded onto the
    test classes) if it was given; and one row per budget of the ``joint`` runs (``series``
    ``"joint"``), with their ensemble."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"runs": [], "ensembles": [], "synthetic_only": []})
    budgets = {}
    for kind, items in (("runs", runs), ("ensembles", ensembles), ("synthetic_only", synthetic_only)):
        for r in items:
            chain, budgets_r = pretraining_of(r)
            budgets[chain] = budgets_r
            groups[chain][kind].append(r)
    for kind, items in (("runs", joint), ("ensembles", joint_ensembles)):
        for r in items:
            b = joint_budget(r)
            key = ("joint", b["seen"], b["distinct"], b["cycles"])  # the seeds of a budget: one point
            budgets[key] = b
            groups[key][kind].append(r)
    rows = []
    for chain, g in sorted(groups.items(), key=lambda kv: (budgets[kv[0]]["seen"], budgets[kv[0]]["distinct"],
                                                           budgets[kv[0]]["cycles"], str(kv[0]))):
        b = budgets[chain]
        is_joint = bool(chain) and chain[0] == "joint"
        row = {"seen": b["seen"], "distinct": b["distinct"], "cycles": b["cycles"],
               "series": "joint" if is_joint else "finetune",
               "pretraining": "joint: " + ", ".join(Path(r).name for r in g["runs"]) if is_joint
               else Path(chain[-1]).name if chain else "-",
               "n_seeds": len(g["runs"]), "runs": g["runs"]}
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

    def at(r, shift=0.0):  # repeated-scene and multi-cycle points a little left, ensembles right (log axis)
        x = r["seen"] * (0.88 if r["distinct"] < r["seen"] else 0.94 if r["cycles"] > 1 else 1.0)
        return x * (1 + shift) + (1500 * shift / 0.05 if x == 0 else 0)

    def on_line(r):  # the curve: one schedule of new scenes per budget
        return r["distinct"] == r["seen"] and r["cycles"] <= 1

    joint = [r for r in rows if r.get("series") == "joint"]
    rows = [r for r in rows if r.get("series") != "joint"]
    seeds = [r for r in rows if "f1" in r]
    line = [r for r in seeds if on_line(r)]
    ax.plot([at(r) for r in line], [r["f1"] for r in line], "-", color="C0", lw=1, alpha=0.6)
    for r in seeds:
        full = r["distinct"] == r["seen"]
        ax.errorbar(at(r), r["f1"], yerr=[[r["f1"] - r["lo"]], [r["hi"] - r["f1"]]],
                    fmt="o" if r["cycles"] <= 1 else "D", color="C0", mfc="C0" if full else "white", capsize=3)
        ax.scatter([at(r)] * len(r["seeds"]), r["seeds"], s=10, color="0.55", zorder=3)
    ens = [r for r in rows if "ens_f1" in r]
    for r in ens:
        full = r["distinct"] == r["seen"]
        ax.errorbar(at(r, 0.05), r["ens_f1"], yerr=[[r["ens_f1"] - r["ens_lo"]], [r["ens_hi"] - r["ens_f1"]]],
                    fmt="*", ms=10, color="C3", mfc="C3" if full else "white", capsize=3)
    syn = [r for r in rows if "syn_f1" in r]
    syn_line = [r for r in syn if on_line(r)]
    ax.plot([at(r, -0.05) for r in syn_line], [r["syn_f1"] for r in syn_line], "--", color="C2", lw=1, alpha=0.6)
    for r in syn:
        full = r["distinct"] == r["seen"]
        ax.errorbar(at(r, -0.05), r["syn_f1"], yerr=[[r["syn_f1"] - r["syn_lo"]], [r["syn_hi"] - r["syn_f1"]]],
                    fmt="s", ms=5, color="C2", mfc="C2" if full else "white", capsize=3)
    # joint pretraining: its own line, from ImageNet alone (the fine-tunes' first point) to its budgets
    start = [r for r in line if r["seen"] == 0][:1]
    jline = [r for r in joint if "f1" in r and on_line(r)]
    if jline:
        ax.plot([at(r) for r in start + jline], [r["f1"] for r in start + jline], "-", color="C4", lw=1, alpha=0.6)
    for r in joint:
        if "f1" in r:
            ax.errorbar(at(r, 0.025), r["f1"], yerr=[[r["f1"] - r["lo"]], [r["hi"] - r["f1"]]], fmt="^",
                        color="C4", capsize=3)
            ax.scatter([at(r, 0.025)] * len(r["seeds"]), r["seeds"], s=10, color="0.55", zorder=3)
        if "ens_f1" in r:
            ax.errorbar(at(r, 0.075), r["ens_f1"], yerr=[[r["ens_f1"] - r["ens_lo"]], [r["ens_hi"] - r["ens_f1"]]],
                        fmt="*", ms=11, color="C4", mec="k", capsize=3)
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
    if any(r["cycles"] > 1 for r in seeds):
        ax.plot([], [], "D", color="C0", label="diamond: two or more pretraining cycles (off the line)")
    if joint:
        ax.errorbar([], [], yerr=[], fmt="^", color="C4", capsize=3,
                    label="joint pretraining (real pool in each batch), mean of seeds, 95% CI")
    if any("ens_f1" in r for r in joint):
        ax.errorbar([], [], yerr=[], fmt="*", ms=11, color="C4", mec="k", capsize=3, label="ensemble of the joint seeds")
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
    ap.add_argument("--joint", nargs="*", default=[], metavar="RUN",
                    help="joint pretraining runs (the real pool mixed into each batch; the runs are the models), "
                         "one point per budget")
    ap.add_argument("--joint-ensembles", nargs="*", default=[], metavar="DIR", help="ensemble folders of those runs")
    ap.add_argument("--tta", default="none", choices=TTA_MODES)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--plot", metavar="PNG", help="write the curve here")
    ap.add_argument("--title", default=None)
    a = ap.parse_args(argv)
    if not a.runs and not a.ensembles and not a.synthetic_only and not a.joint:
        ap.error("give --runs, --ensembles, --synthetic-only and/or --joint")
    try:
        rows = curve(a.runs, a.ensembles, a.test, a.tta, a.n_boot, a.synthetic_only, a.joint, a.joint_ensembles)
    except SemgenError as e:
        print(f"scaling_curve: {e}", file=sys.stderr)
        return 2
    print("| synthetic samples seen | distinct scenes | seeds | mean macro-F1 [95% CI] | each seed | ensemble [95% CI] "
          "| no real image [95% CI] | cycles | pretraining run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        seeds = (f"{r['f1']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]", " / ".join(f"{s:.3f}" for s in r["seeds"])) \
            if "f1" in r else ("-", "-")
        ens = f"{r['ens_f1']:.3f} [{r['ens_lo']:.3f}, {r['ens_hi']:.3f}]" if "ens_f1" in r else "-"
        syn = f"{r['syn_f1']:.3f} [{r['syn_lo']:.3f}, {r['syn_hi']:.3f}]" if "syn_f1" in r else "-"
        print(f"| {r['seen']:,} | {r['distinct']:,} | {r['n_seeds']} | {seeds[0]} | {seeds[1]} | {ens} | {syn} "
              f"| {r['cycles']} | {r['pretraining']} |")
    if a.plot:
        title = a.title or f"{os.path.basename(os.path.normpath(a.test))}, tta {a.tta}"
        plot(rows, a.plot, title)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
