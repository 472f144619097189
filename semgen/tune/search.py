"""``semgen tune``: search each class's sampling ranges and choice weights so that generated images
match a real reference (Optuna TPE, one study per class, resumable from sqlite).

Search space, per class: the ``layout`` choice weights, the class's own parameters (those not
shared with most other generators: the layout and line/space parameters are), a few imaging
parameters (:data:`IMAGING_TUNED`) and the overlay probabilities. A numeric parameter is two
positions in its search box (the default range widened by :data:`WIDEN` of its width on each
side, within the limits; log scale for log parameters), sorted into ``[lo, hi]``; a choice is one
weight in [0, 1] per value; a bool is its probability. The first trial of a study is the
defaults. The objective (lower is better) is the texture discriminator's AUC
(:class:`~.objective.TextureAUC`) or ``1 -`` the TSTR macro-F1 of a linear probe
(:class:`~.tstr.TSTR`), on ``n`` images per class of fixed seeds (the same for every trial, so
trials differ by their ranges only).

With many trials the search's best value is mostly luck: it is the minimum of many noisy
estimates on the same ``n`` images (measured: 200 trials per class, best trials at AUC 0.44-0.59,
the same ranges on fresh seeds worse than the defaults for four of nine classes). So the profile
is chosen on fresh seeds: the defaults and the :data:`CANDIDATES` best trials are scored again on
``select_n`` new images (the *selection* set; default :data:`SELECT_FACTOR` x ``n``), and the
lowest wins; when that is the defaults, the
class keeps them (an empty entry in the profile). ``before`` / ``after`` in the report are then
measured on a third set of ``select_n`` images (the *check* set), which neither the search nor the
choice saw: the defaults and the chosen ranges on the same images. With the TSTR objective the
chosen ranges then pass a joint selection (:func:`joint_selection`): each class's ranges stay only
if, added to those kept before them, they raise the probe's macro-F1 on the selection set, since
ranges chosen with every other class at its defaults can confuse another class once all stream
their own.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import SemgenError
from ..generators.procedural.generation import generate
from ..generators.procedural.profile import PROFILE_VERSION, dump_profile, validate_profile
from ..generators.procedural.registry import create_generator, list_generators
from ..manifests.ops import check_writable_dir
from .objective import Reference, TextureAUC

#: imaging parameters every class tunes (texture, noise, tone): what the metrics see most
IMAGING_TUNED = ("psf_sigma_px", "dose", "detector_sigma", "edge_gain", "bg_amplitude", "charging",
                 "brightness", "contrast", "gamma")
OVERLAYS_TUNED = ("overlay_infobar", "overlay_scalebar", "overlay_jpeg")
#: best search trials re-scored on the selection set, beside the defaults
CANDIDATES = 5
#: the selection and check sets hold this many times ``n`` images per class. The objectives are
#: noisy at tens of images: the TSTR macro-F1 of the defaults on disjoint sets of 30, 60 or 120
#: images per class had a standard deviation of 0.035 / 0.031 / 0.038 (16 / 8 / 4 sets); two sets
#: of 240 scored 0.403 and 0.407 (sem-real/train, ImageNet Lite0 features, 128 px)
SELECT_FACTOR = 8


def tuned_params(gen) -> list[str]:
    """The parameters ``semgen tune`` searches for generator ``gen`` (see the module docstring).

    Examples
    --------
    >>> "bridge_width" in tuned_params(create_generator("bridge")), "pitch_nm" in tuned_params(create_generator("bridge"))
    (True, False)
    """
    names = list_generators()
    counts: dict[str, int] = {}
    for n in names:
        for p in create_generator(n).params.names:
            counts[p] = counts.get(p, 0) + 1
    own = [p for p in gen.params.names if p == "layout" or counts[p] * 2 < len(names)]
    space = gen.space
    return [p for p in own + list(IMAGING_TUNED) + list(OVERLAYS_TUNED)
            if p in space and (space[p].kind in ("choice", "bool") or space[p].valid_range is not None)]


#: the search box of a numeric parameter: its default range widened by this fraction of its width
#: on each side (in log units for log parameters), within its limits. The limits themselves are
#: far too wide: random ranges there are told from real images with AUC ~1.0 (measured).
WIDEN = 0.5


def _limits(spec) -> tuple[float, float]:
    lo, hi = (float(x) for x in spec.valid_range)
    if spec.log and lo <= 0:
        lo = float(spec.low)  # log positions need lo > 0: the default low is the floor then
    if spec.low is None or spec.high <= spec.low:
        return lo, hi
    if spec.log:
        a, b = math.log(spec.low), math.log(spec.high)
        w = WIDEN * (b - a)
        return max(lo, math.exp(a - w)), min(hi, math.exp(b + w))
    w = WIDEN * (float(spec.high) - float(spec.low))
    return max(lo, float(spec.low) - w), min(hi, float(spec.high) + w)


def _to_u(spec, v: float) -> float:
    lo, hi = _limits(spec)
    if hi <= lo:
        return 0.0
    if spec.log:
        return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (float(v) - lo) / (hi - lo)


def _from_u(spec, u: float):
    lo, hi = _limits(spec)
    v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if spec.log else lo + u * (hi - lo)
    v = min(max(float(f"{v:.4g}"), lo), hi)  # 4 significant digits: a readable profile
    return int(round(v)) if spec.kind == "int" else float(v)


def default_trial(gen, names) -> dict:
    """Optuna trial parameters that reproduce ``gen``'s default ranges and weights."""
    space = gen.space
    out = {}
    for n in names:
        s = space[n]
        if s.kind == "bool":
            out[f"{n}.p"] = float(s.default)
        elif s.kind == "choice":
            w = np.asarray(s.weights if s.weights is not None else [1.0] * len(s.choices), np.float64)
            for c, wc in zip(s.choices, w / w.max()):
                out[f"{n}={c}"] = float(wc)
        elif s.low is not None:
            out[f"{n}.lo"], out[f"{n}.hi"] = (min(max(_to_u(s, x), 0.0), 1.0) for x in (s.low, s.high))
    return out


