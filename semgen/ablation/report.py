"""The ablation report, computed from ``results.jsonl`` and the per-image prediction CSVs alone:
``summary.md`` (tables, mean [95 % CI]), ``summary.json`` and PNG plots.

Everything here reads only those files, so ``semgen ablate --report OUT`` redoes the report without
retraining, and a reader without semgen can check every figure from the CSVs.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from .. import __version__
from ..errors import SemgenError
from ..imageio import write_bytes_atomic
from ..taxonomy import CLASSES
from .stats import bootstrap, paired_difference

ARM_ORDER = ("real", "synthetic", "mix", "pretrain")


def read_results(out) -> list[dict]:
    p = Path(out) / "results.jsonl"
    if not p.is_file():
        raise SemgenError(f"{out} holds no results.jsonl; run semgen ablate first")
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise SemgenError(f"{p}: line {n} is not JSON") from None
    return rows


def read_predictions(out, rel: str) -> tuple[list[str], list[str], list[str]]:
    with open(Path(out) / rel, newline="") as f:
        r = list(csv.DictReader(f))
    return [x["file"] for x in r], [x["label"] for x in r], [x["pred"] for x in r]


def _shots_order(s: str) -> float:
    return -1.0 if s == "-" else (math.inf if s == "all" else float(s))


def _arm_order(row: dict) -> tuple:
    return (ARM_ORDER.index(row["kind"]), row.get("source") or "", row.get("ratio") or 0.0)


def _init(row: dict) -> str:
    """The init of a results line (lines written before the init axis existed are scratch)."""
    return row.get("init") or "scratch"


def show_inits(groups: list[dict]) -> bool:
    """Whether the report needs an init column: only when some model did not start from scratch,
    so the report of a config without ``inits:`` is what it always was."""
    return any(g.get("init", "scratch") != "scratch" for g in groups)


def row_name(g: dict, with_init: bool) -> str:
    """A group's label in plots and per-class headers: ``arm``, or ``init: arm`` with the init axis."""
    return f"{g.get('init', 'scratch')}: {g['arm']}" if with_init else g["arm"]


def tta_of(rows: list[dict]) -> str:
    """The test-time augmentation of every line (``none`` for lines without it); lines that
    disagree would mix figures of different evaluations, and are refused."""
    modes = {r.get("tta", "none") for r in rows}
    if len(modes) > 1:
        raise SemgenError(f"results.jsonl mixes test-time augmentation settings ({', '.join(sorted(modes))}); "
                          "run semgen ablate again to re-evaluate every cell with one")
    return modes.pop() if modes else "none"


def aggregate(out, *, n_boot: int = 2000, seed: int = 0, compare=()) -> dict:
    """Group ``results.jsonl`` by (test, init, arm, shots); bootstrap each group over seeds and images.

    Returns ``{test: {"n_images", "classes", "groups": [...], "gains": [...]}}``; each group and
    gain names its ``init`` (in the order the inits first appear in ``results.jsonl``, i.e. the
    config's). With test-time augmentation, each test's entry names it (``tta``). For each pair
    ``(a, b)`` of init labels in ``compare``, ``"init_differences"`` holds ``b`` minus ``a`` for
    every (arm, shots) both have, paired over their common seeds and the images.
    """
    rows = read_results(out)
    if not rows:
        raise SemgenError(f"{out}/results.jsonl is empty")
    tta = tta_of(rows)
    init_order = list(dict.fromkeys(_init(r) for r in rows))
    tests = sorted({t for r in rows for t in r["test"]})
    result = {}
    for test in tests:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        arm_meta = {}
        files0 = y_true = None
        preds_of: dict[str, list[str]] = {}
        for r in rows:
            if test not in r["test"]:
                continue
            files, yt, yp = read_predictions(out, r["test"][test]["predictions"])
            if files0 is None:
                files0, y_true = files, yt
            elif files != files0 or yt != y_true:
                raise SemgenError(f"predictions of {r['arm']} seed {r['seed']} on {test} are not on the same "
                                  "images as the others; the test set changed between cells")
            preds_of[r["cell"]] = yp
            groups[(_init(r), r["arm"], r["shots"])].append(r)
            arm_meta[r["arm"]] = r
        classes = [c for c in CLASSES if c in set(y_true)]
        out_groups = []
        by_key = {}
        for (init, arm, shots), rs in sorted(groups.items(), key=lambda kv: (
                init_order.index(kv[0][0]), _arm_order(arm_meta[kv[0][1]]), _shots_order(kv[0][2]))):
            rs = sorted(rs, key=lambda r: r["seed"])
            b = bootstrap(y_true, [preds_of[r["cell"]] for r in rs], classes, n_boot=n_boot, seed=seed)
            g = {"init": init, "arm": arm, "kind": arm_meta[arm]["kind"], "shots": shots,
                 "seeds": [r["seed"] for r in rs], "cells": [r["cell"] for r in rs], **b}
            out_groups.append(g)
            by_key[(init, arm, shots)] = (g, rs)
        gains = _gains(by_key, y_true, preds_of, classes, n_boot, seed)
        result[test] = {"n_images": len(y_true), "classes": classes, "groups": out_groups, "gains": gains,
                        **({"tta": tta} if tta != "none" else {})}  # without TTA the bytes it always had
        if compare:
            result[test]["init_differences"] = _init_differences(by_key, compare, y_true, preds_of, classes,
                                                                 n_boot, seed)
    return result


