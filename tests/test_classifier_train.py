"""Classifier training, evaluation and prediction on tiny synthetic textures (fast, offline)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from classifier_synth import SYNTH_CLASSES, make_dataset, texture
from semgen.classifier import evaluate_run, load_run, train_classifier
from semgen.classifier.data import SkippedImageWarning, load_image_set, sampling_weights
from semgen.classifier.evaluate import evaluate_probs
from semgen.classifier.metrics import bootstrap_ci, confusion_matrix
from semgen.errors import SemgenError
from semgen.imageio import encode_png

ARCH = "mobilenetv3_small_050"
FAST = dict(arch=ARCH, size=32, batch_size=32, num_threads=1, progress=False)


def run_cli(argv) -> int:
    """The classifier's sub-commands through argparse, as ``semgen`` wires them."""
    from semgen.classifier import commands

    p = argparse.ArgumentParser(prog="semgen")
    commands.register(p.add_subparsers(dest="command"))
    args = p.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    make_dataset(root / "train", n_per_class=24, seed=0)
    make_dataset(root / "test", n_per_class=16, seed=1)
    return root


@pytest.fixture(scope="module")
def trained(synth):
    s = train_classifier(synth / "train", synth / "run", epochs=6, lr=5e-3, min_epoch_images=384, seed=0, **FAST)
    return synth / "run", s


def test_training_learns_held_out_textures(trained, synth):
    run, s = trained
    for name in ("model.safetensors", "config.json", "last/model.safetensors", "last/config.json",
                 "train_log.jsonl", "summary.json"):
        assert (run / name).exists(), name
    assert not list(run.glob("*.pt"))
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, s["epochs_run"] + 1))
    assert s["classes"] == list(SYNTH_CLASSES) and s["n_val"] > 0 and s["images_per_s"] > 0
    m = evaluate_run(run, synth / "test", n_boot=200, write=False)
    assert m["n"] == 48
    assert m["accuracy"] > 0.7, m["confusion"]  # chance is 1/3
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["split"]["kind"] == "stratified" and len(cfg["split"]["val_files"]) == s["n_val"]


def test_finished_run_is_not_redone_and_other_settings_refused(trained, synth):
    run, s = trained
    again = train_classifier(synth / "train", run, epochs=6, lr=5e-3, min_epoch_images=384, seed=0, **FAST)
    assert again == json.loads((run / "summary.json").read_text())
    with pytest.raises(SemgenError, match="other settings"):
        train_classifier(synth / "train", run, epochs=7, lr=5e-3, min_epoch_images=384, seed=0, **FAST)


