"""The views added to ``particle``, ``cmp`` and ``clean`` to cover what real images show (issue 12
item 3): large 3-D particles with relief shading and a cast shadow, CMP gouges / micro-scratch
arcs / pits on polished fields, and clean images without defect-like marks. Tiny images, offline."""

from __future__ import annotations

import numpy as np
import pytest

from semgen.generators.procedural.classes.cmp import VARIANTS
from semgen.generators.procedural.classes.particle import BIG, big_particle_relief
from semgen.generators.procedural.generation import generate_one
from semgen.generators.procedural.layouts.edits import components
from semgen.generators.procedural.layouts.relief import cast_shadow
from semgen.generators.procedural.registry import create_generator
from semgen.generators.procedural.scene import PARTICLE
from semgen.seeding import rng_for
from test_classes_procedural import _scene as _scene_and_built

NEW_CMP = VARIANTS[4:]


def _scene(cls, seed, size, overrides):
    """The generator's scene and the nominal scene of the same layout draws (no defect)."""
    p, scene, built, rng = _scene_and_built(cls, seed, size, overrides)
    return p, scene, built.scene(rng)


def _boxes(mask):
    out = []
    for k in [int(v) for v in np.unique(mask) if v]:
        ys, xs = np.nonzero(mask == k)
        out.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
    return out


CHOICES = [("particle", {"particle_shape": s}) for s in BIG] + [("cmp", {"cmp_variant": v}) for v in NEW_CMP] \
    + [("cmp", {"layout": "film"}), ("clean", {"layout": "film"})]


@pytest.mark.parametrize("cls,ov", CHOICES)
def test_new_choices_render_with_consistent_masks(cls, ov):
    gen = create_generator(cls)
    for seed in range(3):
        s = generate_one(gen, seed, 64, ov)
        assert s.image.shape == (64, 64) and s.image.dtype == np.uint8
        assert all(s.params[k] == v for k, v in ov.items())
        if not gen.masked(s.params):
            assert s.mask is None and s.bboxes == []
            continue
        assert s.mask is not None and s.mask.any(), (cls, ov, seed)
        assert s.bboxes == _boxes(s.mask)


@pytest.mark.parametrize("cls,ov", [("particle", {"particle_shape": "crumb"}), ("cmp", {"cmp_variant": "gouge"}),
                                    ("cmp", {"cmp_variant": "microscratch"}), ("clean", {"layout": "film"})])
def test_same_seed_same_bytes(cls, ov):
    a, b, c = (generate_one(cls, seed, 64, ov) for seed in (5, 5, 6))
    assert a.image.tobytes() == b.image.tobytes() and a.params == b.params
    assert (a.mask is None and b.mask is None) or a.mask.tobytes() == b.mask.tobytes()
    assert a.image.tobytes() != c.image.tobytes()


def test_big_particle_is_large_compact_and_shadowed():
    fracs = []
    for seed in range(6):
        p, scene, nominal = _scene("particle", seed, 96, {"particle_shape": BIG[seed % 2], "particle_count": 1,
                                                          "particle_halo": 0.0})
        m = scene.mask > 0
        # the mask is the footprint: particle material, raised above the surface it sits on
        assert (scene.material[m] == PARTICLE).all()
        assert (scene.height[m] > nominal.height[m]).mean() > 0.95
        assert components(m)[1] == 1
        fracs.append(np.sqrt(m.sum() / m.size))
        # the floor on the far side from the detector is darker than on the near side
        a = np.deg2rad(p["particle_light_deg"])
        ys, xs = np.nonzero(m)
        cx, cy = xs.mean(), ys.mean()
        yy, xx = np.mgrid[0:96, 0:96]
        along = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
        ring = ~m & (np.hypot(xx - cx, yy - cy) < 1.6 * np.sqrt(m.sum() / np.pi))
        extra = scene.se_offset - (nominal.se_offset if nominal.se_offset is not None else 0)
        far, near = extra[ring & (along < 0)], extra[ring & (along > 0)]
        if far.size and near.size:
            assert far.mean() < near.mean() - 0.01, seed
    # large: a median footprint of more than 10 % of the width (square root of the area fraction)
    assert np.median(fracs) > 0.1, fracs


