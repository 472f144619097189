"""The Gradio page: four tabs wired to the pure logic of :mod:`.playground`, :mod:`.browser`,
:mod:`.results` and :mod:`.classify`.

Every handler goes through :func:`guard`: a :class:`~semgen.errors.SemgenError` (bad input) becomes
a one-line message in the tab's status line, anything else a one-line "unexpected error" (the
traceback goes to the server log), and the server keeps running either way.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio loads: nothing phones home

import gradio as gr  # noqa: E402

from ..errors import SemgenError  # noqa: E402
from . import browser, classify, draw, playground, results  # noqa: E402

log = logging.getLogger("semgen.app")

CSS = """
.semgen-status strong { color: #b42318; }
footer { display: none !important; }
"""


def error_text(e: BaseException) -> str:
    """The status line for an exception: the message of a user error, one line for anything else."""
    if isinstance(e, SemgenError):
        return f"**Error:** {md_escape(str(e))}"
    log.error("unexpected error in the app:\n%s", traceback.format_exc())
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"**Unexpected error:** {type(e).__name__}: {md_escape(first)} (details in the server log)"


def md_escape(text: str) -> str:
    """Text that Markdown shows as written (paths hold underscores and asterisks)."""
    for ch in "\\`*_{}[]<>|#":
        text = text.replace(ch, "\\" + ch)
    return text


def guard(n_outputs: int):
    """Wrap a handler whose first output is the status line: an error goes there, other outputs stay."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the page reports it; the server must keep running
                return [error_text(e)] + [gr.skip()] * (n_outputs - 1)

        return inner

    return wrap


@functools.lru_cache(maxsize=64)
def _render(name: str, seed: int, size: int, pins: str, ranges: str) -> playground.Rendered:
    """:func:`playground.render`, remembered: the widgets and the image of one state are drawn once."""
    from ..generators.procedural import create_generator

    return playground.render(create_generator(name), seed, size, json.loads(pins), json.loads(ranges))


def _widget_value(w: playground.Widget, value):
    if value is None:
        return None
    return str(value) if w.control == "dropdown" else bool(value) if w.control == "checkbox" else value


def _shown(w: playground.Widget, value):
    """A sampled value as its widget shows it: floats to 4 significant digits (the exact value is
    the one the image used; fixing the parameter from the dropdown keeps the exact one)."""
    if isinstance(value, float) and w.control in ("slider", "number"):
        value = float(f"{value:.4g}")
    return _widget_value(w, value)


def _widget(w: playground.Widget, value, visible: bool):
    """The Gradio component of one parameter (limits are checked by the handler, with a message)."""
    common = dict(label=w.label, info=w.info, visible=visible, interactive=True, elem_id=f"pg-p-{w.name}",
                  value=_widget_value(w, value))
    if w.control == "checkbox":
        return gr.Checkbox(**common)
    if w.control == "dropdown":
        return gr.Dropdown(list(w.choices), **common)
    if w.control == "slider":
        # Gradio refuses a typed value outside a slider's range itself (a toast naming the range)
        return gr.Slider(w.minimum, w.maximum, step=w.step, **common)
    return gr.Number(**common)  # no bounds here: the handler's message names the limits and the unit


# -- 1. generator playground ---------------------------------------------------------------------

def playground_tab(demo, default_class: str, workdir: Path) -> None:
    from ..generators.procedural import create_generator, list_generators
    from ..generators.procedural.profile import dump_profile

    names = list_generators()
    gr.Markdown("Pick a class and move any parameter. A parameter you touch is **fixed** (`--set name=value`); "
                "the others are **sampled** from the seed, as `semgen procedural` does (pasted `name=lo:hi` "
                "items or a `--profile` change how they are sampled). The image is image 0 of the command "
                "under *Export*, byte for byte.")
    with gr.Row():
        with gr.Column(scale=5, min_width=420) as left:
            with gr.Row():
                cls = gr.Dropdown(names, value=default_class if default_class in names else names[0],
                                  label="class (generator)", elem_id="pg-class", scale=3)
                seed = gr.Number(0, label="seed", precision=0, elem_id="pg-seed", scale=2)
                reroll = gr.Button("Re-roll", elem_id="pg-reroll", scale=1, min_width=80)
            size = gr.Slider(playground.MIN_SIZE, playground.MAX_SIZE, 256, step=32, label="size (px)",
                             elem_id="pg-size")
            fixed_dd = gr.Dropdown([], value=[], multiselect=True, elem_id="pg-fixed",
                                   label="fixed parameters (remove one to sample it again)")
            free_all = gr.Button("Sample every parameter again", size="sm", elem_id="pg-free")
            settings = gr.State({})  # {generator name: {"pins": {...}, "ranges": {...}}}
        with gr.Column(scale=6, min_width=420):
            status = gr.Markdown(elem_id="pg-status", elem_classes="semgen-status")
            with gr.Row():
                image = gr.Image(label="image", format="png", interactive=False, elem_id="pg-image", height=320)
                over = gr.Image(label="mask overlay and boxes", format="png", interactive=False,
                                elem_id="pg-overlay", height=320)
            info = gr.Markdown(elem_id="pg-info")
            with gr.Accordion("Export", open=True):
                with gr.Row():
                    n = gr.Number(100, label="N images", precision=0, elem_id="pg-n")
                    out_dir = gr.Textbox("", label="--out (optional)", placeholder="out/procedural")
                command = gr.Code(label="command (its image 0 is the one shown)", language="shell",
                                  interactive=False, elem_id="pg-command", wrap_lines=True, lines=2)
                sets = gr.Code(label="--set list", interactive=False, elem_id="pg-sets", lines=2)
                export = gr.Button("Export profile", elem_id="pg-export")
                export_cmd = gr.Code(label="the same images from the profile file", language="shell",
                                     interactive=False, elem_id="pg-profile-command", wrap_lines=True, lines=2)
                export_file = gr.File(label="profile (--profile FILE.yaml)", interactive=False, elem_id="pg-file")
            with gr.Accordion("Paste settings", open=False):
                pasted = gr.Textbox(label="a semgen procedural command, --set items, name=value lines or "
                                          "--profile FILE", lines=3, elem_id="pg-paste")
                apply = gr.Button("Apply", elem_id="pg-apply")

    head = [status, image, over, info, fixed_dd, command, sets, settings]
    ins = [cls, seed, size, settings, n, out_dir]

    def own(all_settings, gen) -> tuple[dict, dict]:
        s = (all_settings or {}).get(gen.name) or {}
        return dict(s.get("pins") or {}), dict(s.get("ranges") or {})

    def state_outputs(name, seed_v, size_v, all_settings, n_v, out_v):
        """The head outputs and the widgets' updates for one state of the page."""
        gen = create_generator(name)
        seed_i, size_i = playground.check_seed_size(seed_v, size_v)
        pins, ranges = own(all_settings, gen)
        r = _render(gen.name, seed_i, size_i, _key(pins), _key(ranges))
        layout = r.params.get("layout") or r.meta.get("layout") or ""
        n_pins = sum(1 for k in pins if k in r.params)
        text = (f"image seed `{r.seed}` · PNG sha256 `{r.sha256[:16]}` · {len(r.bboxes)} box(es)"
                + (f" · layout `{layout}`" if layout else "")
                + f" · {n_pins} fixed, {len(r.params) - n_pins} sampled"
                + (f" ({len(ranges)} with changed ranges)" if ranges else ""))
        try:
            cmd = playground.procedural_command(gen, pins, ranges, n=n_v or 1, size=size_i, seed=seed_i,
                                                out=out_v or None)
        except SemgenError as e:
            cmd = f"# {e}"
        heads = ["", r.image, draw.overlay(r.image, r.mask, r.bboxes), text,
                 gr.update(choices=gen.space.names, value=[k for k in gen.space.names if k in pins]),
                 cmd, "\n".join(playground.set_list(gen, pins, ranges)) or "(nothing fixed)", all_settings]
        widgets = [gr.update(value=_widget_value(w, pins[w.name]) if w.name in pins else _shown(w, r.params.get(w.name)),
                             visible=w.name in r.params or w.name in pins) for w in playground.widgets(gen)]
        return heads, widgets

    @guard(len(head))
    def show(name, seed_v, size_v, all_settings, n_v, out_v):
        return state_outputs(name, seed_v, size_v, all_settings, n_v, out_v)[0]

    gr.on([demo.load, cls.change, n.input, out_dir.input], show, ins, head)

    with left:  # gr.render draws its widgets where it is declared: under the controls
        @gr.render(inputs=[cls, seed, size, settings], triggers=[demo.load, cls.change])
        def parameter_widgets(name, seed_v, size_v, all_settings):
            gen = create_generator(name)
            ws = playground.widgets(gen)
            pins, ranges = own(all_settings, gen)
            try:
                seed_i, size_i = playground.check_seed_size(seed_v, size_v)
                values = {**_render(gen.name, seed_i, size_i, _key(pins), _key(ranges)).params, **pins}
            except Exception:  # noqa: BLE001 - the head handler reports it; the widgets still appear
                values = dict(pins)
            comps = {}
            titles = {"class": f"{gen.name} parameters ({gen.name}@{gen.version})",
                      "imaging": "imaging (every class)", "overlays": "overlays (every class)"}
            for group, title in titles.items():
                members = [w for w in ws if w.group == group]
                if members:
                    with gr.Accordion(f"{title}: {len(members)}", open=group == "class"):
                        for w in members:
                            v = values.get(w.name)
                            comps[w.name] = _widget(w, v if w.name in pins else _shown(w, v), w.name in values)
            widgets = [comps[w.name] for w in ws]
            outs = head + widgets

            def respond(name_, seed_v_, size_v_, all_, n_v_, out_v_):
                h, wu = state_outputs(name_, seed_v_, size_v_, all_, n_v_, out_v_)
                return h + wu

            def with_own(all_, g, pins_, ranges_):
                return {**(all_ or {}), g.name: {"pins": pins_, "ranges": ranges_}}

            def set_param(pname, value, all_, name_, seed_v_, size_v_, n_v_, out_v_):
                g = create_generator(name_)
                v = playground.check_value(g, pname, value)
                p, rg = own(all_, g)
                return respond(name_, seed_v_, size_v_, with_own(all_, g, {**p, pname: v}, rg), n_v_, out_v_)

            for w in ws:
                comps[w.name].input(guard(len(outs))(functools.partial(set_param, w.name)),
                                    [comps[w.name], settings] + ins[:3] + ins[4:], outs, trigger_mode="always_last")

            @guard(len(outs))
            def on_state(name_, seed_v_, size_v_, all_, n_v_, out_v_):
                return respond(name_, seed_v_, size_v_, all_, n_v_, out_v_)

            gr.on([seed.input, size.input], on_state, ins, outs, trigger_mode="always_last")

            @guard(len(outs) + 1)
            def on_reroll(name_, seed_v_, size_v_, all_, n_v_, out_v_):
                s, _ = playground.check_seed_size(seed_v_, size_v_)
                s = (s + 1) % (playground.MAX_SEED + 1)
                return respond(name_, s, size_v_, all_, n_v_, out_v_) + [s]

            reroll.click(on_reroll, ins, outs + [seed])

            @guard(len(outs))
            def on_fixed(selected, name_, seed_v_, size_v_, all_, n_v_, out_v_):
                g = create_generator(name_)
                seed_i_, size_i_ = playground.check_seed_size(seed_v_, size_v_)
                p, rg = own(all_, g)
                shown = _render(g.name, seed_i_, size_i_, _key(p), _key(rg)).params
                new = {k: p[k] if k in p else shown[k] for k in (selected or []) if k in p or k in shown}
                return respond(name_, seed_v_, size_v_, with_own(all_, g, new, rg), n_v_, out_v_)

            fixed_dd.input(on_fixed, [fixed_dd] + ins, outs)

            @guard(len(outs))
            def on_free(name_, seed_v_, size_v_, all_, n_v_, out_v_):
                g = create_generator(name_)
                return respond(name_, seed_v_, size_v_, with_own(all_, g, {}, {}), n_v_, out_v_)

            free_all.click(on_free, ins, outs)

            @guard(len(outs) + 3)
            def on_apply(text, name_, seed_v_, size_v_, all_, n_v_, out_v_):
                cur = create_generator(name_)
                s = playground.parse_settings(text, cur)
                target = create_generator(s["class"]) if s["class"] else cur
                seed_v_ = s["seed"] if s["seed"] is not None else seed_v_
                size_v_ = s["size"] if s["size"] is not None else size_v_
                all_ = with_own(all_, target, s["pins"], s["ranges"])
                if target.name != cur.name:  # the class change draws everything again
                    return ([f"applied {len(s['pins']) + len(s['ranges'])} setting(s) to {target.name}"]
                            + [gr.skip()] * (len(head) - 2) + [all_] + [gr.skip()] * len(widgets)
                            + [target.name, seed_v_, size_v_])
                return respond(name_, seed_v_, size_v_, all_, n_v_, out_v_) + [target.name, seed_v_, size_v_]

            apply.click(on_apply, [pasted] + ins, outs + [cls, seed, size])

    @guard(3)
    def on_export(name, seed_v, size_v, all_settings, n_v, out_v):
        gen = create_generator(name)
        pins, ranges = own(all_settings, gen)
        seed_i, size_i = playground.check_seed_size(seed_v, size_v)
        path = workdir / f"{gen.name}-profile.yaml"
        dump_profile(playground.profile(gen, pins, ranges), path)
        cmd = playground.procedural_command(gen, pins, ranges, n=n_v or 1, size=size_i, seed=seed_i,
                                            out=out_v or None, profile_path=path.name)
        return [f"exported {len(pins) + len(ranges)} setting(s) to {path.name}", cmd, str(path)]

    export.click(on_export, ins, [status, export_cmd, export_file])


def _key(d: dict) -> str:
    """A dict as a hashable, order-free key (for the render cache)."""
    return json.dumps(d, sort_keys=True)


# -- 2. dataset browser --------------------------------------------------------------------------

def _choices(values) -> list:
    return [(f"{v} ({c})", v) for v, c in values]


def browser_tab(data_dirs: list[str]) -> None:
    gr.Markdown("Open a dataset dir or an ImageFolder tree. Pages of thumbnails; click one for its mask, boxes "
                "and record. Nothing is written.")
    with gr.Row():
        folder = gr.Dropdown(data_dirs, value=data_dirs[0] if data_dirs else None, allow_custom_value=True,
                             label="dataset dir or ImageFolder", elem_id="db-folder", scale=5)
        open_btn = gr.Button("Open", elem_id="db-open", scale=1, min_width=80)
    status = gr.Markdown(elem_id="db-status", elem_classes="semgen-status")
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
    with gr.Row():
        folder = gr.Dropdown(run_dirs, value=run_dirs[0] if run_dirs else None, allow_custom_value=True,
                             label="ablation output dir or run dir", elem_id="res-folder", scale=5)
        open_btn = gr.Button("Open", elem_id="res-open", scale=1, min_width=80)
    status = gr.Markdown(elem_id="res-status", elem_classes="semgen-status")
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
