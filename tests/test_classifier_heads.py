"""Hierarchical heads and the two-stage cascade (issue 13 item 3) on tiny textures.

Five classes (``classifier_synth.GATED_CLASSES``): the default hierarchy keeps a gate
(clean / defect / other) and two families (line: bridge, open; area: particle).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from classifier_synth import GATED_CLASSES, make_dataset
from semgen.classifier import load_run, train_classifier
from semgen.classifier.cascade import GATE_FILE, REST_FILE, OrtCascade, cascade_latency
from semgen.classifier.data import load_image_set
from semgen.classifier.evaluate import evaluate_run
from semgen.classifier.export import export_run, ort_logits, ort_session
from semgen.classifier.heads import HierClassifier
from semgen.classifier.hierarchy import Hierarchy, load_hierarchy
from semgen.classifier.models import create_model
from semgen.classifier.predict import predict_files
from semgen.errors import SemgenError

FAST = dict(arch="mobilenetv3_small_050", size=32, batch_size=32, num_threads=1, progress=False)


@pytest.fixture(scope="module")
def hier(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    make_dataset(root / "train", n_per_class=16, seed=0, classes=GATED_CLASSES)
    make_dataset(root / "test", n_per_class=8, seed=1, classes=GATED_CLASSES)
    s = train_classifier(root / "train", root / "run", heads="hierarchical", epochs=4, lr=5e-3,
                         min_epoch_images=320, seed=0, **FAST)
    res = export_run(root / "run", root / "train", data=root / "test", latency_runs=5, calib_max=40, auto_fix=False)
    return root, s, res


def test_leaf_probabilities_sum_to_one_and_the_unit_loss_is_the_leaf_cross_entropy(hier):
    root, _, _ = hier
    model, meta = load_run(root / "run")
    assert isinstance(model, HierClassifier) and meta["heads"]["gate"] == ["clean", "defect", "other"]
    assert meta["heads"]["families"] == {"line": ["bridge", "open"], "area": ["particle"]}
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        heads = model.forward_heads(x)
    torch.testing.assert_close(heads["log_probs"].exp().sum(1), torch.ones(16), atol=1e-5, rtol=0)
    # with unit weights the head loss is -sum(t log p) over the leaves; other weights change it
    t = torch.softmax(torch.randn(16, 5, generator=torch.Generator().manual_seed(1)) * 3, 1)
    leaf_ce = -(t * heads["log_probs"]).sum(1).mean()
    torch.testing.assert_close(model.head_loss(heads, t), leaf_ce, atol=1e-5, rtol=1e-5)
    h = load_hierarchy({**meta["heads"], "loss_weights": {"gate": 3.0, "family": 0.5, "leaf": 2.0}})
    other = create_model(FAST["arch"], 5, heads=h, classes=meta["classes"])
    other.load_state_dict(model.state_dict())
    other.eval()
    g = torch.log_softmax(heads["gate"], 1)
    gate_t = torch.stack([t[:, 0], t[:, 1:4].sum(1), t[:, 4]], 1)  # clean | bridge open particle | other
    fam_t = torch.stack([t[:, 1:3].sum(1), t[:, 3]], 1)
    leaf = torch.log_softmax(heads["leaf"][:, :2], 1)  # line: bridge, open (area has one leaf: log 1 = 0)
    want = (3.0 * -(gate_t * g).sum(1) + 0.5 * -(fam_t * torch.log_softmax(heads["family"], 1)).sum(1)
            + 2.0 * -(t[:, 1:3] * leaf).sum(1)).mean()
    torch.testing.assert_close(other.head_loss(heads, t), want, atol=1e-5, rtol=1e-5)
    # an untrained model of another arch and hierarchy order: still a distribution over the leaves
    h2 = Hierarchy.from_dict({"gate": ["defect", "clean"], "families": {"b": ["open", "particle"], "a": ["bridge"]}})
    m2 = create_model("mobilenetv2_035", 4, heads=h2, classes=["clean", "bridge", "open", "particle"]).eval()
    with torch.no_grad():
        p2 = m2(x).exp()
    torch.testing.assert_close(p2.sum(1), torch.ones(16), atol=1e-5, rtol=0)


def test_hierarchical_run_learns_exports_loads_and_predicts(hier):
    root, s, res = hier
    run = root / "run"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["heads"]["gate"] == ["clean", "defect", "other"] and cfg["request"]["heads"]["families"]["via"] == ["via"]
    m = evaluate_run(run, root / "test", n_boot=20, write=False)
    assert m["accuracy"] > 0.4, m["confusion"]  # chance is 1/5
    # one ONNX graph: the leaf log-probabilities and the gate
    model, meta = load_run(run)
    sess = ort_session(run / "model.onnx")
    assert [o.name for o in sess.get_outputs()] == ["logits", "gate"]
    ts = load_image_set(root / "test", size=32, classes=meta["classes"])
    x = ts.images.unsqueeze(1).float() / 255
    with torch.no_grad():
        heads = model.forward_heads(x)
    got_lp, got_gate = sess.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(got_lp, heads["log_probs"].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got_gate, torch.softmax(heads["gate"], 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.exp(got_lp).sum(1), 1.0, atol=1e-5)
    assert res["fp32_vs_torch_max_abs_diff"] < 1e-4  # the export left the model as it was (eval mode)
    # INT8 through the same export path: quantised, both outputs, reported
    q = onnx.load(str(run / "model.int8.onnx"))
    assert [o.name for o in q.graph.output] == ["logits", "gate"]
    assert any(t.data_type == onnx.TensorProto.INT8 for t in q.graph.initializer)
    assert 0 <= res["top1_agreement"] <= 1 and res["int8"]["bytes"] < 0.4 * res["fp32"]["bytes"]
    assert "gate probabilities [1,3] (clean, defect, other)" in (run / "model_int8.h").read_text()
    files = sorted(str(p) for p in (root / "test" / "images").rglob("*.png"))
    by_kind = {p: predict_files(p, files) for p in (run, run / "model.onnx", run / "model.int8.onnx")}
    assert [r["label"] for r in by_kind[run]] == [r["label"] for r in by_kind[run / "model.onnx"]]
    assert all(r["label"] in GATED_CLASSES for rs in by_kind.values() for r in rs)


def test_cascade_skips_the_rest_for_images_gated_clean(hier, monkeypatch):
    root, _, _ = hier
    run = root / "run"
    seen = []
    orig = HierClassifier.forward_rest

    def spy(self, f):
        seen.append(len(f))
        return orig(self, f)

    monkeypatch.setattr(HierClassifier, "forward_rest", spy)
    files = sorted(str(p) for p in (root / "test" / "images").rglob("*.png"))
    full = predict_files(run, files)
    n_full = sum(seen)
    seen.clear()
    casc = predict_files(run, files, cascade=True)
    stages = [r["stage"] for r in casc]
    assert n_full == len(files) and sum(seen) == stages.count("rest")  # the rest ran only where the gate said defect
    assert [r["label"] for r in casc] == [r["label"] for r in full]  # and the labels are the full model's
    for r in casc:
        names = [c for c, _ in r["top"]]
        # settled by the gate: one of its classes (the rest can also end there: the defect mass is shared)
        assert r["stage"] == "rest" or (r["label"] in ("clean", "other") and names == [r["label"]])
    # a gate forced to 'clean': the rest never runs; forced to 'defect': it runs for every image
    model, _ = load_run(run)
    images = load_image_set(root / "test", size=32).images
    x = images.unsqueeze(1).float() / 255
    for gate_out, rest_images in ((0, 0), (1, len(x))):
        with torch.no_grad():
            model.gate[-1].bias.zero_()
            model.gate[-1].bias[gate_out] = 1e4
        seen.clear()
        r = model.cascade(x)
        assert sum(seen) == rest_images and int(r["resolved"].sum()) == rest_images
        if gate_out == 0:
            assert torch.isnan(r["probs"][:, 1:4]).all() and torch.all(r["probs"][:, 0] == 1.0)
    # the ONNX stages: the same split, the same labels as the one-graph FP32 model
    oc = OrtCascade(run)
    o = oc.run(images)
    assert oc.rest_images == int(o["resolved"].sum())
    fp32 = ort_logits(ort_session(run / "model.onnx"), images).argmax(1)
    assert (np.nan_to_num(o["probs"], nan=-1).argmax(1) == fp32).all()
    onnx_casc = predict_files(run / "model.onnx", files, cascade=True)
    assert [r["stage"] for r in onnx_casc] == stages
    with pytest.raises(SemgenError, match="FP32 stages"):
        predict_files(run / "model.int8.onnx", files, cascade=True)
    res = json.loads((run / "export.json").read_text())
    c = res["cascade"]
    assert c["agreement_with_fp32"] == 1.0 and c["settled_by_gate"] == pytest.approx(stages.count("gate") / len(files))
    assert c["average_ms_on_data"] == pytest.approx(cascade_latency(c["gate_ms"], c["rest_ms"], c["settled_by_gate"]))
    assert {d["file"] for d in res["files"]} >= {GATE_FILE, REST_FILE}


def test_hierarchy_errors_are_one_line(hier, tmp_path):
    root, _, _ = hier
    bad = [({"gate": ["clean", "defect"], "families": {"a": ["bridge"]}, "colour": 1}, "unknown key"),
           ({"gate": ["clean", "defect"], "families": {"a": ["bridge"], "b": ["bridge"]}}, "repeated: bridge"),
           ({"gate": ["clean", "defect"], "families": {"a": ["brige"]}}, "Did you mean 'bridge'"),
           ({"gate": ["clean", "other"], "families": {"a": ["bridge"]}}, "no 'defect' output"),
           ({"gate": ["clean", "defect"], "families": {"a": ["bridge"]}, "loss_weights": {"gate": -1}}, "'gate'"),
           ({"gate": ["clean", "defect"], "families": {"a": ["bridge"]}, "gate_after": 0}, "gate_after")]
    for d, msg in bad:
        with pytest.raises(SemgenError, match=msg) as e:
            Hierarchy.from_dict(d)
        assert "\n" not in str(e.value)
    f = tmp_path / "h.yaml"
    f.write_text("gate: [clean, defect, other]\nfamilies:\n  line: [bridge, particle]\n")
    with pytest.raises(SemgenError, match="open") as e:  # the data has 'open', the hierarchy does not
        train_classifier(root / "train", tmp_path / "r", heads=f, epochs=1, **FAST)
    assert "\n" not in str(e.value)
    with pytest.raises(SemgenError, match="staged MobileNet"):
        create_model("resnet18", 5, heads=load_hierarchy(), classes=list(GATED_CLASSES))
    from semgen.classifier.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "plain", create_model(FAST["arch"], 2), classes=["bridge", "open"], size=32, epoch=0,
                    config={})
    with pytest.raises(SemgenError, match="--heads hierarchical") as e:
        predict_files(tmp_path / "plain", [str(next((root / "test").rglob("*.png")))], cascade=True)
    assert "\n" not in str(e.value)


def test_cli_trains_with_a_hierarchy_file_and_predicts_with_the_cascade(hier, tmp_path, capsys, monkeypatch):
    import argparse
    import functools

    from semgen.classifier import commands
    from semgen.classifier import train as train_mod

    # a short epoch (the CLI has no flag for it): what is tested is the flags' way to the library
    monkeypatch.setattr(train_mod, "train_classifier", functools.partial(train_mod.train_classifier, min_epoch_images=32))

    root, _, _ = hier
    f = tmp_path / "h.json"
    f.write_text(json.dumps({"gate": ["clean", "defect", "other"], "families": {"all": ["bridge", "open", "particle"]},
                             "loss_weights": {"gate": 2.0}, "gate_after": 2, "gate_width": 16}))
    p = argparse.ArgumentParser(prog="semgen")
    commands.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["train", "--data", str(root / "train"), "--out", str(tmp_path / "r"), "--hierarchy", str(f),
                         "--arch", FAST["arch"], "--size", "32", "--epochs", "1", "--batch", "16", "--threads", "1"])
    assert args.func(args) == 0
    model, meta = load_run(tmp_path / "r")
    assert model.gate_after == 2 and model.gate[0].out_channels == 16
    assert meta["heads"]["families"] == {"all": ["bridge", "open", "particle"]} and meta["heads"]["loss_weights"]["gate"] == 2
    capsys.readouterr()
    img = str(next((root / "test" / "images" / "clean").iterdir()))
    args = p.parse_args(["predict", str(tmp_path / "r"), img, "--cascade", "--top", "3"])
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip().split("\t")
    assert line[0] == img and line[-1] in ("(gate)", "(rest)")