def test_big_particle_relief_is_zero_off_the_footprint():
    for kind in BIG:
        cov, z = big_particle_relief(rng_for(3), (80, 80), 40.0, 40.0, 22.0, kind, 0.3)
        assert z.dtype == np.float32 and (z[cov == 0] == 0).all() and z.max() > 0.5


def test_cast_shadow_length_follows_height_and_elevation():
    h = np.zeros((20, 60), np.float32)
    h[:, 40:44] = 100.0  # a wall 100 nm tall
    for elev, pix in ((45.0, 10.0), (30.0, 5.0)):
        s = cast_shadow(h, pix, 0.0, elev, soft_px=0.01)  # detector towards +x
        length = int((s[10, :40] > 0.5).sum())
        expect = 100.0 / (pix * np.tan(np.deg2rad(elev)))
        assert abs(length - expect) <= 1.5, (elev, length, expect)
        assert not s[10, 44:].any()  # nothing on the detector side


@pytest.mark.parametrize("variant", NEW_CMP)
def test_cmp_marks_are_recessed(variant):
    for seed in range(3):
        p, scene, nominal = _scene("cmp", seed, 96, {"cmp_variant": variant, "layout": "film"})
        m = scene.mask > 0
        assert m.any()
        polished = nominal.height * np.float32(p["cmp_planarity"])  # the field before the mark
        assert (scene.height[m] < polished[m] - 0.1).mean() > 0.8, (variant, seed)


def test_microscratches_and_pits_are_one_instance_each():
    _, scene, _ = _scene("cmp", 1, 128, {"cmp_variant": "pits", "cmp_pits": 6, "layout": "film"})
    assert 1 <= scene.mask.max() <= 6
    _, scene, _ = _scene("cmp", 1, 128, {"cmp_variant": "microscratch", "cmp_arcs": 5, "layout": "film"})
    assert 1 <= scene.mask.max() <= 5


def test_clean_has_no_marker_and_no_void_but_can_be_asked_for_one():
    gen = create_generator("clean")
    assert gen.space["overlay_marker"].default == 0.0 and gen.space["bump_voids"].high == 0
    rng = rng_for(0)
    draws = [gen.sample_params(rng) for _ in range(400)]
    assert not any(d["overlay_marker"] for d in draws)
    assert all(d.get("bump_voids", 0) == 0 for d in draws)
    assert any(d["overlay_infobar"] for d in draws)  # the other overlays stay
    # the other classes keep theirs, and a user can still switch it on (--set)
    assert create_generator("particle").space["overlay_marker"].default > 0
    s = generate_one("clean", 3, 64, {"overlay_marker": True})
    assert s.params["overlay_marker"] is True
    assert gen.with_ranges({"bump_voids": {"range": [0, 2]}}).space["bump_voids"].high == 2


@pytest.mark.parametrize("cls,old", [("particle", "4"), ("cmp", "4"), ("clean", "5")])
def test_a_record_of_the_previous_version_does_not_remake(cls, old):
    from semgen.errors import SemgenError
    from semgen.generators.procedural.generation import remake

    gen = create_generator(cls)
    assert int(gen.version) > int(old)
    with pytest.raises(SemgenError, match=f"{cls}@{old}.*bytes would differ"):
        remake({"generator": {"name": cls, "version": old}, "seed": 7, "width": 32})
    now = remake({"generator": {"name": cls, "version": gen.version}, "seed": 7, "width": 32})
    assert now.image.tobytes() == generate_one(cls, 7, 32).image.tobytes()


def test_list_shows_the_class_overlay_probability():
    import io
    import json
    from types import SimpleNamespace

    from semgen.generators.procedural.commands import _write_list

    out = io.StringIO()
    _write_list(SimpleNamespace(cls="clean", sets=[], profile=None, json=True), out)
    rows = {r["name"]: r for r in json.loads(out.getvalue())[0]["class_params"]}
    assert rows["overlay_marker"]["range"] == "P(true)=0.00" and rows["bump_voids"]["range"].startswith("[0, 0]")