def _init_differences(by_key, compare, y_true, preds_of, classes, n_boot, seed) -> list[dict]:
    """``b`` minus ``a`` for each pair of inits, at each (arm, shots) of ``a`` that ``b`` also has:
    the same real subsets (they depend on shots and seed only), so the seeds pair up."""
    out = []
    for a, b in compare:
        for (i, arm, shots), (_, rs_a) in by_key.items():
            if i != a or (b, arm, shots) not in by_key:
                continue
            rs_b = by_key[(b, arm, shots)][1]
            seeds = sorted({r["seed"] for r in rs_a} & {r["seed"] for r in rs_b})
            if not seeds:
                continue
            pa = [preds_of[r["cell"]] for r in rs_a if r["seed"] in seeds]
            pb = [preds_of[r["cell"]] for r in rs_b if r["seed"] in seeds]
            d = paired_difference(y_true, pa, pb, classes, n_boot=n_boot, seed=seed)
            out.append({"a": a, "b": b, "arm": arm, "shots": shots, "seeds": seeds, **d})
    return out


def _gains(by_key, y_true, preds_of, classes, n_boot, seed) -> list[dict]:
    """For each init and real-shots level: the best non-real arm (by mean macro-F1) minus real-only
    *from the same init*, paired: what the synthetic data adds on top of that starting point."""
    gains = []
    real_levels = [(i, s) for (i, a, s) in by_key if a == "real"]  # by_key is in report order
    for init, shots in real_levels:
        g_real, rs_real = by_key[(init, "real", shots)]
        candidates = [(g, rs) for (i, a, s), (g, rs) in by_key.items()
                      if i == init and a != "real" and (s == shots or s == "-")]
        if not candidates:
            continue
        g_best, rs_best = max(candidates, key=lambda c: c[0]["macro_f1"]["mean"])
        seeds = sorted(set(g_real["seeds"]) & set(g_best["seeds"]))
        if len(seeds) < 1:
            continue
        pa = [preds_of[r["cell"]] for r in rs_real if r["seed"] in seeds]
        pb = [preds_of[r["cell"]] for r in rs_best if r["seed"] in seeds]
        d = paired_difference(y_true, pa, pb, classes, n_boot=n_boot, seed=seed)
        gains.append({"init": init, "shots": shots, "arm": g_best["arm"], "seeds": seeds, **d})
    return gains


