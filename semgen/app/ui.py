"""The Gradio app: the dataset browser, results and classify tabs, and :func:`build_app` /
:func:`launch`. The playground tab is :mod:`.ui_playground`; what tabs share is :mod:`.ui_common`;
the logic of every page is in plain modules (:mod:`.playground`, :mod:`.browser`, :mod:`.results`,
:mod:`.classify`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import SemgenError
from . import browser, classify, results
from .ui_common import CSS, folder_row, gr, guard, md_escape  # ui_common loads Gradio with telemetry off
from .ui_playground import playground_tab


def _choices(values) -> list:
    return [(f"{v} ({c})", v) for v, c in values]


def browser_tab(data_dirs: list[str]) -> None:
    gr.Markdown("Open a dataset dir or an ImageFolder tree. Pages of thumbnails; click one for its mask, boxes "
                "and record. Nothing is written.")
    folder, open_btn, status = folder_row(data_dirs, "dataset dir or ImageFolder", "db")
    with gr.Row():
        f_cls = gr.Dropdown([], multiselect=True, label="class", elem_id="db-f-class")
        f_src = gr.Dropdown([], multiselect=True, label="source", elem_id="db-f-source")
        f_gen = gr.Dropdown([], multiselect=True, label="generator", elem_id="db-f-generator")
        f_sta = gr.Dropdown([], multiselect=True, label="curation status", elem_id="db-f-status")
    with gr.Row():
        prev = gr.Button("◀ previous", size="sm", elem_id="db-prev")
        page = gr.Number(1, label="page", precision=0, elem_id="db-page", min_width=80)
        nxt = gr.Button("next ▶", size="sm", elem_id="db-next")
        page_info = gr.Markdown(elem_id="db-page-info")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="thumbnails (click for mask and record)", columns=6, height=560,
                                 allow_preview=False, object_fit="contain", elem_id="db-gallery", format="png",
                                 buttons=[], fit_columns=False)
        with gr.Column(scale=2):
            picked = gr.Image(label="mask and boxes", format="png", interactive=False, elem_id="db-detail", height=300)
            picked_note = gr.Markdown(elem_id="db-detail-note")
            record = gr.JSON(label="record", elem_id="db-record", open=True, height=320)
    with gr.Row():
        with gr.Column():
            counts = gr.Markdown(elem_id="db-counts")
            chart = gr.BarPlot(x="class", y="images", label="images per class (filtered)", elem_id="db-chart",
                               height=260)
        with gr.Column():
            reasons = gr.Dataframe(headers=["curation reason", "images"], label="rejection reasons (filtered)",
                                   visible=False,
                                   interactive=False, elem_id="db-reasons", max_height=300)
            problems = gr.Markdown(elem_id="db-problems")
    state = gr.State({})  # {"root": str, "positions": [...], "page": [...], "records": {...}}

    def page_outputs(idx, positions, page_no):
        import pandas as pd

        shown, n_pages = browser.page_slice(positions, page_no)
        page_no = min(max(1, int(page_no or 1)), n_pages)
        cc = browser.class_counts(idx, positions)
        words = " · ".join(f"{k} {v}" for k, v in cc.items())
        text = (f"**{len(positions)} image{'s' if len(positions) != 1 else ''}** in {len(cc)} "
                f"class{'es' if len(cc) != 1 else ''}: {words}") if positions else "**no image** matches"
        df = pd.DataFrame({"class": list(cc), "images": list(cc.values())})
        rs = browser.reason_counts(idx, positions)
        info = f"page {page_no} of {n_pages} · {len(positions)} of {len(idx.entries)} images"
        st = {"root": idx.root, "positions": positions, "page": shown, "records": {}}
        top = max(cc.values(), default=1)
        return [page_no, info, browser.thumbnails(idx, shown), text, gr.update(value=df, y_lim=[0, top * 1.1]),
                gr.update(value=[list(r) for r in rs], visible=bool(rs)), st, None, "", None]

    tail = [page, page_info, gallery, counts, chart, reasons, state, picked, picked_note, record]

    @guard(1 + 4 + len(tail) + 1)
    def on_open(root):
        idx = browser.open_index(root)
        fv = browser.facet_values(idx)
        positions = browser.filter_positions(idx)
        msg = f"opened {md_escape(idx.root)} ({idx.kind}): {len(idx.entries)} images"
        prob = ""
        if idx.n_problems:
            msg += f"; **{idx.n_problems} manifest line(s) skipped** (listed below)"
            prob = "**Skipped manifest lines:**\n\n" + "\n".join(f"- {md_escape(p)}" for p in idx.problems)
            if idx.n_problems > len(idx.problems):
                prob += f"\n- ... and {idx.n_problems - len(idx.problems)} more"
        filters = [gr.update(choices=_choices(fv[f]), value=[]) for f in browser.FACETS]
        return [msg] + filters + page_outputs(idx, positions, 1) + [prob]

    open_outs = [status, f_cls, f_src, f_gen, f_sta] + tail + [problems]
    gr.on([open_btn.click, folder.select], on_open, [folder], open_outs)

    @guard(1 + len(tail))
    def on_filter(st, c, s, g, k):
        idx = browser.open_index(st["root"]) if st else None
        if idx is None:
            raise SemgenError("open a folder first")
        positions = browser.filter_positions(idx, classes=c, sources=s, generators=g, statuses=k)
        return [""] + page_outputs(idx, positions, 1)

    filters = [f_cls, f_src, f_gen, f_sta]
    gr.on([f.input for f in filters], on_filter, [state] + filters, [status] + tail)

    def goto(delta):
        @guard(1 + len(tail))
        def go(st, page_no):
            if not st:
                raise SemgenError("open a folder first")
            idx = browser.open_index(st["root"])
            return [""] + page_outputs(idx, st["positions"], int(page_no or 1) + delta)

        return go

    prev.click(goto(-1), [state, page], [status] + tail)
    nxt.click(goto(+1), [state, page], [status] + tail)
    page.submit(goto(0), [state, page], [status] + tail)

    @guard(5)
    def on_pick(st, evt: gr.SelectData):
        if not st or evt.index is None:
            raise SemgenError("open a folder first")
        idx = browser.open_index(st["root"])
        i = int(evt.index if not isinstance(evt.index, (list, tuple)) else evt.index[0])
        pos = st["page"][i]
        recs = st.get("records") or {}
        if str(pos) not in recs:  # one pass reads the whole page's records
            recs = {str(k): v for k, v in browser.records_at(idx, st["page"]).items()}
            st = {**st, "records": recs}
        rec = recs[str(pos)]
        pic, note = browser.detail(idx, pos, rec)
        cur = rec.get("curation") if isinstance(rec.get("curation"), dict) else {}
        if cur.get("reasons"):
            note += f"  \n**{cur.get('status', 'curation')}:** " + ", ".join(f"`{r}`" for r in cur["reasons"])
        return ["", pic, note, rec, st]

    gallery.select(on_pick, [state], [status, picked, picked_note, record, state])


# -- 3. results ----------------------------------------------------------------------------------

def results_tab(run_dirs: list[str], workdir: Path) -> None:
    gr.Markdown("Open an ablation output dir (`semgen ablate`) or a classifier run dir (`semgen train`, "
                "`evaluate`, `export`).")
    folder, open_btn, status = folder_row(run_dirs, "ablation output dir or run dir", "res")
    tables = gr.Markdown(elem_id="res-tables")
    plots = gr.Gallery(label="plots", columns=2, height=520, object_fit="contain", elem_id="res-plots",
                       format="png", fit_columns=False)
    report = gr.File(label="report (Markdown)", interactive=False, elem_id="res-report")

    @guard(4)
    def on_open(root):
        from PIL import Image

        view = results.load_results(root)
        body = "\n".join(f"- {n}" for n in view.notes)  # our own text, with `code` spans
        body += "\n\n" + "\n".join(t.markdown() for t in view.tables)
        pics = []
        for p, cap in view.images:
            with Image.open(p) as im:
                pics.append((im.convert("RGB"), cap))
        path = workdir / f"semgen-report-{Path(view.root).name or 'results'}.md"
        path.write_text(view.markdown())
        return [f"opened {md_escape(view.title)}", body, pics, str(path)]

    gr.on([open_btn.click, folder.select], on_open, [folder], [status, tables, plots, report])


# -- 4. classify ---------------------------------------------------------------------------------

def classify_tab(run_dirs: list[str], max_upload_bytes: int) -> None:
    models = classify.model_choices(run_dirs)
    gr.Markdown("Upload SEM images and pick a model: a run dir (its PyTorch checkpoint, with a Grad-CAM "
                f"saliency map), `model.onnx` or `model.int8.onnx`. Uploads up to {classify.size_text(max_upload_bytes)}.")
    with gr.Row():
        model = gr.Dropdown(models, value=models[0] if models else None, allow_custom_value=True,
                            label="model", elem_id="cl-model", scale=4)
        threshold = gr.Slider(0, 1, classify.DEFAULT_THRESHOLD, step=0.01, elem_id="cl-threshold", scale=2,
                              label="reject to 'other' below this confidence")
        saliency = gr.Checkbox(True, label="saliency (PyTorch)", elem_id="cl-saliency", scale=1)
    files = gr.File(file_count="multiple", label="images", elem_id="cl-files", height=140)
    run = gr.Button("Classify", variant="primary", elem_id="cl-run")
    status = gr.Markdown(elem_id="cl-status", elem_classes="semgen-status")
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(headers=["file", "decision", "top class", "confidence", "note"], interactive=False,
                                 elem_id="cl-table", label="predictions", wrap=True)
            pics = gr.Gallery(label="what the model saw (Grad-CAM: red = most evidence)", columns=4,
                              height=320, object_fit="contain", elem_id="cl-gallery", format="png",
                              fit_columns=False)
        with gr.Column(scale=2):
            probs = gr.Label(label="probabilities (first image)", num_top_classes=5, elem_id="cl-label")

    @guard(4)
    def on_classify(model_v, files_v, threshold_v, saliency_v):
        rs = classify.classify(model_v, files_v, threshold=threshold_v, saliency=bool(saliency_v),
                               max_bytes=max_upload_bytes)
        rows, gal, first = [], [], None
        for r in rs:
            if r.error:
                rows.append([r.name, "", "", "", r.error])
                continue
            note = f"rejected: {r.top} at {r.confidence:.2f} < {float(threshold_v):.2f}" if r.rejected else ""
            rows.append([r.name, r.label, r.top, f"{r.confidence:.3f}", note])
            gal.append((r.picture, f"{r.name}: {r.label} ({r.confidence:.2f})"))
            first = first or r
        bad = [r for r in rs if r.error]
        msg = f"classified {len(rs) - len(bad)} of {len(rs)} file(s)"
        if bad:
            msg = "**Error:** " + md_escape("; ".join(r.error for r in bad)) + f"  \n{msg}"
        return [msg, rows, gal, first.probs if first else None]

    gr.on([run.click, files.upload, threshold.input, saliency.input], on_classify, [model, files, threshold, saliency],
          [status, table, pics, probs], trigger_mode="always_last")


# -- the app -------------------------------------------------------------------------------------

def build_app(*, data=(), runs=(), default_class: str = "bridge",
              max_upload_bytes: int = classify.MAX_UPLOAD_BYTES, workdir=None) -> gr.Blocks:
    """The semgen app as a :class:`gradio.Blocks` (not started: call ``.launch`` or :func:`semgen.app.serve`).

    Parameters
    ----------
    data : list of path
        Dataset dirs / ImageFolders offered in the browser.
    runs : list of path
        Run dirs and ablation output dirs offered in *Results*; their models in *Classify*.
    max_upload_bytes : int
        Largest upload the classify page accepts.
    workdir : path, optional
        Where the page puts the files it offers for download (default: a new temporary dir).
    """
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="semgen-app-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data = [str(d) for d in data]
    runs = [str(r) for r in runs]
    with gr.Blocks(title="semgen", analytics_enabled=False) as demo:
        gr.Markdown("# semgen · synthetic SEM defect images")
        with gr.Tabs():
            with gr.Tab("Generator playground", id="playground", elem_id="tab-playground"):
                playground_tab(demo, default_class, workdir)
            with gr.Tab("Dataset browser", id="browser", elem_id="tab-browser"):
                browser_tab(data)
            with gr.Tab("Results", id="results", elem_id="tab-results"):
                results_tab(runs, workdir)
            with gr.Tab("Classify", id="classify", elem_id="tab-classify"):
                classify_tab(runs, max_upload_bytes)
    demo.semgen_workdir = workdir
    return demo


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True,
           max_upload_bytes: int = classify.MAX_UPLOAD_BYTES, quiet: bool = False):
    """Start the server (on localhost unless told); ``block=False`` returns once it listens."""
    return demo.launch(server_name=host, server_port=int(port), share=False, prevent_thread_lock=not block,
                       quiet=quiet, show_error=False, ssr_mode=False, mcp_server=False, inbrowser=False,
                       max_file_size=10 * int(max_upload_bytes), css=CSS, footer_links=[],
                       allowed_paths=[str(getattr(demo, "semgen_workdir", tempfile.gettempdir()))])