def test_same_seed_same_weights(synth, tmp_path):
    kw = dict(epochs=1, min_epoch_images=64, seed=3, **FAST)
    train_classifier(synth / "train", tmp_path / "a", **kw)
    train_classifier(synth / "train", tmp_path / "b", **kw)
    train_classifier(synth / "train", tmp_path / "c", **{**kw, "seed": 4})
    a, b, c = (load_file(str(tmp_path / n / "last" / "model.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    for name in ("model.safetensors", "last/model.safetensors"):  # same seed, same bytes
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_metrics_match_hand_computed_confusion():
    classes = ["bridge", "open", "particle"]
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2, 1])
    probs = np.full((10, 3), 0.1)
    probs[np.arange(10), pred] = 0.8
    m = evaluate_probs(y, probs, classes, n_boot=300)
    # rows = truth: bridge 2 right 1 -> open; open 2 right 1 -> particle; particle 3 right 1 -> bridge
    assert m["confusion"] == [[2, 1, 0], [0, 2, 1], [1, 0, 3]]
    assert m["accuracy"] == pytest.approx(7 / 10)
    prec = [2 / 3, 2 / 3, 3 / 4]
    rec = [2 / 3, 2 / 3, 3 / 4]
    f1 = [2 * p * r / (p + r) for p, r in zip(prec, rec)]
    assert m["macro_precision"] == pytest.approx(np.mean(prec))
    assert m["macro_recall"] == pytest.approx(np.mean(rec))
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["per_class"]["particle"] == pytest.approx(
        {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4, "predicted": 4})
    lo, hi = m["ci"]["accuracy"]
    assert lo <= 0.7 <= hi and 0 <= lo < hi <= 1
    assert bootstrap_ci(y, pred, 3, n_boot=300, seed=0) == m["ci"]  # same seed, same CI

    # Reject: the two least confident become 'other' (appended: the model has no such class).
    probs[[2, 4], :] = [0.4, 0.35, 0.25]
    r = evaluate_probs(y, probs, classes, reject_below=0.5, n_boot=50)["reject"]
    assert r["classes"][-1] == "other" and r["rejected"] == 2
    # item 2 (bridge) is now right by argmax, item 4 (open) still wrong; both are rejected
    assert r["before"]["accuracy"] == pytest.approx(8 / 10)
    assert r["rejected_were_right"] == 1 and r["rejected_were_wrong"] == 1
    assert r["after"]["confusion"][0] == [2, 0, 0, 1] and r["after"]["confusion"][1] == [0, 2, 0, 1]
    assert r["after"]["accuracy"] == pytest.approx(7 / 10) and r["accuracy_on_accepted"] == pytest.approx(7 / 8)


def test_evaluate_run_confusion_and_absent_class(trained, synth, tmp_path):
    run, _ = trained
    model, meta = load_run(run)
    assert not model.training and meta["classes"] == list(SYNTH_CLASSES) and meta["size"] == 32
    # a test set with a class the model never saw
    shutil.copytree(synth / "test", tmp_path / "test")
    ds = make_dataset(tmp_path / "extra", n_per_class=3, seed=5, classes=("crack",))
    test = [tmp_path / "test", ds.root]
    m = evaluate_run(run, test, n_boot=100, out_name="metrics_extra.json")
    assert m["classes"] == list(SYNTH_CLASSES) + ["crack"] and m["absent_from_model"] == {"crack": 3}
    # recompute the confusion matrix from the model by hand
    s = load_image_set(test, size=32, classes=meta["classes"], allow_unknown=True)
    with torch.no_grad():
        pred = model(s.images.unsqueeze(1).float() / 255).argmax(1).numpy()
    cm = confusion_matrix(s.labels.numpy(), pred, 4)
    assert m["confusion"] == cm.tolist() and sum(m["confusion"][3]) == 3 and m["confusion"][3][3] == 0
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert (run / "metrics_extra.json").exists() and (run / "metrics_extra_confusion.png").stat().st_size > 5000


def test_corrupt_images_are_skipped_with_a_warning(synth, tmp_path):
    ds = make_dataset(tmp_path / "data", n_per_class=6, seed=2)
    bad = ds.path("images/open/open_0001.png")
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    ds.path("images/bridge/bridge_0002.png").write_bytes(b"not an image at all")
    with pytest.warns(SkippedImageWarning) as caught:
        s = train_classifier(ds.root, tmp_path / "run", epochs=1, min_epoch_images=32, **FAST)
    text = " ".join(str(w.message) for w in caught)
    assert "open_0001.png: truncated" in text and "bridge_0002.png: not_an_image" in text
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {x["file"].rsplit("/", 1)[-1] for x in cfg["skipped_images"]} == {"open_0001.png", "bridge_0002.png"}
    assert s["skipped"] == 2 and s["n_train"] + s["n_val"] == 16


def test_imagefolder_and_weighted_mix(tmp_path):
    rng = np.random.default_rng(7)
    for label in ("Bridge", "particles"):  # aliases resolve
        (tmp_path / "tree" / label).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "tree" / label / f"{i}.png").write_bytes(encode_png(texture(label.lower().rstrip("s"), rng)))
    ds = make_dataset(tmp_path / "dd", n_per_class=5, seed=3, classes=("bridge", "open"))
    s = load_image_set([(tmp_path / "tree", 3.0), f"{ds.root}=1"], size=32)
    assert s.classes == ["bridge", "open", "particle"] and len(s) == 20
    p = sampling_weights(s)
    assert float(p[s.source == 0].sum()) == pytest.approx(0.75)
    # classes balanced within a source: open (only in source 1) gets half of source 1's mass
    assert float(p[s.labels == 1].sum()) == pytest.approx(0.125)
    with pytest.raises(SemgenError, match="weight"):
        load_image_set(f"{ds.root}=zero", size=32)


