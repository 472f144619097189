"""The curation report: one self-contained HTML file (every picture embedded as a PNG data URI).

Sections: counts and reasons; leakage hits; duplicate groups; metric histograms (curated input,
kept vs rejected, against the reference); then per class, contact sheets of the kept (best first)
and the rejected images with their reasons.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageReadError
from ..imageio import encode_png, read_gray, write_bytes_atomic
from .metrics import METRIC_DOCS, METRIC_NAMES

THUMB_PX = 112
PER_SHEET = 30

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1a1a1a;max-width:1360px}
h1{font-size:26px;margin-bottom:4px} h2{font-size:20px;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
h3{font-size:16px;margin:18px 0 6px} .muted{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:6px} figure{margin:0;width:124px;font-size:10.5px;line-height:1.25}
figure img{width:112px;height:112px;image-rendering:pixelated;border:3px solid #2e7d32;display:block}
figure.rej img{border-color:#c62828} figcaption{word-break:break-all;margin-top:2px}
.pair{display:inline-flex;gap:4px;margin:0 14px 14px 0;align-items:flex-start}
.pair figure img{border-color:#888} .pill{display:inline-block;background:#eee;border-radius:8px;padding:1px 7px;margin:1px;font-size:12px}
.pill.bad{background:#fde0e0;font-size:10px;word-break:break-all} .cards{display:flex;gap:14px;flex-wrap:wrap}
.card{background:#f7f7f7;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{font-size:26px;display:block}
"""


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _thumb_uri(path: str, cache: dict) -> str:
    if path in cache:
        return cache[path]
    try:
        img = read_gray(path, allow_16bit=True)
        h, w = img.shape
        s = THUMB_PX / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    except (ImageReadError, OSError, ValueError):
        img = np.full((THUMB_PX, THUMB_PX), 200, np.uint8)
        cv2.line(img, (0, 0), (THUMB_PX - 1, THUMB_PX - 1), 90, 2)
        cv2.line(img, (0, THUMB_PX - 1), (THUMB_PX - 1, 0), 90, 2)
    uri = cache[path] = _png_uri(encode_png(np.ascontiguousarray(img)))
    return uri


def _fig(path, caption, cache, rejected=False):
    cls = ' class="rej"' if rejected else ""
    return (f'<figure{cls}><img src="{_thumb_uri(path, cache)}" alt=""><figcaption>{caption}</figcaption></figure>')


def _histograms(items, ref_items, title, metrics=METRIC_NAMES, cols=4) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = [it.analysis["metrics"] for it in items if it.ok and not it.reasons]
    rej = [it.analysis["metrics"] for it in items if it.ok and it.reasons]
    ref = [it.analysis["metrics"] for it in ref_items if it.ok]
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.3 * rows), dpi=80)
    for ax, m in zip(np.ravel(axes), metrics):
        series = [(kept, "kept", "#2e7d32"), (rej, "rejected", "#c62828"), (ref, "reference", "#1565c0")]
        vals = np.concatenate([np.array([x[m] for x in s], float) for s, _, _ in series if s] or [np.zeros(1)])
        lo, hi = np.percentile(vals, [0.5, 99.5]) if len(vals) > 1 else (vals.min() - 1, vals.max() + 1)
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        bins = np.linspace(lo, hi, 31)
        for s, name, color in series:
            if s:
                v = np.clip(np.array([x[m] for x in s], float), lo, hi)
                ax.hist(v, bins=bins, density=True, histtype="step" if name == "reference" else "stepfilled",
                        alpha=0.9 if name == "reference" else 0.45, color=color, linewidth=1.6,
                        label=f"{name} ({len(s)})")
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in np.ravel(axes)[len(metrics):]:
        ax.axis("off")
    handles, labels = np.ravel(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=9, ncol=3)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f'<img src="{_png_uri(buf.getvalue())}" alt="histograms" style="max-width:100%">'


def _reason_pills(reasons) -> str:
    return "".join(f'<span class="pill bad">{html.escape(r)}</span>' for r in reasons)