def ranges_from(values: dict, gen, names) -> dict:
    """Trial parameters -> ``{param: {"range": ...} | {"choices": ...}}`` overrides, leaving out
    those that are the defaults (so the defaults' trial makes an empty profile)."""
    base = ranges_of(default_trial(gen, names), gen, names)
    out = {}
    for n, ov in ranges_of(values, gen, names).items():
        if ov != base.get(n):
            out[n] = ov
    return out


def ranges_of(values: dict, gen, names) -> dict:
    """Trial parameters -> overrides of every searched parameter."""
    space = gen.space
    out = {}
    for n in names:
        s = space[n]
        if s.kind == "bool":
            p = round(float(values[f"{n}.p"]), 4)
            out[n] = {"choices": {"true": p, "false": round(1.0 - p, 4)}}
        elif s.kind == "choice":
            w = {str(c): round(float(values[f"{n}={c}"]), 4) for c in s.choices}
            out[n] = {"choices": w if sum(w.values()) > 0 else {k: 1.0 for k in w}}
        elif f"{n}.lo" in values:
            a, b = sorted((_from_u(s, values[f"{n}.lo"]), _from_u(s, values[f"{n}.hi"])))
            out[n] = {"range": [a, b]}
    return out


def suggest(trial, gen, names) -> dict:
    """Ask ``trial`` for every searched value; return the overrides they make."""
    space = gen.space
    vals = {}
    for n in names:
        s = space[n]
        if s.kind == "bool":
            vals[f"{n}.p"] = trial.suggest_float(f"{n}.p", 0.0, 1.0)
        elif s.kind == "choice":
            for c in s.choices:
                vals[f"{n}={c}"] = trial.suggest_float(f"{n}={c}", 0.0, 1.0)
        elif s.low is not None:
            for k in ("lo", "hi"):
                vals[f"{n}.{k}"] = trial.suggest_float(f"{n}.{k}", 0.0, 1.0)
    return ranges_from(vals, gen, names)


def work_dir(out) -> Path:
    """Where a tune run keeps its study, report and sheets: ``PROFILE.tune/`` beside the profile."""
    out = Path(out)
    return out.with_name(out.stem + ".tune")


