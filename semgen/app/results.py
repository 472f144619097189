"""The results page's logic: an ablation output dir or a classifier run dir, as tables and plots.

Reads only what ``semgen ablate`` (``summary.json``, ``results.jsonl``, ``ablation_*.png``) and
``semgen train / evaluate / export`` (``summary.json``, ``metrics.json``, ``confusion.png``,
``export.json``) wrote; writes nothing into the folder. A figure a file lacks is left out, never
made up.

Examples
--------
>>> fmt_interval(0.4321, [0.40, 0.47])
'0.432 [0.400, 0.470]'
>>> fmt_interval(0.5, None)
'0.500'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SemgenError

#: Most bytes of a JSON file the page reads (a results file is kilobytes; this bounds a wrong pick).
MAX_JSON_BYTES = 64 << 20


@dataclass
class Table:
    """A table for the page: a title, column names and rows of strings or numbers."""

    title: str
    headers: list
    rows: list

    def markdown(self) -> str:
        """The table as GitHub Markdown (for the downloadable report)."""
        lines = [f"### {self.title}", "", "| " + " | ".join(map(str, self.headers)) + " |",
                 "|" + "|".join("---" for _ in self.headers) + "|"]
        lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"


def _cell(c) -> str:
    if isinstance(c, float):
        return f"{c:.4g}"
    return str(c).replace("|", "\\|")


@dataclass
class ResultsView:
    """What the page shows for one folder."""

    kind: str                                     #: ``ablation`` or ``run``
    root: str
    title: str
    tables: list = field(default_factory=list)    #: :class:`Table` s, in page order
    images: list = field(default_factory=list)    #: ``(path, caption)`` of the plots, in page order
    notes: list = field(default_factory=list)     #: one-line remarks (a missing file, what to run)

    def markdown(self) -> str:
        """A Markdown report of everything shown (what the page's download button gives)."""
        parts = [f"# {self.title}", "", f"`{self.root}`", ""]
        parts += [f"- {n}" for n in self.notes] + ([""] if self.notes else [])
        parts += [t.markdown() for t in self.tables]
        parts += [f"![{c}]({p})" for p, c in self.images]
        return "\n".join(parts) + "\n"


def fmt_interval(mean, ci=None) -> str:
    """``0.432 [0.400, 0.470]`` (or only the mean where there is no interval)."""
    if mean is None:
        return ""
    s = f"{float(mean):.3f}"
    if ci and len(ci) == 2 and all(v is not None for v in ci):
        s += f" [{float(ci[0]):.3f}, {float(ci[1]):.3f}]"
    return s


def read_json(path) -> dict | list:
    """A JSON file the page shows, or a one-line :class:`SemgenError` saying what is wrong with it."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_JSON_BYTES:
            raise SemgenError(f"{p} is over {MAX_JSON_BYTES >> 20} MB; not a results file")
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise SemgenError(f"{p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SemgenError(f"{p} cannot be read ({getattr(e, 'strerror', None) or e})") from None
    except ValueError as e:
        raise SemgenError(f"{p} is not valid JSON ({e})") from None


def detect(root) -> str:
    """``"ablation"`` or ``"run"``: what kind of output folder ``root`` is.

    Raises
    ------
    SemgenError
        A missing path, a file, or a folder that is neither.
    """
    text = str(root).strip()
    if not text:
        raise SemgenError("enter a folder: an ablation output dir or a run dir")
    p = Path(os.path.expanduser(text))
    if not p.exists():
        raise SemgenError(f"folder {p} does not exist")
    if not p.is_dir():
        raise SemgenError(f"{p} is a file; open the folder that holds it")
    if (p / "results.jsonl").is_file():
        return "ablation"
    run_files = ("metrics.json", "export.json", "summary.json", "config.json", "best.pt", "model.safetensors",
                 "model.onnx")
    if any((p / f).is_file() for f in run_files):
        return "run"
    raise SemgenError(f"{p} is neither an ablation output dir (results.jsonl) nor a run dir "
                      "(metrics.json, export.json or a checkpoint)")


def load_results(root) -> ResultsView:
    """The :class:`ResultsView` of an ablation output dir or a run dir."""
    kind = detect(root)
    p = Path(os.path.expanduser(str(root).strip()))
    return ablation_view(p) if kind == "ablation" else run_view(p)


# -- ablation -------------------------------------------------------------------------------------

def ablation_view(root) -> ResultsView:
    """Tables of ``summary.json`` (every cell, and the gains over real-only) and the ablation plots."""
    root = Path(root)
    view = ResultsView("ablation", str(root), f"Ablation: {root.name}")
    if not (root / "summary.json").is_file():
        view.notes.append(f"no summary.json yet: `semgen ablate --report --out {root}` writes it from results.jsonl")
        return view
    agg = read_json(root / "summary.json")
    if not isinstance(agg, dict):
        raise SemgenError(f"{root / 'summary.json'} is not an ablation summary")
    for test, a in agg.items():
        if not isinstance(a, dict) or "groups" not in a:
            raise SemgenError(f"{root / 'summary.json'}: test set {test!r} has no groups; not an ablation summary")
        with_init = any(g.get("init", "scratch") != "scratch" for g in a["groups"])
        head = (["init"] if with_init else []) + ["arm", "real shots", "seeds", "accuracy [95% CI]",
                                                   "macro-F1 [95% CI]"]
        rows = [([g.get("init", "scratch")] if with_init else [])
                + [g.get("arm", "?"), str(g.get("shots", "")), len(g.get("seeds") or []),
                   _ci(g.get("accuracy")), _ci(g.get("macro_f1"))] for g in a["groups"]]
        view.tables.append(Table(f"Test set {test}: {a.get('n_images', '?')} images, "
                                 f"{len(a.get('classes') or [])} classes", head, rows))
        if a.get("gains"):
            head = (["init"] if with_init else []) + ["real shots", "best arm", "Δ macro-F1 [95% CI]",
                                                       "Δ accuracy [95% CI]"]
            rows = [([g.get("init", "scratch")] if with_init else [])
                    + [str(g.get("shots", "")), g.get("arm", "?"), _ci(g.get("macro_f1"), True),
                       _ci(g.get("accuracy"), True)] for g in a["gains"]]
            view.tables.append(Table(f"Test set {test}: best arm minus real-only (paired)", head, rows))
    for png in sorted(root.glob("ablation_*.png")):
        view.images.append((str(png), png.stem.replace("ablation_", "").replace("_", " ")))
    if (root / "summary.md").is_file():
        view.notes.append(f"the full report, per-class tables included: `{root / 'summary.md'}`")
    return view


def _ci(d, signed: bool = False) -> str:
    """A ``{"mean", "lo", "hi"}`` figure of the ablation summary as text."""
    if not isinstance(d, dict) or d.get("mean") is None:
        return ""
    f = "{:+.3f}" if signed else "{:.3f}"
    s = f.format(d["mean"])
    if d.get("lo") is not None and d.get("hi") is not None:
        s += f" [{f.format(d['lo'])}, {f.format(d['hi'])}]"
    return s


# -- run dir --------------------------------------------------------------------------------------

def run_view(root) -> ResultsView:
    """A run dir: training summary, evaluation metrics (with per-class rows), confusion matrix, export."""
    root = Path(root)
    view = ResultsView("run", str(root), f"Run: {root.name}")
    if (root / "summary.json").is_file():
        s = read_json(root / "summary.json")
        if isinstance(s, dict):
            keys = [k for k in ("arch", "size", "epochs_run", "best_epoch", "best_val_macro_f1", "images_per_s",
                                "train_images", "classes") if k in s]
            view.tables.append(Table("Training (summary.json)", ["field", "value"],
                                     [[k, _short(s[k])] for k in keys]))
    if (root / "metrics.json").is_file():
        m = read_json(root / "metrics.json")
        if not isinstance(m, dict):
            raise SemgenError(f"{root / 'metrics.json'} is not a metrics file")
        ci = m.get("ci") or {}
        rows = [[k.replace("_", " "), fmt_interval(m.get(k), ci.get(k))]
                for k in ("accuracy", "macro_f1", "macro_precision", "macro_recall") if m.get(k) is not None]
        rows.append(["test images", m.get("n", len(m.get("y_true") or []))])
        if m.get("data"):
            rows.append(["test data", ", ".join(map(str, m["data"]))])
        if m.get("skipped_images"):
            rows.append(["unreadable test images", len(m["skipped_images"])])
        view.tables.append(Table("Evaluation (metrics.json), 95% bootstrap CIs", ["metric", "value"], rows))
        per = m.get("per_class") or {}
        if per:
            view.tables.append(Table("Per class", ["class", "support", "precision", "recall", "F1"],
                                     [[c, v.get("support", ""), f"{v.get('precision', 0):.3f}",
                                       f"{v.get('recall', 0):.3f}", f"{v.get('f1', 0):.3f}"] for c, v in per.items()]))
        rej = m.get("reject")
        if isinstance(rej, dict) and rej.get("after"):
            a = rej["after"]
            view.tables.append(Table(f"Rejection to `other` below {rej.get('threshold')}", ["figure", "value"], [
                ["rejected", f"{rej.get('rejected')} ({100 * float(rej.get('rejected_fraction') or 0):.1f} %)"],
                ["accuracy on accepted", fmt_interval(rej.get("accuracy_on_accepted"))],
                ["accuracy after", fmt_interval(a.get("accuracy"))],
                ["macro-F1 after", fmt_interval(a.get("macro_f1"))]]))
        if (root / "confusion.png").is_file():
            view.images.append((str(root / "confusion.png"), "confusion matrix (confusion.png)"))
        else:
            view.notes.append("metrics.json has no confusion.png beside it")
    else:
        view.notes.append(f"no metrics.json: `semgen evaluate {root} --data TEST_DIR` writes it")
    if (root / "export.json").is_file():
        view.tables.append(export_table(read_json(root / "export.json"), root))
    else:
        view.notes.append(f"no export.json: `semgen export {root} --calib DIR` writes the ONNX files and it")
    for png in ("confusion_reject.png", "coverage_precision.png"):
        if (root / png).is_file():
            view.images.append((str(root / png), png[:-4].replace("_", " ")))
    return view


def export_table(e, root) -> Table:
    """The export report (``export.json``): each file's size, accuracy and latency, and the quantisation."""
    if not isinstance(e, dict):
        raise SemgenError(f"{Path(root) / 'export.json'} is not an export report")
    rows = []
    for key in ("fp32", "int8"):
        f = e.get(key)
        if not isinstance(f, dict):
            continue
        lat = f.get("latency") if isinstance(f.get("latency"), dict) else {}
        rows.append([f.get("file", key), f"{(f.get('bytes') or 0) / 1e6:.3f} MB",
                     fmt_interval(f.get("accuracy")), fmt_interval(f.get("macro_f1")),
                     f"{lat['median_ms']:.3f}" if isinstance(lat.get("median_ms"), (int, float)) else ""])
    q = e.get("quantization") if isinstance(e.get("quantization"), dict) else {}
    title = "Export (export.json)" + (f": {q['note']}" if q.get("note") else "")
    if e.get("top1_agreement") is not None:
        title += f"; INT8 agrees with FP32 on {100 * float(e['top1_agreement']):.1f} % of images"
    return Table(title, ["file", "size", "accuracy", "macro-F1", "median latency (ms)"], rows)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = v if isinstance(v, str) else ", ".join(map(str, v)) if isinstance(v, list) else json.dumps(v)
    return text if len(text) <= 120 else text[:117] + "..."
