"""Test-time augmentation: the views, the averaging, and evaluate / predict / ONNX with ``--tta``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from classifier_synth import make_dataset
from semgen.classifier import evaluate_run, train_classifier
from semgen.classifier.predict import Predictor
from semgen.classifier.tta import TTA_MODES, check_tta, tta_probs, tta_views
from semgen.errors import SemgenError
from semgen.imageio import encode_png

FAST = dict(arch="mobilenetv3_small_050", size=32, batch_size=32, num_threads=1, progress=False)


def _linear_probs(seed=0, size=8, k=3):
    """A fixed random softmax-linear "model" on the pixels: no symmetry of its own."""
    w = torch.from_numpy(np.random.default_rng(seed).normal(size=(size * size, k)).astype(np.float32))
    return lambda x: torch.softmax(x.reshape(len(x), -1).float() / 255 @ w, 1)


def test_views_are_the_eight_distinct_symmetries_of_the_square():
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 8, 8), dtype=np.uint8))
    views = tta_views(x, "d4")
    assert len(views) == 8 and [len(tta_views(x, m)) for m in ("none", "flips")] == [1, 4]
    flat = {tuple(v.flatten().tolist()) for v in views}
    assert len(flat) == 8  # an image with no symmetry has 8 different views
    for v in views:  # each a permutation of the pixels within each image, dtype and shape kept
        assert v.dtype == torch.uint8 and v.shape == x.shape and v.is_contiguous()
        assert torch.equal(v.reshape(2, -1).sort(1).values, x.reshape(2, -1).sort(1).values)
    # the set of views is closed: the views of any view are the same 8 images
    for g in views:
        assert {tuple(v.flatten().tolist()) for v in tta_views(g, "d4")} == flat


def test_d4_average_is_invariant_to_flips_and_turns_and_none_is_untouched():
    f = _linear_probs()
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (5, 8, 8), dtype=np.uint8))
    p = tta_probs(f, x, "d4")
    assert p.dtype == np.float32 and p.shape == (5, 3) and np.allclose(p.sum(1), 1, atol=1e-6)
    for g in tta_views(x, "d4"):  # a turned or mirrored image gets the same answer
        assert np.allclose(tta_probs(f, g, "d4"), p, atol=1e-6)
    assert not np.allclose(f(x.transpose(-2, -1)).numpy(), f(x).numpy(), atol=1e-3)  # the model alone is not
    # flips: invariant to its own group (h, v flips), not to a quarter turn
    q = tta_probs(f, x, "flips")
    assert np.allclose(tta_probs(f, x.flip(-1), "flips"), q, atol=1e-6)
    assert np.allclose(q, np.mean([f(v).numpy() for v in tta_views(x, "flips")], 0), atol=1e-6)
    # none: the model's own output, same bytes
    assert tta_probs(f, x, "none").tobytes() == f(x).numpy().tobytes()


def test_bad_modes_and_shapes_are_one_line_errors():
    assert check_tta(None) == "none" and check_tta("D4") == "d4" and set(TTA_MODES) == {"none", "flips", "d4"}
    with pytest.raises(SemgenError, match=r"^--tta must be one of none, flips, d4, got 'd8'$"):
        check_tta("d8")
    with pytest.raises(SemgenError, match="square images"):
        tta_views(torch.zeros(1, 4, 6, dtype=torch.uint8), "flips")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    make_dataset(root / "train", n_per_class=12, seed=0)
    make_dataset(root / "test", n_per_class=6, seed=1)
    train_classifier(root / "train", root / "run", epochs=2, lr=5e-3, seed=0, **FAST)
    return root


def test_evaluate_run_with_tta_records_it_and_matches_the_hand_average(run):
    base = evaluate_run(run / "run", run / "test", n_boot=0, write=False)
    m = evaluate_run(run / "run", run / "test", n_boot=0, write=False, tta="d4")
    assert base["tta"] == "none" and m["tta"] == "d4" and m["files"] == base["files"]
    # the same figure by hand: the Predictor's calibrated probabilities of each view, averaged
    pred = Predictor(run / "run", threads=1)
    from semgen.classifier.data import load_image_set

    s = load_image_set(run / "test", size=32, classes=pred.classes)
    by_hand = np.mean([pred.probs(v) for v in tta_views(s.images, "d4")], 0)
    assert m["y_pred"] == by_hand.argmax(1).tolist()
    assert m["confidence"] == pytest.approx(by_hand.max(1).tolist(), abs=1e-5)
    with pytest.raises(SemgenError, match="--tta must be one of"):
        evaluate_run(run / "run", run / "test", n_boot=0, write=False, tta="all")


def test_predict_with_tta_gives_a_mirror_image_the_same_answer(run, tmp_path):
    from semgen.classifier.commands import register

    img = next((run / "test" / "images").rglob("*.png"))
    from PIL import Image

    a = np.asarray(Image.open(img).convert("L"))
    (tmp_path / "m.png").write_bytes(encode_png(np.ascontiguousarray(a[:, ::-1].T)))
    p = argparse.ArgumentParser(prog="semgen")
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["predict", str(run / "run"), str(img), str(tmp_path / "m.png"), "--tta", "d4", "--json",
                         "--top", "4"])
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert args.func(args) == 0
    r = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert r[0]["label"] == r[1]["label"]
    assert dict(r[0]["top"]) == pytest.approx(dict(r[1]["top"]), abs=1e-5)
    with pytest.raises(SemgenError, match="--cascade and --tta"):
        Predictor(run / "run", cascade=True, tta="flips")
