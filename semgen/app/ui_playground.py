"""The generator playground tab: widgets built from the registry at run time (``gr.render``), one
image per state, the export. The logic is :mod:`semgen.app.playground`; this module only wires it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..errors import SemgenError
from . import draw, playground
from .ui_common import gr, guard

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