def write_report(result, path, *, title: str = "semgen curate report", histograms_per_class: bool = True) -> Path:
    """Write the HTML report of a :class:`~.curate.CurationResult` to ``path``; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path / "report.html"
    cache: dict = {}
    c = result.counts()
    esc = html.escape
    by_id = {it.id: it for it in result.items}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>",
             f"<div class='muted'>input <code>{esc(result.config['input'])}</code> &rarr; output "
             f"<code>{esc(str(result.out))}</code>; reference <code>{esc(str(result.config['reference']))}</code>; "
             f"against <code>{esc(str(result.config['against']))}</code>; analysis {esc(result.config['analysis_version'])}; "
             f"{c['computed']} images analysed now, {c['cached']} from the cache</div>"]
    parts.append("<h2>Summary</h2><div class='cards'>" + "".join(
        f"<div class='card'><b>{v}</b>{k}</div>" for k, v in (
            ("input images", c["input"]), ("kept", c["kept"]), ("rejected", c["rejected"]),
            ("leaks", len(result.leaks)), ("exact-dup groups", len(result.exact_groups)),
            ("near-dup pairs", len(result.near_groups)))) + "</div>")
    # reasons
    reason_rows = "".join(f"<tr><td class='l'>{esc(k)}</td><td>{v}</td></tr>" for k, v in
                          sorted(c["reasons"].items(), key=lambda kv: -kv[1]))
    parts.append("<h3>Why images were rejected</h3><table><tr><th class='l'>reason</th><th>images</th></tr>"
                 f"{reason_rows or '<tr><td class=l>none</td><td>0</td></tr>'}</table>"
                 "<div class='muted'>an image can have several reasons; "
                 "<code>atypical_for_class:&lt;metric&gt;</code> reasons are counted together</div>")
    # per class table
    detail = Counter(r for it in result.rejected for r in it.reasons)
    atyp = Counter(r.split(":", 1)[1] for r in detail.elements() if r.startswith("atypical_for_class:"))
    labels = sorted(set(c["input_per_class"]) | set(c["kept_per_class"]))
    rows = "".join(f"<tr><td class='l'>{esc(k)}</td><td>{c['input_per_class'].get(k, 0)}</td>"
                   f"<td>{c['kept_per_class'].get(k, 0)}</td></tr>" for k in labels)
    parts.append(f"<h3>Per class</h3><table><tr><th class='l'>class</th><th>input</th><th>kept</th></tr>{rows}</table>")
    if atyp:
        parts.append("<h3>Atypical metrics</h3><table><tr><th class='l'>metric</th><th>images</th><th class='l'>meaning</th></tr>"
                     + "".join(f"<tr><td class='l'>{esc(k)}</td><td>{v}</td><td class='l'>{esc(METRIC_DOCS.get(k, ''))}</td></tr>"
                               for k, v in atyp.most_common()) + "</table>")
    # leakage
    parts.append(f"<h2>Leakage against the test set ({len(result.leaks)} hits)</h2>")
    if not result.config.get("against"):
        parts.append("<p class='muted'>no <code>--against</code> test set given</p>")
    elif not result.leaks:
        parts.append(f"<p>none of the {len(result.items)} images is a near-duplicate of one of the "
                     f"{len(result.against)} test images</p>")
    else:
        parts.append("<table><tr><th class='l'>image</th><th class='l'>test image</th><th>SimHash bits</th>"
                     "<th>local dev.</th><th>rms</th></tr>" + "".join(
                         f"<tr><td class='l'>{esc(a)}</td><td class='l'>{esc(b)}</td><td>{d}</td><td>{lo}</td><td>{rm}</td></tr>"
                         for a, b, d, lo, rm, _, _ in result.leaks) + "</table><div>")
        for a, b, d, lo, rm, tpath, ipath in result.leaks[:40]:
            parts.append("<div class='pair'>" + _fig(ipath, esc(a), cache, True) +
                         _fig(tpath, "test: " + esc(b) + f"<br>{d} bits, local {lo}", cache) + "</div>")
        parts.append("</div>")
    # duplicates
    parts.append(f"<h2>Duplicates</h2><h3>Pixel-identical groups ({len(result.exact_groups)})</h3>")
    for g in result.exact_groups[:30]:
        parts.append("<div class='pair'>" + "".join(
            _fig(by_id[k].path, ("kept: " if n == 0 else "copy: ") + esc(k), cache, n > 0)
            for n, k in enumerate(g[:6])) + "</div>")
    parts.append(f"<h3>Near-duplicates ({len(result.near_groups)} pairs; left = the one kept)</h3>"
                 "<div class='muted'>proposed by thumbnail SimHash or pHash within their radii, confirmed when the z-scored 32x32 "
                 "thumbnails differ only by noise (largest local deviation and RMS under their limits)</div>")
    for lead, dup, d, lo, rm in result.near_groups[:40]:
        parts.append("<div class='pair'>" + _fig(by_id[lead].path, "kept: " + esc(lead), cache) +
                     _fig(by_id[dup].path, f"{esc(dup)}<br>{d} bits, local {lo}, rms {rm}", cache, True) + "</div>")
    # histograms
    parts.append("<h2>Metrics</h2><div class='muted'>green: kept, red: rejected, blue outline: reference. "
                 "Axes cover the 0.5-99.5 % range of all values.</div>")
    parts.append(_histograms(result.items, result.reference, "all classes"))
    parts.append("<table><tr><th class='l'>metric</th><th class='l'>meaning</th></tr>" + "".join(
        f"<tr><td class='l'>{k}</td><td class='l'>{esc(v)}</td></tr>" for k, v in METRIC_DOCS.items()) + "</table>")
    # per class sheets
    ref_by = defaultdict(list)
    for it in result.reference:
        ref_by[it.label].append(it)
    for label in labels:
        items = [it for it in result.items if it.label == label]
        kept = sorted((it for it in items if not it.reasons), key=lambda it: -it.score)
        rej = [it for it in items if it.reasons]
        parts.append(f"<h2>{esc(label)}: {len(kept)} kept, {len(rej)} rejected</h2>")
        parts.append(f"<h3>Kept (best {min(PER_SHEET, len(kept))} by score)</h3><div class='grid'>")
        parts += [_fig(it.path, f"{esc(it.id)}<br>score {it.score:.3f}", cache) for it in kept[:PER_SHEET]]
        parts.append(f"</div><h3>Rejected (first {min(PER_SHEET, len(rej))})</h3><div class='grid'>")
        parts += [_fig(it.path, f"{esc(it.id)}<br>{_reason_pills(it.reasons)}", cache, True) for it in rej[:PER_SHEET]]
        parts.append("</div>")
        if histograms_per_class and ref_by.get(label):
            parts.append(_histograms(items, ref_by[label], f"{label}: this class against its reference"))
    parts.append("</body></html>")
    write_bytes_atomic(path, "\n".join(parts).encode())
    return path