# -- formatting ---------------------------------------------------------------------------------
def fmt_ci(d: dict, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(d['mean'])} [{f.format(d['lo'])}, {f.format(d['hi'])}]"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_markdown(agg: dict, config: dict | None, plots: dict) -> str:
    L = ["# semgen ablation: what the synthetic data is worth on real test images", ""]
    if config:
        L.append(f"- real pool: `{config.get('real')}`")
        syn = config.get("synthetic") or {}
        if syn:
            L.append("- synthetic sources: " + ", ".join(f"`{n}` ({s['amount']} per class, `{s['path']}`)"
                                                      for n, s in syn.items()))
        L.append(f"- seeds: {config.get('seeds')}; preset: {config.get('preset') or 'none'}; "
                 f"semgen {config.get('semgen_version', __version__)}")
        inits = config.get("inits") or []
        if any(i.get("name") != "scratch" for i in inits):
            desc = ", ".join(f"`{i['name']}`" + ("" if i["name"] == "scratch" else
                                                 f" ({i['init']}, arch {i.get('arch') or 'of the classifier'})")
                             for i in inits)
            L.append("- inits (where each arm's first model starts; `pretrain[S]` fine-tunes the synthetic "
                     f"model that started there): {desc}")
        # the fine-tuning settings only where a pretrain arm uses them (an older config lists no arms)
        pretrains = any(str(a).startswith("pretrain") for a in config.get("arms") or ["pretrain"])
        L.append(f"- classifier: `{json.dumps(config.get('classifier'), sort_keys=True)}`"
                 + (f"; fine-tune (pretrain arm): `{json.dumps(config.get('finetune'), sort_keys=True)}`"
                    if pretrains else ""))
    tta = next((a["tta"] for a in agg.values() if "tta" in a), "none")
    if tta != "none":
        from ..classifier.tta import TTA_MODES

        L.append(f"- test-time augmentation: `{tta}`: every test image's probabilities are the mean over its "
                 f"{len(TTA_MODES[tta])} flipped and turned views (the trained models are those without it)")
    L += ["- every figure: mean over seeds, with a 95 % bootstrap CI that resamples seeds and test "
          "images jointly (percentile). Arms: `real` = real images only; `synthetic[S]` = S only "
          "(no real image); `mix[S,r]` = real + S, a fraction r of training samples synthetic; "
          "`pretrain[S]` = the synthetic-only model fine-tuned on the real images.", ""]
    for test, a in agg.items():
        with_tta = f"; TTA `{a['tta']}`" if "tta" in a else ""
        L += [f"## Test set `{test}` ({a['n_images']} images, {len(a['classes'])} classes{with_tta})", ""]
        wi = show_inits(a["groups"])
        # with the init axis every table gets an init column (init = where the first model started)
        ic = (lambda init: [f"`{init}`"]) if wi else (lambda init: [])  # noqa: E731
        ih = ["init"] if wi else []
        levels = sorted({g["shots"] for g in a["groups"]}, key=_shots_order)
        arms = []
        for g in a["groups"]:
            if (g.get("init", "scratch"), g["arm"]) not in arms:
                arms.append((g.get("init", "scratch"), g["arm"]))
        cell = {(g.get("init", "scratch"), g["arm"], g["shots"]): g for g in a["groups"]}
        for metric, title in (("macro_f1", "Macro-F1"), ("accuracy", "Accuracy")):
            L += [f"### {title} by real images per class", ""]
            header = ih + ["arm"] + [("no real" if s == "-" else f"{s} shots") for s in levels]
            rows = [ic(init) + [f"`{arm}`"] + [fmt_ci(cell[(init, arm, s)][metric]) if (init, arm, s) in cell else ""
                                               for s in levels]
                    for init, arm in arms]
            L += _md_table(header, rows) + [""]
        if test in plots:
            L += [f"![accuracy and macro-F1 vs real shots]({plots[test]['shots']})", ""]
        L += ["### All cells", ""]
        rows = [ic(g.get("init", "scratch")) + [f"`{g['arm']}`", g["shots"], str(g["n_seeds"]), fmt_ci(g["accuracy"]),
                                                fmt_ci(g["macro_f1"]), f"{g['macro_f1']['seed_sd']:.3f}"]
                for g in a["groups"]]
        L += _md_table(ih + ["arm", "real shots", "seeds", "accuracy", "macro-F1", "macro-F1 seed sd"], rows) + [""]
        if a["gains"]:
            same = " from the same init" if wi else ""
            L += [f"### Best arm minus real-only{same} (paired over seeds and images)", ""]
            rows = [ic(g.get("init", "scratch")) + [g["shots"], f"`{g['arm']}`", fmt_ci(g["macro_f1"], True),
                                                    fmt_ci(g["accuracy"], True)]
                    for g in a["gains"]]
            L += _md_table(ih + ["real shots", "best arm", "Δ macro-F1", "Δ accuracy"], rows) + [""]
            top = a["gains"][-1]
            of = f" (init `{top.get('init', 'scratch')}`)" if wi else ""
            L += [f"Per-class F1 gain of `{top['arm']}` over `real`{of} at {top['shots']} shots:", ""]
            rows = [[c, fmt_ci(top["per_class"][c]["f1"], True)] for c in a["classes"]]
            L += _md_table(["class", "Δ F1"], rows) + [""]
            if test in plots and "gain" in plots[test]:
                L += [f"![per-class gain]({plots[test]['gain']})", ""]
        if a.get("init_differences"):
            L += ["### One init minus another (paired over seeds and images)", ""]
            rows = [[f"`{d['b']}` minus `{d['a']}`", f"`{d['arm']}`", d["shots"], str(len(d["seeds"])),
                     fmt_ci(d["macro_f1"], True), fmt_ci(d["accuracy"], True)] for d in a["init_differences"]]
            L += _md_table(["difference", "arm", "real shots", "seeds", "Δ macro-F1", "Δ accuracy"], rows) + [""]
        top_level = levels[-1]
        L += [f"### Per-class F1 at {top_level} real shots (and synthetic-only)", ""]
        shown = [g for g in a["groups"] if g["shots"] in (top_level, "-")]
        header = ["class", "support"] + [f"`{row_name(g, wi)}`" for g in shown]
        rows = [[c, str(shown[0]["per_class"][c]["support"])] + [fmt_ci(g["per_class"][c]["f1"]) for g in shown]
                for c in a["classes"]] if shown else []
        L += _md_table(header, rows) + [""]
    L += ["Per-model figures and per-image predictions: `results.jsonl` and `predictions/*.csv` "
          "(columns file, label, pred).", ""]
    return "\n".join(L)