def test_init_with_other_classes_loads_backbone_only(trained, synth, tmp_path):
    run, _ = trained
    ds = make_dataset(tmp_path / "two", n_per_class=8, seed=4, classes=("bridge", "crack"))
    s = train_classifier(ds.root, tmp_path / "ft", init=run, head_only_epochs=1, epochs=1,
                         min_epoch_images=32, **{k: v for k, v in FAST.items() if k != "arch"})
    assert s["arch"] == ARCH and s["classes"] == ["bridge", "crack"]
    src = load_file(str(run / "model.safetensors"))
    ft = load_file(str(tmp_path / "ft" / "last" / "model.safetensors"))
    backbone = [k for k in src if not k.startswith("net.classifier")]
    # head-only epoch: the loaded backbone (and its BatchNorm statistics) is untouched
    assert all(torch.equal(src[k], ft[k]) for k in backbone)
    assert ft["net.classifier.weight"].shape[0] == 2 and src["net.classifier.weight"].shape[0] == 3
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["init"]["same_classes"] is False and "net.classifier.weight" in cfg["init"]["skipped"]
    with pytest.raises(SemgenError, match="not a 'mobilenetv2_035'"):
        train_classifier(ds.root, tmp_path / "bad", init=run, arch="mobilenetv2_035", epochs=1, size=32)


def test_cli_train_evaluate_predict_and_errors(trained, synth, tmp_path, capsys):
    run, _ = trained
    assert run_cli(["evaluate", run, "--data", synth / "test", "--reject-below", "0.5", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "macro-F1" in out and "reject below 0.5" in out
    assert json.loads((run / "metrics.json").read_text())["reject"]["threshold"] == 0.5
    img = synth / "test" / "images" / "particle" / "particle_0000.png"
    assert run_cli(["predict", run, img, tmp_path / "missing.png"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()  # results on stdout, the unreadable image on stderr
    assert len(lines) == 1 and lines[0].split("\t")[1] in SYNTH_CLASSES
    assert re.search(r"semgen: warning: .*missing.png: missing", cap.err)
    # a folder: every image under it, sorted, as if its files were named; an empty one is reported
    folder = synth / "test" / "images" / "particle"
    (tmp_path / "empty").mkdir()
    assert run_cli(["predict", run, folder, tmp_path / "empty"]) == 0
    cap = capsys.readouterr()
    by_folder = cap.out.strip().splitlines()
    assert re.search(r"semgen: warning: .*empty: a folder with no image file in it", cap.err)
    assert run_cli(["predict", run, *sorted(folder.glob("*.png"))]) == 0
    assert by_folder == capsys.readouterr().out.strip().splitlines() and len(by_folder) == 16
    assert run_cli(["predict", run, synth / "test", "--json"]) == 0  # a dataset dir: its manifest's images
    assert len(capsys.readouterr().out.strip().splitlines()) == len(list((synth / "test" / "images").rglob("*.png")))
    with pytest.raises(SemgenError, match="no checkpoint"):
        run_cli(["evaluate", tmp_path, "--data", synth / "test"])
    with pytest.raises(SemgenError, match="at least 2 classes"):
        train_classifier(make_dataset(tmp_path / "one", 4, classes=("open",)).root, tmp_path / "r1", epochs=1, **FAST)
    with pytest.raises(SemgenError, match="unknown architecture"):
        train_classifier(synth / "train", tmp_path / "r2", arch="resnet9000", epochs=1, size=32)


def test_val_fraction_zero_trains_on_every_image_and_keeps_the_last_epoch(synth, tmp_path):
    from semgen.classifier.data import stratified_split

    tr, va = stratified_split(torch.tensor([0, 0, 1, 1, 1]), 0.0, seed=3)
    assert tr.tolist() == [0, 1, 2, 3, 4] and va.numel() == 0
    with pytest.raises(SemgenError, match="val-fraction"):
        stratified_split(torch.tensor([0, 1]), 1.0, seed=0)
    s = train_classifier(synth / "train", tmp_path / "all", epochs=3, min_epoch_images=64, seed=0,
                         val_fraction=0.0, **FAST)
    n = sum(1 for _ in (synth / "train").rglob("*.png"))
    assert s["n_train"] == n and s["n_val"] == 0
    assert s["best_epoch"] == s["epochs_run"] == 3  # nothing to stop early on: the last epoch is kept
    best = load_file(str(tmp_path / "all" / "model.safetensors"))
    last = load_file(str(tmp_path / "all" / "last" / "model.safetensors"))
    assert all(torch.equal(best[k], last[k]) for k in best)
