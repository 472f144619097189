"""Checkpoints: the config.json + model.safetensors layout, and run dirs of the earlier layout
(``best.pt`` / ``last.pt``, ``torch.save`` dicts) still read by every command."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from classifier_synth import SYNTH_CLASSES, make_dataset
from semgen.classifier import evaluate_run, load_run, train_classifier
from semgen.classifier.checkpoint import read_checkpoint, resolve_checkpoint, safetensors_meta
from semgen.classifier.distill import DistillConfig
from semgen.classifier.export import export_run
from semgen.classifier.init import resolve_init
from semgen.classifier.predict import predict_files
from semgen.errors import SemgenError

FAST = dict(arch="mobilenetv3_small_050", size=32, batch_size=32, num_threads=1, progress=False)


def _v1(model, *, classes, epoch, config) -> bytes:
    """A checkpoint exactly as semgen wrote it before the safetensors layout (format 1)."""
    ckpt = {"format": "semgen-classifier", "format_version": 1, "semgen_version": "0.1.0", "arch": model.arch,
            "classes": list(classes), "size": 32, "epoch": int(epoch), "metrics": {"val_acc": 0.5},
            "config": config, "state_dict": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    make_dataset(root / "train", n_per_class=12, seed=0)
    make_dataset(root / "test", n_per_class=6, seed=1)
    train_classifier(root / "train", root / "new", epochs=2, lr=5e-3, min_epoch_images=96, seed=0, **FAST)
    # the same run in the earlier layout: best.pt / last.pt beside the run's config.json and calibration
    old = root / "old"
    old.mkdir()
    cfg = json.loads((root / "new" / "config.json").read_text())
    old_cfg = {k: v for k, v in cfg.items() if k not in ("format", "format_version", "input")}
    (old / "config.json").write_text(json.dumps(old_cfg, indent=2) + "\n")
    shutil.copy(root / "new" / "calibration.json", old / "calibration.json")
    best, _ = load_run(root / "new")
    last, _ = load_run(root / "new", which="last")
    (old / "best.pt").write_bytes(_v1(best, classes=SYNTH_CLASSES, epoch=1, config=cfg["request"]))
    (old / "last.pt").write_bytes(_v1(last, classes=SYNTH_CLASSES, epoch=2, config=cfg["request"]))
    return root


def test_the_new_layout_is_config_json_plus_safetensors(runs):
    run = runs / "new"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["format"] == "semgen-classifier" and cfg["format_version"] == 2
    assert (cfg["arch"], cfg["classes"], cfg["size"]) == (FAST["arch"], list(SYNTH_CLASSES), 32)
    meta = safetensors_meta(run / "model.safetensors")
    assert meta["classes"] == list(SYNTH_CLASSES) and meta["arch"] == FAST["arch"] and meta["epoch"] >= 1
    # a plain state dict a timm / HF user loads without semgen
    model, _ = load_run(run)
    state = load_file(str(run / "model.safetensors"))
    assert set(state) == set(model.state_dict()) and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert json.loads((run / "last" / "config.json").read_text())["classes"] == list(SYNTH_CLASSES)
    assert not list(run.rglob("*.pt"))


def test_old_layout_run_dir_is_read_by_every_command(runs, tmp_path):
    old, new = runs / "old", runs / "new"
    assert resolve_checkpoint(old).name == "best.pt" and resolve_checkpoint(old, "last").name == "last.pt"
    for which in (None, "last"):
        a, ma = load_run(old, which=which)
        b, mb = load_run(new, which=which)
        assert ma["classes"] == mb["classes"] and ma["run_dir"] == str(old)
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # evaluate: the same figures as the same weights in the new layout
    m_old = evaluate_run(old, runs / "test", n_boot=20)
    m_new = evaluate_run(new, runs / "test", n_boot=20, write=False)
    assert m_old["y_pred"] == m_new["y_pred"] and m_old["checkpoint"].endswith("best.pt")
    assert (old / "metrics.json").exists() and m_old["temperature"] == m_new["temperature"]
    # predict
    files = sorted(str(p) for p in (runs / "test" / "images").rglob("*.png"))
    assert [r["label"] for r in predict_files(old, files)] == [r["label"] for r in predict_files(new, files)]
    # export
    res = export_run(old, runs / "train", data=runs / "test", latency_runs=3, calib_max=20, auto_fix=False)
    assert (old / "model.onnx").exists() and (old / "model_int8.h").exists() and res["n_eval"] == 18
    # --init PATH (the head comes along: the same classes) and --teacher
    spec = resolve_init(old)
    assert spec["kind"] == "checkpoint" and spec["key"].endswith("best.pt")
    s = train_classifier(runs / "train", tmp_path / "ft", init=old, epochs=1, min_epoch_images=32,
                         distill=DistillConfig([old]), **{k: v for k, v in FAST.items() if k != "arch"})
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert s["epochs_run"] == 1 and cfg["init"]["same_classes"] and cfg["init"]["checkpoint"].endswith("best.pt")
    assert cfg["request"]["distill"]["teachers"][0]["path"].endswith("best.pt")


def test_old_run_dir_trained_anew_loses_its_stale_files(runs, tmp_path):
    shutil.copytree(runs / "old", tmp_path / "r")
    train_classifier(runs / "train", tmp_path / "r", epochs=1, min_epoch_images=32, overwrite=True, **FAST)
    assert not list((tmp_path / "r").glob("*.pt")) and resolve_checkpoint(tmp_path / "r").name == "model.safetensors"


def test_a_pickled_object_is_refused_and_nothing_runs(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pickle ran",))

    buf = io.BytesIO()
    torch.save({"format": "semgen-classifier", "state_dict": Boom()}, buf)
    (tmp_path / "best.pt").write_bytes(buf.getvalue())
    with pytest.raises(SemgenError, match="not a readable checkpoint") as e:
        read_checkpoint(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(SemgenError, match="not a readable safetensors file"):
        read_checkpoint(tmp_path / "x")
