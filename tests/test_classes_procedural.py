"""Every procedural class on every layout it supports, and the physical invariants that define
each class, checked on the generator's own scene (tiny images). The classes and their layouts
come from the registry, so a new class module is tested here without touching this file."""

from __future__ import annotations

import numpy as np
import pytest

from semgen.generators.procedural.generation import generate_one
from semgen.generators.procedural.layouts import edits, select, tilt
from semgen.generators.procedural.layouts.edits import components
from semgen.generators.procedural.registry import create_generator, generator_class, list_generators
from semgen.generators.procedural.scene import DIELECTRIC, METAL, SUBSTRATE, VOID, Scene
from semgen.seeding import rng_for
from semgen.taxonomy import CLASSES


def _layouts(name: str) -> tuple:
    return tuple(create_generator(name).space["layout"].choices)


CASES = [(g, layout) for g in list_generators() for layout in _layouts(g)]
#: layouts on which bridge and open draw on the coverage raster (every one but lines)
RASTER_CASES = [(g, layout) for g in ("bridge", "open") for layout in _layouts(g) if layout != "lines"]


def test_registry_covers_the_taxonomy():
    labels = {create_generator(g).label for g in list_generators()}
    assert labels == set(CLASSES)
    for label in CLASSES:  # each class has a default generator named after it
        assert generator_class(label).name == label
    for g in list_generators():
        gen = create_generator(g)
        assert isinstance(gen, select.LayoutGenerator), g  # one generator style
        assert set(gen.space["layout"].choices) <= set(select.ALL), g
        assert gen.space["layout"].default == gen.space["layout"].choices[0]


def _bbox_of(mask, k):
    ys, xs = np.nonzero(mask == k)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize("cls,layout", CASES)
def test_generates_on_every_layout(cls, layout):
    gen = create_generator(cls)
    for seed in (1, 2):
        s = generate_one(gen, seed, 64, {"layout": layout})
        assert s.image.shape == (64, 64) and s.image.dtype == np.uint8
        assert s.params["layout"] == layout and "overlay_jpeg" in s.params and "dose" in s.params
        assert s.meta["layout"] and s.meta["view"] and s.meta["pixel_nm"] > 0  # (tilted: its base layout)
        if not gen.masked(s.params):
            assert s.mask is None and s.bboxes == []
            continue
        assert s.mask is not None and s.mask.dtype == np.uint16 and s.mask.any(), (cls, layout, seed)
        ids = [int(k) for k in np.unique(s.mask) if k]
        assert len(s.bboxes) == len(ids)
        for k, bb in zip(ids, s.bboxes):
            assert bb == _bbox_of(s.mask, k)
            assert 0 <= bb[0] < bb[2] <= 64 and 0 <= bb[1] < bb[3] <= 64
        again = generate_one(gen, seed, 64, {"layout": layout})
        assert again.image.tobytes() == s.image.tobytes() and again.mask.tobytes() == s.mask.tobytes()
        assert again.params == s.params and again.meta == s.meta


@pytest.mark.parametrize("cls,layout", RASTER_CASES)
def test_bridge_and_open_classes_on_raster_layouts(cls, layout):
    for seed in (0, 1):
        s = generate_one(cls, seed, 64, {"layout": layout})
        assert s.mask is not None and s.mask.any() and len(s.bboxes) == 1
        assert s.meta["defect"] == cls and s.params["layout"] == layout
        again = generate_one(cls, seed, 64, {"layout": layout})
        assert again.image.tobytes() == s.image.tobytes()


def test_a_layout_without_a_site_is_built_again_then_refused(monkeypatch):
    """``NoSite`` from a class's defect: the layout is built again from the same stream, at most
    ``attempts`` times, then a one-line SemgenError."""
    from semgen.errors import SemgenError

    gen = create_generator("bridge")
    calls = []
    real = type(gen).defect

    def flaky(self, built, p, rng, size):
        calls.append(rng.bit_generator.state["state"]["state"])
        if len(calls) < 3:
            raise edits.NoSite("no pair")
        return real(self, built, p, rng, size)

    monkeypatch.setattr(type(gen), "defect", flaky)
    s = generate_one(gen, 5, 64, {"layout": "pads"})
    assert len(calls) == 3 and len(set(calls)) == 3 and s.mask is not None  # each try further along
    calls.clear()

    def never(self, built, p, rng, size):
        calls.append(1)
        raise edits.NoSite("no pair")

    monkeypatch.setattr(type(gen), "defect", never)
    with pytest.raises(SemgenError, match="could not place a bridge on layout 'pads'"):
        generate_one(gen, 5, 64, {"layout": "pads"})
    assert len(calls) == gen.attempts