#: ``--objective`` values: the texture discriminator, or train-on-synthetic-test-on-real (:mod:`.tstr`)
OBJECTIVES = ("tstr", "auc")
#: ``--size`` by objective: the texture metrics are cheap at 64 px; the TSTR probe sees what the
#: classifier sees (semgen train's and semgen pretrain's default size)
DEFAULT_SIZE = {"auc": 64, "tstr": 128}


def make_objective(kind: str, ref: Reference, gens: dict, *, size: int, seed: int, features: str = "imagenet",
                   features_arch: str | None = None):
    """The objective object of ``--objective kind``: :class:`~.objective.TextureAUC` or :class:`~.tstr.TSTR`.

    ``gens`` are the tuned classes; TSTR's probe also takes every other reference class that has a
    generator and at least 2 images (at its default ranges).
    """
    if kind == "auc":
        return TextureAUC(ref, gens, size=size, seed=seed)
    if kind != "tstr":
        raise SemgenError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {kind!r}")
    from .tstr import TSTR, Embedder

    probe = {lb: create_generator(lb) for lb in generated_labels(ref)}
    probe.update(gens)
    return TSTR(ref, probe, Embedder(features, features_arch, size=size), size=size, seed=seed)


def generated_labels(ref: Reference) -> list[str]:
    """Reference classes that have a generator of their own name and at least 2 images."""
    out = []
    for n in list_generators():
        g = create_generator(n)
        if g.name == g.label and len(ref.paths.get(g.label, [])) >= 2:
            out.append(g.label)
    return out


