"""Ensembles: the folder, the averaged probabilities, and evaluate / predict / --teacher / refusals."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch

from classifier_synth import make_dataset
from semgen.classifier import evaluate_run, train_classifier
from semgen.classifier.data import load_image_set
from semgen.classifier.ensemble import ENSEMBLE_FILE, EnsembleClassifier, is_ensemble, load_ensemble, make_ensemble
from semgen.classifier.predict import Predictor
from semgen.classifier.tta import tta_views
from semgen.errors import SemgenError

FAST = dict(arch="mobilenetv3_small_050", size=32, batch_size=32, num_threads=1, progress=False)


def _cli(argv) -> str:
    from semgen.classifier.commands import register

    p = argparse.ArgumentParser(prog="semgen")
    register(p.add_subparsers(dest="command"))
    args = p.parse_args([str(a) for a in argv])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert args.func(args) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    make_dataset(root / "train", n_per_class=12, seed=0)
    make_dataset(root / "test", n_per_class=6, seed=1)
    for s in (0, 1):  # a validation split each: both runs get their own calibration temperature
        train_classifier(root / "train", root / f"r{s}", epochs=2, lr=5e-3, seed=s, **FAST)
    make_ensemble([root / "r0", root / "r1"], root / "ens")
    return root


def test_ensemble_folder_is_plain_data_naming_the_members(runs):
    doc = json.loads((runs / "ens" / ENSEMBLE_FILE).read_text())
    assert doc["format"] == "semgen-ensemble" and doc["size"] == 32 and len(doc["members"]) == 2
    assert sorted(p.name for p in (runs / "ens").iterdir()) == [ENSEMBLE_FILE]  # no weights copied
    for s, m in enumerate(doc["members"]):
        assert m["path"] == f"../r{s}" and m["checkpoint"] == "model.safetensors" and len(m["sha256"]) == 64
        cal = json.loads((runs / f"r{s}" / "calibration.json").read_text())
        assert m["temperature"] == cal["temperature"]
    assert is_ensemble(runs / "ens") and is_ensemble(runs / "ens" / ENSEMBLE_FILE) and not is_ensemble(runs / "r0")


def test_probabilities_are_the_mean_of_the_members_calibrated_ones(runs):
    s = load_image_set(runs / "test", size=32)
    members = [Predictor(runs / f"r{i}", threads=1) for i in (0, 1)]
    assert members[0].temperature != 1.0  # the temperatures take part, not only the softmax
    ens = Predictor(runs / "ens", threads=1)
    assert ens.temperature == 1.0 and ens.classes == members[0].classes
    by_hand = np.mean([m.probs(s.images) for m in members], 0)
    assert np.allclose(ens.probs(s.images), by_hand, atol=1e-5)
    # with TTA: the mean over members and views, in either order
    ens_d4 = Predictor(runs / "ens", threads=1, tta="d4").probs(s.images)
    by_hand = np.mean([m.probs(v) for m in members for v in tta_views(s.images, "d4")], 0)
    assert np.allclose(ens_d4, by_hand, atol=1e-5)
    # the module alone: softmax of its output is the mean of the softened members
    x = torch.rand(3, 1, 32, 32)
    a, b = torch.nn.Linear(32 * 32, 3), torch.nn.Linear(32 * 32, 3)
    fa, fb = torch.nn.Sequential(torch.nn.Flatten(), a), torch.nn.Sequential(torch.nn.Flatten(), b)
    fa.num_classes = 3
    e = EnsembleClassifier([fa, fb], [2.0, 0.5])
    want = (torch.softmax(fa(x) / 2.0, 1) + torch.softmax(fb(x) / 0.5, 1)) / 2
    assert torch.allclose(torch.softmax(e(x), 1), want, atol=1e-6) and e.num_classes == 3


def test_evaluate_and_predict_take_the_folder(runs):
    m = evaluate_run(runs / "ens", runs / "test", n_boot=0, write=True, tta="flips")
    assert m["checkpoint"].endswith(ENSEMBLE_FILE) and m["tta"] == "flips" and m["epoch"] is None
    assert (runs / "ens" / "metrics.json").is_file() and (runs / "ens" / "confusion.png").is_file()
    img = next((runs / "test" / "images").rglob("*.png"))
    out = _cli(["predict", runs / "ens", img, "--json"])
    r = json.loads(out)
    from semgen.classifier.data import decode_images

    pred = Predictor(runs / "ens", threads=1)
    p = pred.probs(torch.from_numpy(decode_images([str(img)], 32)[0]))[0]
    assert r["label"] == pred.classes[int(p.argmax())] and r["confidence"] == pytest.approx(float(p.max()), abs=1e-6)


def test_cli_writes_the_folder_and_refuses_to_overwrite(runs):
    out = _cli(["ensemble", runs / "r0", runs / "r1", "--out", runs / "ens2"])
    assert "2 runs, 3 classes, 32 px" in out
    with pytest.raises(SemgenError, match="exists; pass --overwrite"):
        _cli(["ensemble", runs / "r0", runs / "r1", "--out", runs / "ens2"])
    _cli(["ensemble", runs / "r1", runs / "r0", "--out", runs / "ens2", "--overwrite"])
    assert json.loads((runs / "ens2" / ENSEMBLE_FILE).read_text())["members"][0]["path"] == "../r1"


def test_bad_members_are_one_line_errors(runs, tmp_path):
    with pytest.raises(SemgenError, match="at least 2 runs"):
        make_ensemble([runs / "r0"], tmp_path / "e")
    with pytest.raises(SemgenError, match="is itself an ensemble"):
        make_ensemble([runs / "r0", runs / "ens"], tmp_path / "e")
    make_dataset(tmp_path / "two", n_per_class=6, seed=0, classes=("bridge", "open"))
    train_classifier(tmp_path / "two", tmp_path / "two_run", epochs=1, seed=0, val_fraction=0, **FAST)
    with pytest.raises(SemgenError, match="need the same classes"):
        make_ensemble([runs / "r0", tmp_path / "two_run"], tmp_path / "e")
    with pytest.raises(SemgenError, match="holds no checkpoint|does not exist"):
        make_ensemble([runs / "r0", tmp_path / "nothing"], tmp_path / "e")
    assert not (tmp_path / "e").exists()  # nothing written on a refusal


def test_a_changed_member_or_a_moved_tree(runs, tmp_path):
    tree = tmp_path / "tree"
    for d in ("r0", "r1", "ens"):
        shutil.copytree(runs / d, tree / d)
    moved = tmp_path / "moved"
    tree.rename(moved)  # the absolute paths are gone: the relative ones find the members
    model, meta = load_ensemble(moved / "ens")
    assert meta["members"] == [str(moved / "ens" / ".." / f"r{i}") for i in (0, 1)]
    (moved / "r1" / "model.safetensors").rename(moved / "r1.keep")
    with pytest.raises(SemgenError, match=r"member .*r1 is gone \(no model.safetensors\)"):
        load_ensemble(moved / "ens")
    (moved / "r1.keep").rename(moved / "r1" / "model.safetensors")
    shutil.copy(moved / "r1" / "model.safetensors", moved / "r0" / "model.safetensors")  # r0 "retrained"
    with pytest.raises(SemgenError, match=r"r0 changed since the ensemble was made"):
        load_ensemble(moved / "ens")
    (moved / "ens" / ENSEMBLE_FILE).write_text("{not json")
    with pytest.raises(SemgenError, match="not a readable ensemble file"):
        Predictor(moved / "ens")


def test_commands_that_need_one_network_refuse_it(runs):
    from semgen.classifier import export_run

    with pytest.raises(SemgenError, match="is an ensemble of runs .* pass one of its member runs"):
        train_classifier(runs / "train", runs / "bad", epochs=1, init=runs / "ens", **FAST)
    with pytest.raises(SemgenError, match="is an ensemble of runs"):
        export_run(runs / "ens", calib=runs / "train")
    assert not (runs / "bad").exists() and not (runs / "ens" / "model.onnx").exists()


def test_an_ensemble_teaches(runs):
    from semgen.classifier.distill import DistillConfig

    cfg = DistillConfig([runs / "ens"], temperature=2.0, weight=0.9)
    train_classifier(runs / "train", runs / "student", epochs=1, seed=0, distill=cfg, **FAST)
    conf = json.loads((runs / "student" / "config.json").read_text())
    (t,) = conf["request"]["distill"]["teachers"]
    assert t["path"].endswith(ENSEMBLE_FILE)
    from semgen.imageio import sha256_file

    assert t["sha256"] == sha256_file(runs / "ens" / ENSEMBLE_FILE)