def test_a_new_class_module_is_registered_listed_and_labelled(monkeypatch):
    """What adding a module to ``classes/`` does: the registry, ``--list`` and the pretraining
    targets pick the class up (registered here on a copy of the registry)."""
    from semgen.generators.procedural import registry
    from semgen.generators.procedural.params import ParamSpace, ParamSpec
    from semgen.pretrain.labels import TargetSpace

    list_generators()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register
    class Stain(select.LayoutGenerator):
        name = "other_stain"
        label = "other"
        params = ParamSpace(select.all_params({"film": 1.0}, [
            ParamSpec("other_stain_kind", "choice", "ring", choices=("ring", "blot"), doc="stain shape")]))

        def defect(self, built, p, rng, size):
            scene = built.scene(rng)
            scene.mask[size // 3:size // 2, size // 3:size // 2] = 1
            return scene

    assert "other_stain" in list_generators() and generator_class("other").name == "other"
    s = generate_one("other_stain", 0, 32)
    assert s.mask is not None and s.meta["layout"] == "film" and "pixel_nm" in s.meta
    ts = TargetSpace.build(["other_stain"])
    assert ts.fine_names == ["other/film/ring", "other/film/blot"]


def test_bridge_class_joins_features_in_its_own_scene():
    for layout in ("pads", "logic", "contacts"):
        for seed in range(2):
            gen = create_generator("bridge")
            rng = rng_for(seed)
            p = gen.sample_params(rng, {"layout": layout})
            state = rng.bit_generator.state
            scene = gen.build(p, rng, 96)
            rng2 = rng_for(0)
            rng2.bit_generator.state = state
            nominal = select.build(layout, p, rng2, 96).scene(rng2)

            def feature(sc):
                if layout == "contacts" and p["hole_polarity"] == "holes":
                    return sc.material == SUBSTRATE
                return sc.height >= 0.5 * sc.height.max()

            m = scene.mask > 0
            lab, _ = components(feature(scene))
            lab0, _ = components(feature(nominal))
            # before: the mask touches two separate features; after: one component joins them
            assert len(set(np.unique(lab0[m & feature(nominal)])) - {0}) >= 2
            assert len(set(np.unique(lab[m & feature(scene)])) - {0}) == 1


def test_other_plain_and_variants():
    seen = set()
    for v in ("collapse", "wiggle", "scumming", "incomplete_etch", "multiple"):
        s = generate_one("other", 3, 64, {"layout": "lines", "other_variant": v})
        seen.add(s.meta["variant"])
        assert s.mask is not None and "other_plain" not in s.params  # plain only on rare layouts
    assert len(seen) >= 4
    for layout in ("tilted", "logic"):
        s = generate_one("other", 3, 64, {"layout": layout, "other_plain": True})
        assert s.meta["variant"] == "plain" and s.mask is None
    # clean never shows the layouts that other's defect-free pictures use
    clean_layouts = set(create_generator("clean").space["layout"].choices)
    assert not clean_layouts & {"tilted", "logic"}


def _scene(cls, seed, size, overrides):
    """The generator's own scene plus the nominal (defect-free) scene of the same layout draws."""
    gen = create_generator(cls)
    rng = rng_for(seed)
    p = gen.sample_params(rng, overrides)
    state = rng.bit_generator.state
    scene = gen.build(p, rng, size)
    rng2 = rng_for(0)
    rng2.bit_generator.state = state
    built = select.build(p["layout"], p, rng2, size)
    return p, scene, built, rng2


def test_missing_via_has_no_hole_where_the_array_expects_one():
    for seed in range(4):
        p, scene, built, rng = _scene("via", seed, 96, {"layout": "contacts", "via_defect_top": "missing",
                                                       "hole_polarity": "holes", "via_count": 1})
        (x, y), = scene.meta["expected_holes"]
        assert scene.material[int(y), int(x)] == DIELECTRIC  # film, no hole
        assert scene.mask[int(y), int(x)] > 0
        nominal = built.scene(rng)
        assert nominal.material[int(y), int(x)] == SUBSTRATE  # the nominal array has a hole there
        # other holes are still open
        assert (scene.material == SUBSTRATE).sum() < (nominal.material == SUBSTRATE).sum()


def test_merged_vias_join_two_holes():
    for seed in range(4):
        p, scene, built, rng = _scene("via", seed, 96, {"layout": "contacts", "via_defect_top": "merged",
                                                       "hole_polarity": "holes", "via_count": 1})
        nominal = built.scene(rng)
        lab, _ = components(scene.material == SUBSTRATE)
        lab0, _ = components(nominal.material == SUBSTRATE)
        # inside the defect, one hole component covers what were two separate holes
        inside = scene.mask > 0
        merged_ids = set(np.unique(lab[inside])) - {0}
        nominal_ids = set(np.unique(lab0[inside])) - {0}
        assert len(nominal_ids) >= 2
        assert any(len(set(np.unique(lab0[(lab == m) & inside])) - {0}) >= 2 for m in merged_ids)


@pytest.mark.parametrize("kind,sign", [("oversized", 1), ("undersized", -1)])
def test_resized_via_changes_hole_area(kind, sign):
    p, scene, built, rng = _scene("via", 5, 96, {"layout": "contacts", "via_defect_top": kind,
                                                 "hole_polarity": "holes", "via_count": 1})
    nominal = built.scene(rng)
    m = scene.mask > 0
    a1 = int((scene.material[m] == SUBSTRATE).sum())
    a0 = int((nominal.material[m] == SUBSTRATE).sum())
    assert sign * (a1 - a0) > 0


def test_via_void_lies_inside_the_fill():
    for seed in range(3):
        p, scene, built, rng = _scene("via", seed, 96, {"layout": "crosssection", "via_defect_xs": "void"})
        m = scene.mask > 0
        assert m.any() and (scene.material[m] == VOID).all()
        # the void is surrounded by fill: metal dominates its immediate neighbourhood outside the void
        nominal = built.scene(rng)
        assert (nominal.material[m] == METAL).mean() > 0.9


def test_misaligned_via_is_shifted():
    gen = create_generator("via")
    rng = rng_for(11)
    p = gen.sample_params(rng, {"layout": "crosssection", "via_defect_xs": "misaligned"})
    built = select.build("crosssection", p, rng, 96)
    from semgen.generators.procedural.classes.via import _xsection

    scene = _xsection(built, p, rng)
    shifted = [built.geom.vias[i] for i in scene.meta["defect_vias"]]
    assert shifted and all(abs(v["shift"]) >= 0.3 * v["wt"] for v in shifted)
    assert scene.mask.any()


def _skeleton_stats(mask):
    from skimage.morphology import skeletonize

    sk = skeletonize(mask)
    return int(sk.sum()), int(mask.sum())


@pytest.mark.parametrize("layout", ["film", "bump", "crosssection", "pads"])
def test_crack_is_thin_and_long(layout):
    for seed in range(3):
        _, scene, _, _ = _scene("crack", seed, 128, {"layout": layout})
        length, area = _skeleton_stats(scene.mask > 0)
        assert length >= 12, (layout, seed, length)
        assert area / length < 4.0, (layout, seed, area / length)  # mean opening < 4 px


def test_particle_is_compact():
    for shape in ("sphere", "irregular", "flake"):
        for seed in range(2):
            _, scene, _, _ = _scene("particle", seed, 128, {"particle_shape": shape, "particle_count": 1})
            m = scene.mask > 0
            from skimage.morphology import convex_hull_image

            solidity = m.sum() / convex_hull_image(m).sum()
            assert solidity > 0.7, (shape, seed, solidity)
            assert components(m)[1] == 1


def test_scratch_is_long_and_narrow():
    for seed in range(3):
        _, scene, _, _ = _scene("scratch", seed, 128, {"scratch_count": 1, "layout": "film"})
        length, area = _skeleton_stats(scene.mask > 0)
        assert length > 40 and area / length < 8


def test_dishing_lowers_the_features():
    p, scene, built, rng = _scene("cmp", 2, 96, {"layout": "pads", "cmp_variant": "dishing"})
    nominal = built.scene(rng)
    m = scene.mask > 0
    assert m.any() and (scene.height[m] < nominal.height[m] - 1.0).mean() > 0.9


def test_collapse_changes_the_pattern_only_in_its_mask():
    for seed in range(3):
        p, scene, built, rng = _scene("other", seed, 96, {"layout": "lines", "other_variant": "collapse"})
        nominal = built.scene(rng)
        changed = scene.material != nominal.material
        assert changed.any()
        assert (changed & (scene.mask > 0)).sum() >= 0.9 * changed.sum()


def test_overlays_do_not_touch_the_mask_and_are_recorded():
    off = {"overlay_infobar": False, "overlay_marker": False, "overlay_jpeg": False, "overlay_scalebar": False}
    on = {"overlay_infobar": True, "overlay_marker": True, "overlay_jpeg": True, "overlay_scalebar": False}
    a = generate_one("particle", 7, 96, off)
    b = generate_one("particle", 7, 96, on)
    assert b.params["overlay_infobar"] is True and a.params["overlay_infobar"] is False
    assert np.array_equal(a.mask, b.mask) and a.bboxes == b.bboxes
    assert not np.array_equal(a.image, b.image)


def test_overlays_off_by_default():
    gen = create_generator("scratch")
    n = 200
    on = sum(bool(gen.sample_params(rng_for(i))["overlay_infobar"]) for i in range(n))
    assert 0 < on < 0.3 * n


def test_tilt_of_a_flat_scene_compresses_rows():
    h0, w = 200, 32
    yy = np.broadcast_to(np.arange(h0)[:, None], (h0, w))
    mat = (yy // 10 % 2).astype(np.uint8)
    src = Scene(np.zeros((h0, w), np.float32), mat, 5.0)
    out = tilt.tilt_scene(src, 100, 60.0)
    # at 60 degrees each screen row shows two source rows: stripes of 10 rows become 5
    col = out.material[:, 5].astype(int)
    runs = np.diff(np.nonzero(np.diff(col))[0])
    assert np.all(np.abs(runs - 5) <= 1)


def test_tilt_shows_front_walls_of_a_raised_bar():
    h0, w = 120, 16
    hgt = np.zeros((h0, w), np.float32)
    hgt[40:60] = 100.0
    src = Scene(hgt, (hgt > 0).astype(np.uint8), 5.0)
    out = tilt.tilt_scene(src, 80, 45.0)
    col = out.material[:, 3]
    # the bar (top + front wall) spans its 20 rows x cos + 100 nm / 5 nm x sin rows
    n_bar = int((col == 1).sum())
    assert abs(n_bar - (20 * np.cos(np.pi / 4) + 20 * np.sin(np.pi / 4))) <= 2


# -- bridges and opens on the coverage raster (layouts/edits.py, classes/bridge.py, open.py) -------

def _built(layout, seed, size=96, **ov):
    from semgen.generators.procedural.params import ParamSpace

    rng = rng_for(seed)
    p = ParamSpace(select.all_params({layout: 1.0}, [])).sample(rng, ov)
    return select.build(layout, p, rng, size), rng


@pytest.mark.parametrize("layout", ["contacts", "pads", "logic"])
def test_bridge_connects_two_features(layout):
    for seed in range(3):
        b, rng = _built(layout, seed)
        cov = b.geom.coverage()
        lab0, n0 = components(cov >= 0.5)
        new, region, (a, c) = edits.bridge_coverage(cov, rng, 2.5)
        lab1, n1 = components(new >= 0.5)
        assert a != c and region.any()
        ya, xa = np.argwhere(lab0 == a)[0]
        yc, xc = np.argwhere(lab0 == c)[0]
        assert lab0[ya, xa] != lab0[yc, xc] and lab1[ya, xa] == lab1[yc, xc]
        assert n1 <= n0 - 1


@pytest.mark.parametrize("layout,ov", [("logic", {}), ("pads", {"pad_style": "pads"})])
def test_open_disconnects_a_feature(layout, ov):
    for seed in range(3):
        b, rng = _built(layout, seed, **ov)
        cov = b.geom.coverage()
        lab0, n0 = components(cov >= 0.5)
        new, region, a = edits.open_coverage(cov, rng, 3.0)
        lab1, n1 = components(new >= 0.5)
        assert n1 > n0
        # the cut feature's pixels now fall into at least two components
        parts = set(np.unique(lab1[(lab0 == a) & (new >= 0.5)])) - {0}
        assert len(parts) >= 2
        assert region.sum() > 0 and (cov[region] >= 0.5).all()


def test_bridge_and_open_in_a_cross_section():
    from semgen.generators.procedural.classes.bridge import xs_bridge
    from semgen.generators.procedural.classes.open import xs_open

    done = 0
    for seed in range(6):
        b, rng = _built("crosssection", seed)
        sc = b.scene(rng)
        n0 = components(sc.material == METAL)[1]
        try:
            xs_open(sc, rng, 0.6)
        except ValueError:
            continue
        assert components(sc.material == METAL)[1] > n0 and sc.mask.any()
        if n0 < 2:  # one connected metal network: nothing to bridge
            continue
        b, rng = _built("crosssection", seed)
        sc = b.scene(rng)
        xs_bridge(sc, rng, 0.6)
        assert components(sc.material == METAL)[1] < n0 and sc.mask.any()
        done += 1
    assert done >= 3


@pytest.mark.parametrize("layout", _layouts("clean"))
def test_clean_on_every_layout(layout):
    s = generate_one("clean", 4, 64, {"layout": layout})
    assert s.mask is None and s.bboxes == [] and s.params["layout"] == layout
    assert s.image.std() > 2  # a pattern, not a flat field
