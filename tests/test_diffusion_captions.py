"""Captions from records (no torch needed) and the text encoder, loaded offline."""

from __future__ import annotations

import numpy as np
import pytest

from semgen.errors import SemgenError
from semgen.generators.diffusion.captions import (
    REAL_STYLE, SIM_STYLE, build_caption, caption_parts, class_prompt, drop_caption, label_from_prompt,
)

PROC = {"file_name": "images/a.png", "label": "bridge", "source": "procedural",
        "meta": {"view": "top-down", "layout": "lines", "orientation": "vertical", "pitch_nm": 61.0},
        "params": {"dose": 40.0, "frames": 4, "detector_sigma": 0.01}}


def test_caption_of_a_procedural_record_follows_the_documented_order():
    assert build_caption(PROC) == ("simulated SEM image, top-down, vertical lines, pitch 64 nm, low noise, "
                                   "bridge defect")


def test_real_records_and_style_override():
    real = {"label": "via", "source": "real", "view": "cross-section"}
    assert build_caption(real) == "real SEM micrograph, cross-section, via defect"
    assert build_caption(PROC, style=REAL_STYLE).startswith("real SEM micrograph, top-down")


def test_missing_fields_are_left_out_and_aliases_resolve():
    assert build_caption({"label": "short", "source": "diffusion"}) == f"{SIM_STYLE}, bridge defect"
    assert build_caption({"label": "clean", "source": "procedural"}) == f"{SIM_STYLE}, clean pattern, no defect"


def test_noise_levels_and_orientation_angles():
    noisy = dict(PROC, params={"dose": 6.0, "frames": 1, "detector_sigma": 0.05})
    assert "high noise" in build_caption(noisy)
    mid = dict(PROC, params={"dose": 20.0, "frames": 2, "detector_sigma": 0.02})
    assert "medium noise" in build_caption(mid)
    assert "low noise" in build_caption(dict(PROC, params={"noise_sigma": 5}))  # grey levels
    angled = dict(PROC, meta={"layout": "lines", "orientation": 90})
    assert "vertical lines" in build_caption(angled)
    contacts = dict(PROC, meta={"layout": "contact_array"})
    assert "contact array" in build_caption(contacts)


def test_caption_dropout_keeps_the_class_and_sometimes_drops_all():
    parts = caption_parts(PROC)
    rng = np.random.default_rng(0)
    caps = [drop_caption(parts, rng, p_drop=0.2, p_field=0.5) for _ in range(400)]
    assert all(c == "" or c.endswith("bridge defect") for c in caps)
    n_empty = sum(c == "" for c in caps)
    assert 40 < n_empty < 130
    assert "bridge defect" in caps and build_caption(PROC) in caps  # both extremes occur
    rng2 = np.random.default_rng(0)
    assert caps == [drop_caption(parts, rng2, p_drop=0.2, p_field=0.5) for _ in range(400)]


def test_label_from_prompt():
    assert label_from_prompt("real SEM micrograph, top-down, vertical lines, bridge defect") == "bridge"
    assert label_from_prompt("some vias in a cross-section") == "via"
    assert label_from_prompt(class_prompt("ler")) == "ler"
    with pytest.raises(SemgenError, match="--class"):
        label_from_prompt("a pretty picture")
    with pytest.raises(SemgenError, match="several"):
        label_from_prompt("bridge defect next to a particle defect")


def test_text_encoder_loads_offline_and_caches(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from semgen.generators.diffusion.text_encoder import EMBED_DIM, TextEncoder

    te = TextEncoder(max_length=16)
    emb, mask = te.encode(["bridge defect", "", "bridge defect"])
    assert emb.shape == (3, 16, EMBED_DIM) and mask.shape == (3, 16)
    assert len(te) == 2  # cached once per caption
    assert np.array_equal(emb[0].numpy(), emb[2].numpy())
    assert mask[1].sum() == 2  # [CLS] [SEP] of the empty caption
    other, _ = te.encode(["clean pattern, no defect"])
    assert not np.allclose(other[0, 1].numpy(), emb[0, 1].numpy())


def test_text_encoder_bad_reference():
    from semgen.generators.diffusion.text_encoder import TextEncoder

    with pytest.raises(SemgenError, match="text encoder"):
        TextEncoder("no_such_text_encoder_pkg")
