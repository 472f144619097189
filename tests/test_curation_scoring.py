"""Sanity rules, the reference model and curation configs."""

import cv2
import numpy as np
import pytest
from curation_synth import lines

from semgen.curation.metrics import compute_metrics
from semgen.curation.scoring import ReferenceModel, band_reasons, generic_score, load_config, sanity_reasons
from semgen.errors import SemgenError


def m(img):
    return compute_metrics(img)


def test_sanity_rules():
    sharp = lines(128, noise=2)
    assert sanity_reasons(m(sharp)) == []
    blurred = np.clip(cv2.GaussianBlur(lines(128, noise=0).astype(np.float32), (0, 0), 3.5)
                      + np.random.default_rng(0).normal(0, 1, (128, 128)), 0, 255).astype(np.uint8)
    assert sanity_reasons(m(blurred)) == ["too_blurry"]  # a little noise does not pass for detail
    assert "too_blurry" not in sanity_reasons(m(lines(128, noise=28)))  # strong noise: not judged
    assert sanity_reasons(m(np.full((64, 64), 90, np.uint8))) == ["blank"]
    assert "too_dark" in sanity_reasons(m((lines(64) // 10).astype(np.uint8)))
    assert "too_bright" in sanity_reasons(m((255 - lines(64) // 10).astype(np.uint8)))
    sat = lines(64)
    sat[:, :40] = 255
    assert "saturated" in sanity_reasons(m(sat))
    assert "too_noisy" in sanity_reasons(m(np.random.default_rng(1).integers(60, 200, (64, 64)).astype(np.uint8)))
    assert sanity_reasons(m(np.full((64, 64), 90, np.uint8)), {"min_std": 0.0}) != ["blank"]


def test_reference_model_scores_and_reasons():
    ref = [{"label": "clean", "metrics": m(lines(64, ler_seed=k, noise_seed=k, noise=8))} for k in range(10)]
    model = ReferenceModel.fit(ref)
    assert set(model.stats) == {"*", "clean"}
    score, reasons, z = model.score("clean", m(lines(64, ler_seed=40, noise_seed=40, noise=8)))
    assert reasons == [] and score > 0.5
    score2, reasons2, z2 = model.score("clean", m(lines(64, period=25, ler_seed=41, noise=8)))
    assert "atypical_for_class:period_px" in reasons2 and score2 < score and z2["period_px"] > 6
    # a class the reference lacks falls back to the pooled band
    assert model.for_class("bridge")[0] == "*"
    with pytest.raises(SemgenError):
        ReferenceModel.fit([])
    assert 0 < generic_score(m(lines(64))) <= 1


def test_config(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"z_max": 3, "bands": {"*": {"mean": [100, null]}, "normal": {"std": [null, 5]}}}')
    cfg = load_config(p)
    assert cfg["z_max"] == 3 and set(cfg["bands"]) == {"*", "clean"}
    mm = m(lines(64))
    assert band_reasons("clean", mm, cfg["bands"]) == ["atypical_for_class:std"]
    assert band_reasons("bridge", {**mm, "mean": 50.0}, cfg["bands"]) == ["atypical_for_class:mean"]
    for text, msg in (('{"zmax": 3}', "unknown keys"), ('{"sanity": {"min_sharp": 1}}', "unknown sanity"),
                      ('{"bands": {"nope": {}}}', "unknown class"), ('{"bands": {"bridge": {"mean": 3}}}', r"\[lo, hi\]"),
                      ("{", "does not parse")):
        p.write_text(text)
        with pytest.raises(SemgenError, match=msg):
            load_config(p)
    with pytest.raises(SemgenError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