def tune(reference, out, *, classes=None, trials: int = 30, minutes: float | None = None, n_images: int = 30,
         size: int | None = None, seed: int = 0, objective: str = "tstr", features: str = "imagenet",
         features_arch: str | None = None, select_n: int | None = None, sheets: bool = True, log=sys.stderr,
         progress: bool = True) -> dict:
    """Tune per-class ranges against a real reference; write the profile, a report and sheets.

    Parameters
    ----------
    reference : path
        Dataset dir or ImageFolder of real images (a training pool; never a test set).
    out : path
        Profile YAML to write. Its study (``optuna.db``), ``report.json``/``report.md`` and
        sheets go to ``work_dir(out)``; a run with the same arguments resumes the study.
    classes : list of str, optional
        Classes to tune (default: every class with a generator and >= 2 reference images).
    trials : int
        Trials per class in all (completed trials of a resumed study count).
    minutes : float, optional
        Wall-clock budget of the search (trials are run round-robin over the classes, and none
        starts after it); the final before/after evaluation and sheets come on top.
    n_images, size, seed
        Generated images per trial, their side (reference images are resized to it; default
        :data:`DEFAULT_SIZE` of the objective), master seed.
    objective : {"tstr", "auc"}
        What a trial minimises: ``1 -`` the macro-F1 of a probe trained on generated images and
        tested on the reference (:class:`~.tstr.TSTR`; the default: it agreed with pretraining
        where the texture objective did not, docs/tune.md), or the texture discriminator's AUC
        (:class:`~.objective.TextureAUC`).
    features, features_arch
        TSTR only: the frozen backbone (a ``semgen train --init`` value) and its architecture.
    select_n : int, optional
        Generated images per class of the selection set and of the check set (default
        :data:`SELECT_FACTOR` x ``n_images``).
    log, progress : file, bool
        Where a progress line per trial goes, and whether it is written.

    Returns
    -------
    dict: the report (also written as ``report.json``).
    """
    import optuna

    if objective not in OBJECTIVES:
        raise SemgenError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    size = DEFAULT_SIZE[objective] if size is None else int(size)
    select_n = SELECT_FACTOR * int(n_images) if select_n is None else int(select_n)
    if trials < 1 or n_images < 2 or size < 32 or select_n < 2:
        raise SemgenError("--trials must be >= 1, --n and --select-n >= 2 and --size >= 32")
    check_start = n_images + select_n
    if minutes is not None and minutes <= 0:
        raise SemgenError("--minutes must be positive")
    wd = work_dir(out)
    check_writable_dir(wd, "--out's work dir")  # a one-line error now, not a traceback from sqlite or mkdir
    wd.mkdir(parents=True, exist_ok=True)
    labels = [create_generator(c).label for c in classes] if classes else None
    ref = Reference(reference, size, classes=labels if objective == "auc" else None)
    if labels is None:
        labels = generated_labels(ref)
    gens = {lb: create_generator(lb) for lb in labels}
    names = {lb: tuned_params(g) for lb, g in gens.items()}
    score = make_objective(objective, ref, gens, size=size, seed=seed, features=features, features_arch=features_arch)
    settings = {"reference_sha256": ref.sha256, "n_images": int(n_images), "size": int(size), "seed": int(seed),
                "objective": score.name, "versions": {lb: g.version for lb, g in gens.items()}, **score.settings()}
    storage = f"sqlite:///{(wd / 'optuna.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {}
    for lb, g in gens.items():
        st = optuna.create_study(study_name=lb, storage=storage, load_if_exists=True, direction="minimize",
                                 sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
        old = st.user_attrs.get("settings")
        if old is None:
            st.set_user_attr("settings", settings)
            st.set_user_attr("params", names[lb])
            st.enqueue_trial(default_trial(g, names[lb]))
        elif old != settings or st.user_attrs.get("params") != names[lb]:
            raise SemgenError(f"{wd} holds a study of {lb} made with other settings "
                              f"(reference, --n, --size, --seed, --objective, --features or generator version); "
                              f"use another --out")
        studies[lb] = st

    def done(st):
        return sum(t.state == optuna.trial.TrialState.COMPLETE for t in st.trials)

    t0 = time.monotonic()
    deadline = None if minutes is None else t0 + 60.0 * minutes
    while True:
        todo = [lb for lb in labels if done(studies[lb]) < trials]
        if not todo or (deadline is not None and time.monotonic() >= deadline):
            break
        for lb in todo:
            if deadline is not None and time.monotonic() >= deadline:
                break
            g = gens[lb]

            def obj(trial, g=g, lb=lb):
                rng_ = suggest(trial, g, names[lb])
                try:
                    return score(lb, rng_, n=n_images, start=0, stage="search")
                except SemgenError as e:  # e.g. no room for the defect with these ranges: worst
                    trial.set_user_attr("error", str(e))
                    return 1.0

            studies[lb].optimize(obj, n_trials=1)
            st = studies[lb]
            if progress:
                print(f"tune {lb}: trial {done(st)}/{trials}: {objective} {score.display(st.trials[-1].value):.3f} "
                      f"(best {score.display(st.best_value):.3f})", file=log, flush=True)

    profile = {"version": PROFILE_VERSION, "classes": {}, "reference": ref.describe(),
               "tune": dict(settings, trials={lb: done(studies[lb]) for lb in labels})}
    report = {"reference": {k: v for k, v in ref.describe().items() if k != "files"}, "settings": settings,
              "objective": {"name": score.name, "title": score.title}, "classes": {}}
    show = score.display
    for lb in labels:
        g, st = gens[lb], studies[lb]
        chosen, scores = choose(st, g, names[lb], lambda r, lb=lb, **kw: score(lb, r, **kw), n=select_n,
                                start=n_images)
        best = ranges_from(st.trials[chosen].params, g, names[lb]) if chosen is not None else {}
        profile["classes"][g.name] = best
        # before / after on the check set (after the selection set): seen by neither the search nor the choice
        before = score(lb, {}, n=select_n, start=check_start, stage="check")
        after = before if not best else score(lb, best, n=select_n, start=check_start, stage="check")
        report["classes"][lb] = {"trials": done(st), "best_trial": show(st.best_value), "before": show(before),
                                 "after": show(after), "n_reference": len(ref.paths[lb]),
                                 "chosen": "defaults" if chosen is None else f"trial {chosen}",
                                 "selection": {k: show(v) for k, v in scores.items()}, "moved": moved(g, best)}
    if objective == "tstr":  # every class's profile at once, as a pretraining stream would mix them
        tuned = {lb: profile["classes"][gens[lb].name] for lb in labels}
        gains = {lb: report["classes"][lb]["selection"]["defaults"] - min(report["classes"][lb]["selection"].values())
                 for lb in labels}
        # a class's ranges chosen with the others at their defaults can still hurt the others once
        # every class streams its own (session 27: the chosen via ranges took via from 0.53 to 0.29
        # on the probe's check, and the pretraining run agreed on dev_test), so they are kept only
        # if they raise the joint figure on the selection set
        tuned, steps = joint_selection(score, tuned, gains, n=select_n, start=n_images)
        report["joint_selection"] = steps
        for lb in labels:
            if not tuned.get(lb) and profile["classes"][gens[lb].name]:
                profile["classes"][gens[lb].name] = {}
                c = report["classes"][lb]
                c.update(chosen=c["chosen"] + ", dropped (no joint gain)", after=c["before"], moved=[])
        joint = {tag: score.evaluate(r, n=select_n, start=check_start)
                 for tag, r in (("before", {}), ("after", tuned))}
        report["joint"] = {tag: {"macro_f1": m["macro_f1"], "per_class": {c: v["f1"] for c, v in m["per_class"].items()}}
                           for tag, m in joint.items()}
    profile = validate_profile(profile, where="tune")
    dump_profile(profile, out)
    report["profile"] = str(out)
    report["select_n"] = select_n
    report["search_seconds"] = round(time.monotonic() - t0, 1)
    if sheets:
        report["sheets"] = _sheets(wd, profile, labels, reference, seed=seed, size=size)
    (wd / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (wd / "report.md").write_text(report_md(report))
    return report


def joint_selection(score, tuned: dict, gains: dict, *, n: int, start: int) -> tuple[dict, list]:
    """Greedy joint choice on the selection set: from the defaults, add each class's chosen ranges
    (largest selection gain first) and keep them only if the probe's macro-F1 with every class so
    far rises. Returns ``({label: ranges}, steps)``; a dropped class maps to ``{}``."""
    accepted: dict = {}
    base = score.evaluate({}, n=n, start=start, stage="select")["macro_f1"]
    steps = [{"class": None, "macro_f1": base, "kept": True}]
    for lb in sorted((lb for lb, r in tuned.items() if r), key=lambda lb: (-gains.get(lb, 0.0), lb)):
        trial = {**accepted, lb: tuned[lb]}
        v = score.evaluate(trial, n=n, start=start, stage="select")["macro_f1"]
        kept = v > base
        steps.append({"class": lb, "macro_f1": v, "kept": kept})
        if kept:
            accepted, base = trial, v
    return {lb: accepted.get(lb, {}) for lb in tuned}, steps


def choose(study, gen, names, score, *, n: int, start: int) -> tuple[int | None, dict]:
    """The trial whose ranges score lowest on the selection set (images ``start .. start + n - 1``,
    and the reference's ``select`` part), among the defaults and the :data:`CANDIDATES` best
    completed trials; ``None`` when the defaults win. ``score(ranges, n=, start=, stage=)`` is the
    class's objective. Returns the choice with ``{"defaults" | "trial K": value}``."""
    import optuna

    ok = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
          and "error" not in t.user_attrs]
    top = sorted(ok, key=lambda t: (t.value, t.number))[:CANDIDATES]
    scores = {"defaults": score({}, n=n, start=start, stage="select")}
    best, best_value = None, scores["defaults"]
    for t in top:
        rng_ = ranges_from(t.params, gen, names)
        if not rng_:  # the defaults' own trial (or one equal to them)
            continue
        v = scores[f"trial {t.number}"] = score(rng_, n=n, start=start, stage="select")
        if v < best_value:
            best, best_value = t.number, v
    return best, scores


def moved(gen, ranges: dict, top: int = 8) -> list[dict]:
    """The ``top`` parameters whose sampling moved most from the defaults (shift in units of its search box)."""
    space = gen.space
    rows = []
    for n, ov in ranges.items():
        s = space[n]
        if "range" in ov:
            d = [_to_u(s, s.low), _to_u(s, s.high)]
            t = [_to_u(s, v) for v in ov["range"]]
            shift = max(abs(d[0] - t[0]), abs(d[1] - t[1]))
            rows.append({"param": n, "default": s.describe_range(), "tuned": f"[{ov['range'][0]:.4g}, {ov['range'][1]:.4g}]",
                         "shift": round(shift, 3)})
        else:
            new = space.with_ranges({n: ov}, where="tune")[n]
            if s.kind == "bool":
                shift = abs(float(new.default) - float(s.default))
            else:
                w0 = np.asarray(s.weights or [1.0] * len(s.choices), float)
                w1 = np.asarray(new.weights, float)
                shift = 0.5 * float(np.abs(w0 / w0.sum() - w1 / w1.sum()).sum())  # total variation
            rows.append({"param": n, "default": s.describe_range(), "tuned": new.describe_range(),
                         "shift": round(shift, 3)})
    return sorted(rows, key=lambda r: -r["shift"])[:top]


def _sheets(wd: Path, profile: dict, labels, reference, *, seed: int, size: int, per_class: int = 8) -> dict:
    """Before/after contact sheets, generated beside the reference (the existing sheet code)."""
    import shutil

    from ..generators.procedural.sheet import contact_sheet

    out = {}
    for tag, prof in (("before", None), ("after", profile)):
        d = wd / "sheets" / tag
        if d.exists():
            shutil.rmtree(d)
        for lb in labels:
            generate(lb, per_class, d, seed=seed + 1, size=max(size, 64), profile=prof, progress=False)
        png = wd / f"sheet_{tag}.png"
        contact_sheet(d, png, beside=reference, per_class=per_class, classes=labels, cell=64, seed=seed)
        out[tag] = str(png)
    return out


def report_md(report: dict) -> str:
    """The report as Markdown."""
    s, ob = report["settings"], report["objective"]
    tstr = ob["name"] != "discriminator_auc"
    lines = ["# semgen tune report", "",
             f"Reference: `{report['reference']['path']}` ({report['reference']['n_images']} images, "
             f"sha256 {report['reference']['sha256'][:16]}...). Objective: {ob['title']}. "
             f"{s['n_images']} generated images per trial and class at {s['size']} px"
             + (f"; features: {s['features']['init']} {s['features'].get('arch', '')}" if tstr else "") + ".",
             f"Search time: {report['search_seconds']} s. Chosen: the best value on a selection set of "
             f"{report['select_n']} fresh images per class among the defaults and the {CANDIDATES} best trials"
             + (" (TSTR: tested on the half of the reference the search did not use)" if tstr else "")
             + f". Before/after: a check set of {report['select_n']} more images per class, seen by neither the search nor "
             f"the choice" + (" (TSTR: tested on the whole reference)" if tstr else "") + ".", "",
             "| class | trials | reference images | chosen | before (defaults) | after (profile) "
             "| best trial (its own images) |",
             "|---|---|---|---|---|---|---|"]
    for lb, r in report["classes"].items():
        lines.append(f"| {lb} | {r['trials']} | {r['n_reference']} | {r['chosen']} "
                     f"| {r['before']:.3f} | {r['after']:.3f} | {r['best_trial']:.3f} |")
    if report.get("joint_selection"):
        lines += ["", "## Joint selection (selection set, every class kept so far at once)", "",
                  "| class added | macro-F1 | kept |", "|---|---|---|"]
        lines += [f"| {st['class'] or '(defaults)'} | {st['macro_f1']:.3f} | {'yes' if st['kept'] else 'no'} |"
                  for st in report["joint_selection"]]
    if report.get("joint"):
        j = report["joint"]
        lines += ["", "## Every class's profile at once (check set, the whole reference)", "",
                  "| | macro-F1 | " + " | ".join(j["before"]["per_class"]) + " |",
                  "|---|---|" + "---|" * len(j["before"]["per_class"])]
        for tag in ("before", "after"):
            lines.append(f"| {tag} | {j[tag]['macro_f1']:.3f} | "
                         + " | ".join(f"{v:.2f}" for v in j[tag]["per_class"].values()) + " |")
    for lb, r in report["classes"].items():
        lines += ["", f"## {lb}: parameters that moved most", "", "| param | default | tuned | shift |", "|---|---|---|---|"]
        lines += [f"| {m['param']} | {m['default']} | {m['tuned']} | {m['shift']} |" for m in r["moved"]]
    if report.get("sheets"):
        lines += ["", f"Sheets (generated left, reference right): `{report['sheets']['before']}` (defaults), "
                      f"`{report['sheets']['after']}` (profile)."]
    return "\n".join(lines) + "\n"