# -- plots --------------------------------------------------------------------------------------
def _plot_shots(a: dict, test: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({g["shots"] for g in a["groups"] if g["shots"] != "-"}, key=_shots_order)
    x = {s: i for i, s in enumerate(levels)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    wi = show_inits(a["groups"])
    arms = []  # one line per (init, arm), labelled by row_name
    for g in a["groups"]:
        if row_name(g, wi) not in arms:
            arms.append(row_name(g, wi))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric, title in zip(axes, ("accuracy", "macro_f1"), ("accuracy", "macro-F1")):
        for j, arm in enumerate(arms):
            gs = [g for g in a["groups"] if row_name(g, wi) == arm]
            c = colors[j % len(colors)]
            if gs[0]["shots"] == "-":  # synthetic-only: no real images, a horizontal band
                m = gs[0][metric]
                ax.axhline(m["mean"], color=c, ls="--", label=f"{arm} (no real)")
                ax.axhspan(m["lo"], m["hi"], color=c, alpha=0.12)
                continue
            gs = sorted(gs, key=lambda g: _shots_order(g["shots"]))
            xs = [x[g["shots"]] + (j - len(arms) / 2) * 0.03 for g in gs]
            ys = [g[metric]["mean"] for g in gs]
            err = [[g[metric]["mean"] - g[metric]["lo"] for g in gs], [g[metric]["hi"] - g[metric]["mean"] for g in gs]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=c, label=arm)
        ax.set_xticks(range(len(levels)), [str(s) for s in levels])
        ax.set_xlabel("real training images per class")
        ax.set_ylabel(f"{title} on {test}")
        # a scale that shows the differences, but never hides that the figures are fractions of 1
        top = max(g[metric]["hi"] for g in a["groups"])
        ax.set_ylim(0, min(1.0, max(0.3, 1.25 * top)))
        ax.grid(alpha=0.3)
        if metric == "accuracy":
            chance = ax.axhline(1.0 / len(a["classes"]), color="gray", lw=0.8, ls=":", label="chance (1 / classes)")
            ax.legend(handles=[chance], fontsize=8, loc="upper left")
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(f"{test}: mean over seeds, 95 % CI (bootstrap over seeds and images)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_gain(a: dict, test: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    gains = a["gains"]
    classes = a["classes"]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(classes) + 2), 4.2), constrained_layout=True)
    n = len(gains)
    w = 0.8 / max(n, 1)
    for j, g in enumerate(gains):
        xs = np.arange(len(classes)) + (j - (n - 1) / 2) * w
        ys = [g["per_class"][c]["f1"]["mean"] for c in classes]
        err = [[g["per_class"][c]["f1"]["mean"] - g["per_class"][c]["f1"]["lo"] for c in classes],
               [g["per_class"][c]["f1"]["hi"] - g["per_class"][c]["f1"]["mean"] for c in classes]]
        ax.bar(xs, ys, w, yerr=err, capsize=2, label=f"{row_name(g, show_inits(gains))} vs real, {g['shots']} shots")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylabel("F1 gain over real-only")
    ax.set_title(f"{test}: per-class F1 gain of the best arm over real-only (95 % CI, paired)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out, *, bootstrap_n: int | None = None, bootstrap_seed: int | None = None) -> dict:
    """Write ``summary.md``, ``summary.json`` and the plots of ``out``; return the aggregate.

    The bootstrap settings default to those of the run (``config.json``), else 2000 replicates, seed 0.
    """
    out = Path(out)
    try:
        config = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        config = None
    boot = (config or {}).get("bootstrap") or {}
    n = int(bootstrap_n if bootstrap_n is not None else boot.get("n", 2000))
    seed = int(bootstrap_seed if bootstrap_seed is not None else boot.get("seed", 0))
    agg = aggregate(out, n_boot=n, seed=seed, compare=[tuple(p) for p in (config or {}).get("compare") or []])
    plots = {}
    for test, a in agg.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in test)
        plots[test] = {"shots": f"ablation_{safe}_shots.png"}
        _plot_shots(a, test, out / plots[test]["shots"])
        if a["gains"]:
            plots[test]["gain"] = f"ablation_{safe}_gain.png"
            _plot_gain(a, test, out / plots[test]["gain"])
    write_bytes_atomic(out / "summary.md", render_markdown(agg, config, plots).encode())
    write_bytes_atomic(out / "summary.json", (json.dumps(agg, indent=1) + "\n").encode())
    return agg
