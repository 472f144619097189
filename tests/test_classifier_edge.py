"""The edge classifier (issue 13): distillation, QAT with an 8-bit QDQ export, calibrated rejection.

Tiny textures (``classifier_synth``), 32-48 px, a few optimiser steps per run.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from classifier_synth import SYNTH_CLASSES, make_dataset
from semgen.classifier import distill as distill_mod
from semgen.classifier import load_run, train_classifier
from semgen.classifier.checkpoint import read_checkpoint, save_checkpoint
from semgen.classifier.distill import DistillConfig
from semgen.classifier.evaluate import evaluate_run
from semgen.classifier.export import export_run, ort_logits, ort_session
from semgen.classifier.predict import predict_files
from semgen.classifier.qat import QATConfig, checkpoint_is_qat, load_qat_run
from semgen.errors import SemgenError

FAST = dict(size=32, batch_size=32, lr=2e-3, min_epoch_images=96, num_threads=1, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    make_dataset(root / "train", n_per_class=14, seed=0)
    make_dataset(root / "test", n_per_class=8, seed=1)
    make_dataset(root / "transfer", n_per_class=6, seed=2)
    # two teachers: another arch, and another input size (the student's batch is resized for it)
    train_classifier(root / "train", root / "t1", arch="mobilenetv3_small_050", epochs=3, **FAST)
    train_classifier(root / "train", root / "t2", arch="mobilenetv2_035", epochs=2,
                     **{**FAST, "size": 40})
    return root


def _log(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("teachers", [["t1"], ["t1", "t2"]])
def test_distillation_student_loss_falls(runs, teachers):
    out = runs / f"student_{len(teachers)}"
    cfg = DistillConfig([runs / t for t in teachers], temperature=2.0, weight=0.9)
    s = train_classifier(runs / "train", out, arch="mobilenetv3_small_050", epochs=6, distill=cfg,
                         **{**FAST, "lr": 1e-3, "min_epoch_images": 192})
    log = _log(out)
    assert len(log) == 6 and all(np.isfinite(r["soft_loss"]) for r in log)
    # the student's distillation and total losses fall from the first epoch to the last two (a tiny
    # MobileNetV3 on 42 images jumps up in epoch 2, at the peak of the warm-up, so not epoch by epoch;
    # seen: 2.0 / 1.7 -> 1.36 / 1.33 with one / two teachers)
    for k in ("soft_loss", "train_loss"):
        assert (log[-1][k] + log[-2][k]) / 2 < log[0][k], k
    conf = json.loads((out / "config.json").read_text())
    assert [t["size"] for t in conf["distill"]["teachers"]] == [{"t1": 32, "t2": 40}[t] for t in teachers]
    assert len(conf["request"]["distill"]["teachers"]) == len(teachers)
    assert s["temperature"] > 0


def test_transfer_set_goes_to_the_teacher(runs, monkeypatch):
    seen = []
    orig = distill_mod.Teacher.log_probs

    def spy(self, x, temperature):
        seen.append(len(x))
        return orig(self, x, temperature)

    monkeypatch.setattr(distill_mod.Teacher, "log_probs", spy)
    out = runs / "student_transfer"
    cfg = DistillConfig([runs / "t1"], transfer=[f"{runs / 'transfer'}=1"])
    train_classifier(runs / "train", out, arch="mobilenetv3_small_050", epochs=1, distill=cfg, **FAST)
    rec = _log(out)[0]
    conf = json.loads((out / "config.json").read_text())
    steps = conf["steps_per_epoch"]
    assert conf["distill"]["transfer_n"] == 18 and conf["distill"]["transfer_batches_per_epoch"] == steps
    assert rec["transfer_images"] == steps * 32
    # the teacher labelled every labelled and every transfer image
    assert sum(seen) == steps * 32 + rec["transfer_images"]


def test_a_teacher_gives_the_same_targets_in_pytorch_and_in_onnx_runtime(runs):
    """The CPU runs teachers in ONNX Runtime, a GPU in PyTorch (channels-last): the PyTorch path,
    asked for on the CPU here, gives the same softened targets, in the student's class order."""
    classes = json.loads((runs / "t1" / "config.json").read_text())["classes"]
    student = list(reversed(classes))  # another order: the teacher's outputs are re-ordered
    ort = distill_mod.Teacher(runs / "t1", student)
    assert ort.session is not None  # the CPU default
    pt = distill_mod.Teacher(runs / "t1", student).to("cpu", runtime="torch")
    assert pt.session is None
    x = torch.rand(5, 1, 40, 40, generator=torch.Generator().manual_seed(3))  # resized to the teacher's 32
    a, b = ort.log_probs(x, 4.0), pt.log_probs(x, 4.0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    order = torch.tensor([classes.index(c) for c in student])
    with torch.no_grad():
        plain = pt.model(F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True))
    torch.testing.assert_close(b, F.log_softmax(plain[:, order] / 4.0, dim=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(SemgenError, match="onnxruntime on the CPU"):
        pt.to("meta", runtime="onnxruntime")


def test_teacher_tta_averages_the_teachers_over_the_views_of_the_batch(runs, capsys):
    """``--teacher-tta flips``: the targets are the mean of every teacher's softened probabilities
    over the four views (identity, both flips, half turn); ``none`` is the plain targets, and a run's
    request names the views only when there are several (older runs' requests are unchanged)."""
    classes = json.loads((runs / "t1" / "config.json").read_text())["classes"]
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    plain = distill_mod.Distiller(DistillConfig([runs / "t1"], temperature=2.0), classes)
    flips = distill_mod.Distiller(DistillConfig([runs / "t1", runs / "t2"], temperature=2.0, teacher_tta="flips"),
                                  classes)
    t1 = plain.teachers[0]
    assert torch.equal(plain.targets(x), t1.log_probs(x, 2.0).exp())
    views = [x, x.flip(-1), x.flip(-2), x.rot90(2, (-2, -1))]
    want = torch.stack([t.log_probs(v, 2.0).exp() for t in flips.teachers for v in views]).mean(0)
    got = flips.targets(x)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got.sum(1), torch.ones(6), rtol=1e-5, atol=1e-5)
    # a mirror image has the same targets: the views of x and of its mirror are the same set
    torch.testing.assert_close(flips.targets(x.flip(-1)), got, rtol=1e-5, atol=1e-6)
    assert "teacher_tta" not in DistillConfig([runs / "t1"]).request()
    assert DistillConfig([runs / "t1"], teacher_tta="d4").request()["teacher_tta"] == "d4"
    with pytest.raises(SemgenError, match="--tta must be one of"):
        DistillConfig([runs / "t1"], teacher_tta="rot")
    from semgen.cli import main

    assert main(["train", "--data", str(runs / "train"), "--out", str(runs / "no_teacher"), "--teacher-tta",
                 "flips"]) == 2
    assert "--teacher-tta needs --teacher" in capsys.readouterr().err
    assert not (runs / "no_teacher" / "config.json").exists()


def test_mixup_mixes_the_transfer_batches_for_the_teacher_too(runs, monkeypatch):
    """``--mixup`` with ``--teacher``: function matching. Every unlabelled transfer batch is mixed
    like the labelled ones, and the teacher labels the mixed images the student sees."""
    from semgen.classifier import train as train_mod

    mixed, taught = [], []
    orig_mix, orig_lp = train_mod.mix_images, distill_mod.Teacher.log_probs

    def spy_mix(x, alpha, g):
        out = orig_mix(x, alpha, g)
        mixed.append((alpha, x.clone(), out.clone()))
        return out

    def spy_lp(self, x, temperature):
        taught.append(x.detach().clone())
        return orig_lp(self, x, temperature)

    monkeypatch.setattr(train_mod, "mix_images", spy_mix)
    monkeypatch.setattr(distill_mod.Teacher, "log_probs", spy_lp)
    cfg = DistillConfig([runs / "t1"], transfer=[f"{runs / 'transfer'}=1"])
    train_classifier(runs / "train", runs / "student_fm", arch="mobilenetv3_small_050", epochs=1, distill=cfg,
                     mixup=0.4, **FAST)
    steps = json.loads((runs / "student_fm" / "config.json").read_text())["steps_per_epoch"]
    assert len(mixed) == steps and all(a == 0.4 for a, _, _ in mixed)  # one per transfer batch
    assert sum(not torch.equal(x, m) for _, x, m in mixed) >= steps - 1  # mixed (a batch may draw lam = 1)
    for _, _, m in mixed:  # the teacher saw each mixed batch as it was
        assert any(t.shape == m.shape and torch.allclose(t, m) for t in taught)

    mixed.clear()
    train_classifier(runs / "train", runs / "student_nofm", arch="mobilenetv3_small_050", epochs=1, distill=cfg,
                     **FAST)
    assert len(mixed) == steps and all(a == 0 and torch.equal(x, m) for a, x, m in mixed)  # without: as before


def test_a_transfer_stream_makes_new_images_for_every_batch(runs, monkeypatch):
    """``stream:SEED``: the transfer images are made on the fly, samples [0, n) of the pretraining
    stream of that seed in order, never one twice; beside a folder, batches come from both."""
    from semgen.pretrain.labels import TargetSpace
    from semgen.pretrain.stream import StreamJob

    made = []
    orig = distill_mod.TransferStream.next
    monkeypatch.setattr(distill_mod.TransferStream, "next", lambda self, n: made.append(orig(self, n)) or made[-1])
    out = runs / "student_stream"
    cfg = DistillConfig([runs / "t1"], transfer=["stream:5=1"])
    train_classifier(runs / "train", out, arch="mobilenetv3_small_050", epochs=2, distill=cfg, **FAST)
    conf = json.loads((out / "config.json").read_text())
    steps = conf["steps_per_epoch"]
    assert [r["transfer_images"] for r in _log(out)] == [steps * 32] * 2
    assert len(made) == 2 * steps and all(b.shape == (32, 32, 32) and b.dtype == torch.uint8 for b in made)
    images = torch.cat(made).numpy()
    assert np.array_equal(images, StreamJob(TargetSpace.build(None), seed=5, size=32)((0, len(images)))["images"])
    assert len({im.tobytes() for im in images}) == len(images)  # fresh images, none shown twice
    st = conf["distill"]["transfer_stream"]
    assert st["seed"] == 5 and st["size"] == 32 and st["generators"]["bridge"].startswith("bridge@")
    assert conf["distill"]["transfer_n"] == 0 and conf["request"]["distill"]["transfer"] == ["stream:5=1"]

    # with a folder of weight 1 beside it: two transfer batches per labelled one, from both sources
    made.clear()
    cfg = DistillConfig([runs / "t1"], transfer=[f"{runs / 'transfer'}=1", "stream:5=1"])
    train_classifier(runs / "train", runs / "student_mixed", arch="mobilenetv3_small_050", epochs=1, distill=cfg,
                     **FAST)
    conf = json.loads((runs / "student_mixed" / "config.json").read_text())
    assert conf["distill"]["transfer_batches_per_epoch"] == 2 * conf["steps_per_epoch"]
    assert conf["distill"]["transfer_n"] == 18 and 0 < len(made) < 2 * conf["steps_per_epoch"]

    with pytest.raises(SemgenError, match=r"^--transfer stream:-1: expected stream:SEED\[=W\]"):
        DistillConfig([runs / "t1"], transfer=["stream:-1"])
    with pytest.raises(SemgenError, match="--transfer takes one stream"):
        DistillConfig([runs / "t1"], transfer=["stream:1", "stream:2"])


@pytest.fixture(scope="module")
def qat_run(runs):
    out = runs / "qat"
    # 7-bit weights: onnxruntime's u8s8 kernels on x86 without VNNI (this CI's AVX2 machines) saturate
    # int16 pair sums with full-range int8 weights, so the INT8 graph would not match its own
    # fake-quant model bit for bit there; an MCU / NPU / VNNI CPU runs 8-bit weights exactly.
    train_classifier(runs / "train", out, arch="mobilenetv2_035", epochs=2, qat=QATConfig(weight_bits=7), **FAST)
    return out


def test_qat_alone_has_an_fp32_phase_and_a_loadable_checkpoint(runs, qat_run):
    assert [r["qat"] for r in _log(qat_run)] == [False, True]
    assert checkpoint_is_qat(qat_run) and not checkpoint_is_qat(runs / "t1")
    plain, meta = load_run(qat_run)  # the plain layout: a teacher / --init can use it as is
    qmodel, _ = load_qat_run(qat_run)
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        a, b = plain(x), qmodel(x)
    assert a.shape == b.shape == (4, 3) and float((a - b).abs().max()) < 0.5 * float(a.abs().max()) + 1e-3
    assert predict_files(qat_run, [str(next((runs / "test" / "images" / "bridge").iterdir()))])[0]["label"]


def test_qat_export_keeps_8bit_activations_and_agrees(runs, qat_run):
    res = export_run(qat_run, None, data=runs / "test", latency_runs=5)
    q = res["quantization"]
    assert q["strategy"] == "qat" and q["activations"].startswith("uint8")
    m = onnx.load(str(qat_run / "model.int8.onnx"))
    consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    qnodes = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    zp_types = {str(consts[n.input[2]].dtype) for n in qnodes}
    assert qnodes and zp_types <= {"uint8", "int8"}  # 8-bit activations, nothing 16-bit
    assert not any(t.data_type in (onnx.TensorProto.UINT16, onnx.TensorProto.INT16) for t in m.graph.initializer)
    int8_w = [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    n_w = sum(p.numel() for p in load_run(qat_run)[0].parameters() if p.ndim > 1)
    assert sum(int(np.prod(t.dims)) for t in int8_w) == n_w  # every weight stored as int8
    per_channel = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in
                   {t.name for t in int8_w}]
    assert per_channel and all(np.asarray(consts[n.input[1]]).size > 1 for n in per_channel
                               if consts[n.input[0]].shape[0] > 1)
    # the INT8 graph against the run's own FP32 fake-quant model on a fixed batch
    qmodel, _ = load_qat_run(qat_run)
    imgs = (torch.rand(24, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    with torch.no_grad():
        want = qmodel(imgs.unsqueeze(1).float() / 255).numpy()
    got = ort_logits(ort_session(qat_run / "model.int8.onnx"), imgs)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    assert q["qat"]["agreement_with_fake_quant"] >= 0.9
    assert json.loads((qat_run / "export.json").read_text())["quantization"]["strategy"] == "qat"


def test_qat_dead_channel_bias_exports_exactly(runs, qat_run, tmp_path):
    """A channel whose folded weights are all 0 but whose bias is not (a BatchNorm gamma of 0):
    the weight scale is raised so the bias fits the int32 grid, in the fake-quant model and the
    INT8 file alike. Without it the exported bias saturated (and wrapped in the int32 cast)."""
    from semgen.classifier.qat import QConv2d, _weight_scales, export_qat_onnx

    qmodel, meta = load_qat_run(qat_run)
    convs = [m for m in qmodel.modules() if isinstance(m, QConv2d) and m.bias is not None and m.groups == 1]
    conv = convs[len(convs) // 2]
    with torch.no_grad():
        conv.weight[0].zero_()
        conv.bias[0] = 3.0
    seen = []  # the input scale the conv sees (its input's _sg_scale, or its own in_q's)
    hook = conv.register_forward_pre_hook(lambda mod, inp: seen.append(
        getattr(inp[0], "_sg_scale", None) or mod.in_q.qparams()[0]))
    with torch.no_grad():
        qmodel(torch.rand(2, 1, 32, 32))
    hook.remove()
    s_in = seen[0]
    s_w = _weight_scales(conv.weight, conv.wmax, conv.bias, s_in)
    assert 3.0 / (s_in * float(s_w[0])) <= 2**30 + 1
    path = export_qat_onnx(qmodel, 32, tmp_path / "dead.int8.onnx")
    m = onnx.load(str(path))
    q_bias = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT32]
    assert q_bias and all(np.abs(b.astype(np.int64)).max() < 2**31 - 1 for b in q_bias)
    imgs = (torch.rand(24, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    with torch.no_grad():
        want = qmodel(imgs.unsqueeze(1).float() / 255).numpy()
    got = ort_logits(ort_session(path), imgs)
    scale = float(np.abs(want).max())
    # most images bit for bit, the rest close: onnxruntime's integer requantisation can round a
    # value on a grid boundary the other way and the step propagates (seen: 4 of 24 images, up to
    # 0.31 of the logit scale, onnxruntime 1.32 on a VNNI CPU). With the bias saturated instead,
    # every image departs (median 0.5 of the scale).
    per_image = np.abs(got - want).max(1)
    assert float(np.median(per_image)) < 0.02 * scale and (per_image < 0.1 * scale).mean() >= 0.75


@pytest.mark.parametrize("arch", ["efficientnet_lite0_035", "efficientnet_lite0_035e"])
def test_qat_same_padding_folds_into_integer_convs(tmp_path, arch):
    """The edge EfficientNet-Lite uses TF "SAME" padding (one extra row / column at stride 2): its
    QAT export has no Pad and no shape arithmetic left, every Conv reads an int8 activation (so
    the runtime fuses each into an integer conv), and it matches the fake-quant model."""
    from semgen.classifier.models import create_model
    from semgen.classifier.qat import export_qat_onnx, to_qat

    torch.manual_seed(0)
    model = to_qat(create_model(arch, 3, drop_rate=0.0), weight_bits=7)  # see qat_run
    model.train()
    with torch.no_grad():  # the observers' ranges
        for _ in range(3):
            model(torch.rand(8, 1, 32, 32))
    model.eval()
    path = export_qat_onnx(model, 32, tmp_path / "lite.int8.onnx")
    m = onnx.load(str(path))
    ops = {n.op_type for n in m.graph.node}
    assert "Pad" not in ops and not ops & {"Shape", "ConstantOfShape", "Ceil", "Slice", "Concat"}
    producer = {o: n for n in m.graph.node for o in n.output}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert convs and all(producer[n.input[0]].op_type == "DequantizeLinear" for n in convs)
    assert any(list(a.ints) == [0, 0, 1, 1] for n in convs for a in n.attribute if a.name == "pads")
    imgs = (torch.rand(16, 32, 32, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    with torch.no_grad():
        want = model(imgs.unsqueeze(1).float() / 255).numpy()
    got = ort_logits(ort_session(path), imgs)
    assert float(np.abs(got - want).max()) < 0.1 * float(np.abs(want).max()) + 1e-3


def test_qat_export_stores_no_derived_bytes_and_runs_as_the_explicit_graph(tmp_path):
    """The bias scales are Mul(s_x, s_w) and the zero points of 0 (biases, conv weights) are left
    out of the file; onnxruntime fuses it into the same integer ops as the explicit form (every
    scale and zero point stored) and gives the same outputs bit for bit."""
    import onnxruntime as ort

    from semgen.classifier.deploy import graph_constants
    from semgen.classifier.models import create_model
    from semgen.classifier.qat import export_qat_onnx, to_qat

    torch.manual_seed(0)
    model = to_qat(create_model("efficientnet_lite0_035", 3, drop_rate=0.0), weight_bits=7)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 1, 32, 32))
    model.eval()
    path = export_qat_onnx(model, 32, tmp_path / "slim.int8.onnx")
    m = onnx.load(str(path))
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    inits = {t.name: t for t in m.graph.initializer}
    bias_dq = [n for n in dq if n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT32]
    producer = {o: n for n in m.graph.node for o in n.output}
    assert bias_dq and all(len(n.input) == 2 and producer[n.input[1]].op_type == "Mul" for n in bias_dq)
    readers = {}
    for n in m.graph.node:
        for v in n.input:
            readers.setdefault(v, []).append(n.op_type)
    w_dq = [n for n in dq if n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert all((len(n.input) == 2) == (readers[n.output[0]] == ["Conv"]) for n in w_dq)
    assert any(len(n.input) == 3 for n in w_dq)  # the classifier's Gemm keeps its zero point

    # the explicit form: every derived scale stored, every zero point written out
    c = graph_constants(m)
    ex = onnx.load(str(path))
    extra, nodes = [], []
    for n in ex.graph.node:
        if n.op_type == "Mul" and n.input[0] in c and n.input[1] in c:  # a bias scale
            c[n.output[0]] = (c[n.input[0]] * c[n.input[1]]).astype(np.float32)
            extra.append(numpy_helper.from_array(c[n.output[0]], n.output[0]))
            continue
        if n.op_type == "DequantizeLinear" and len(n.input) == 2 and n.input[0] in inits:
            x = numpy_helper.to_array(inits[n.input[0]])
            zp = np.zeros(x.shape[0] if np.asarray(c[n.input[1]]).size > 1 else (), x.dtype)
            extra.append(numpy_helper.from_array(zp, n.output[0] + "_zp"))
            n.input.append(n.output[0] + "_zp")
        nodes.append(n)
    del ex.graph.node[:]
    ex.graph.node.extend(nodes)
    ex.graph.initializer.extend(extra)
    onnx.checker.check_model(ex)
    (tmp_path / "explicit.onnx").write_bytes(ex.SerializeToString())
    assert path.stat().st_size < (tmp_path / "explicit.onnx").stat().st_size

    imgs = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(3)).numpy()
    outs, ops = [], []
    for name in ("slim.int8.onnx", "explicit.onnx"):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"{name}.opt.onnx")
        sess = ort.InferenceSession(str(tmp_path / name), so, providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {sess.get_inputs()[0].name: imgs})[0])
        ops.append(sorted(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node))
    assert ops[0] == ops[1] and "QLinearConv" in ops[0] and "Conv" not in ops[0]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_qat_with_teacher_from_trained_run(runs):
    out = runs / "qat_ft"
    s = train_classifier(runs / "train", out, init=runs / "t1", epochs=1, qat=QATConfig(),
                         distill=DistillConfig([runs / "t2"]), **FAST)
    assert s["qat"] and _log(out)[0]["qat"] and "soft_loss" in _log(out)[0]
    assert read_checkpoint(out)["qat"]["weight_bits"] == 8
    assert (out / "qat.safetensors").is_file() and (out / "last" / "qat.safetensors").is_file()


def test_rejection_thresholds_and_auto(runs):
    run = runs / "t1"
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["temperature"] > 0 and len(cal["val_confidence"]) == cal["n"] > 0
    assert (run / "coverage_precision_val.png").exists()
    all_r = evaluate_run(run, runs / "test", reject_below=1.0, n_boot=20, out_name="m1.json")
    assert all_r["reject"]["rejected"] == all_r["n"] == 24
    none_r = evaluate_run(run, runs / "test", reject_below=0.0, n_boot=20, out_name="m0.json")
    assert none_r["reject"]["rejected"] == 0
    auto = evaluate_run(run, runs / "test", reject_below="auto", target_precision=0.9, n_boot=20,
                        out_name="ma.json")
    a = auto["reject"]["auto"]
    assert 0.0 <= a["threshold"] <= 1.0 and a["chosen_on"] == "validation"
    assert a["precision"] >= 0.9 or not a["met"]
    assert (run / "ma_coverage_precision.png").exists() and auto["temperature"] == cal["temperature"]
    with pytest.raises(SemgenError, match="--target-precision"):
        evaluate_run(run, runs / "test", reject_below="auto", n_boot=20, write=False)


def test_bad_input_is_one_line(runs, tmp_path):
    # a teacher with other classes
    model, meta = load_run(runs / "t1")
    other = ["bridge", "open", "crack"]
    save_checkpoint(tmp_path / "other", model, classes=other, size=32, epoch=1, config={})
    with pytest.raises(SemgenError) as e:
        train_classifier(runs / "train", tmp_path / "s", epochs=1, distill=DistillConfig([tmp_path / "other"]),
                         **FAST)
    msg = str(e.value)
    assert "\n" not in msg and "bridge, open, crack" in msg and ", ".join(SYNTH_CLASSES) in msg
    # a missing teacher run: refused before any image is loaded
    with pytest.raises(SemgenError, match=r"--teacher .*nope.* does not exist") as e:
        train_classifier(runs / "train", tmp_path / "s2", epochs=1, distill=DistillConfig([tmp_path / "nope"]), **FAST)
    assert "\n" not in str(e.value) and not (tmp_path / "s2").exists()
    # a QAT export of a run that was not QAT-trained
    with pytest.raises(SemgenError, match="not QAT-trained") as e:
        export_run(runs / "t1", runs / "train", data=runs / "test", qat=True)
    assert "\n" not in str(e.value)
    with pytest.raises(SemgenError, match="--transfer needs --teacher"):
        train_classifier(runs / "train", tmp_path / "s3", epochs=1, distill=DistillConfig([], transfer=[runs / "transfer"]),
                         **FAST)


def test_fp32_export_has_no_padding_arithmetic_and_matches_pytorch(tmp_path):
    """timm's TF "SAME" convs (EfficientNet-Lite) computed their pads from the input shape in the
    FP32 graph: Shape / Ceil / ... / Pad around every stride-2 conv. The input size of an exported
    model is fixed, so the pads are constants now, inside the convs; the outputs are unchanged and
    the model itself is left as it was."""
    from semgen.classifier.export import export_onnx
    from semgen.classifier.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0_035", 3, drop_rate=0.0).eval()
    n_same = sum(type(m).__name__ == "Conv2dSame" for m in model.modules())
    assert n_same > 0
    path = export_onnx(model, 32, tmp_path / "model.onnx")
    assert sum(type(m).__name__ == "Conv2dSame" for m in model.modules()) == n_same  # not changed in place
    m = onnx.load(str(path))
    ops = {n.op_type for n in m.graph.node}
    assert "Pad" not in ops and not ops & {"Shape", "ConstantOfShape", "Ceil", "Slice", "Concat"}, ops
    pads = [list(a.ints) for n in m.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "pads"]
    assert [0, 0, 1, 1] in pads  # stride 2 on an even size: one more row / column at the end
    imgs = (torch.rand(5, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    with torch.no_grad():
        want = model(imgs.unsqueeze(1).float() / 255).numpy()
    np.testing.assert_allclose(ort_logits(ort_session(path), imgs), want, rtol=1e-4, atol=1e-4)


class _Killed(Exception):
    pass


_TIMING = ("seconds", "train_seconds", "images_per_s")


@pytest.mark.parametrize("kill_after,damaged", [(1, False), (2, False), (3, False), (3, True)])
def test_a_killed_run_resumes_to_the_run_it_would_have_been(runs, tmp_path, monkeypatch, capsys, kill_after,
                                                             damaged):
    """A run stopped after any epoch and started again with the same settings ends with the same
    bytes (weights, log, calibration) as one that was never stopped: here a distilled student
    with a transfer stream, dropout, a validation split and a QAT phase (epochs 3-4); killed
    in its FP32 phase (after epoch 1) and in its QAT phase (after epoch 3). With the newest
    state torn (the machine died while its weights were written), the run continues from the
    state before it, with a warning, and still ends with the same bytes."""
    from semgen.classifier import train as train_mod

    kw = dict(arch="mobilenetv3_small_050", epochs=4, qat=QATConfig(epochs=2, weight_bits=7),
              distill=DistillConfig([runs / "t1"], transfer=["stream:5=1"]), val_fraction=0.25, **FAST)
    train_classifier(runs / "train", tmp_path / "whole", **kw)
    assert not (tmp_path / "whole" / "resume").exists()  # states only while a run is unfinished

    save = train_mod._save_train_state

    def save_then_die(out, epoch, *a, **k):
        save(out, epoch, *a, **k)
        if epoch == kill_after:
            raise _Killed

    monkeypatch.setattr(train_mod, "_save_train_state", save_then_die)
    run = tmp_path / "killed"
    with pytest.raises(_Killed):
        train_classifier(runs / "train", run, **kw)
    assert not (run / "summary.json").exists() and (run / "resume" / "LATEST").exists()
    from semgen.classifier.lineage import describe, lineage

    assert f"[unfinished: {kill_after} of 4 epochs done; the same semgen train command continues it]" in \
        describe(lineage(run))[-2]
    monkeypatch.setattr(train_mod, "_save_train_state", save)
    with open(run / "train_log.jsonl", "a") as f:  # an epoch logged after the last state: run again
        f.write('{"epoch": %d, "train_loss": 9.9}\n' % (kill_after + 1))
    if damaged:
        newest = run / "resume" / (run / "resume" / "LATEST").read_text().strip() / "model.safetensors"
        newest.write_bytes(newest.read_bytes()[:1000])
    capsys.readouterr()
    s = train_classifier(runs / "train", run, **kw)
    assert s["resumed_after_epoch"] == kill_after - damaged
    assert ("is unreadable" in capsys.readouterr().err) == damaged

    for name in ("model.safetensors", "qat.safetensors", "last/model.safetensors", "calibration.json"):
        if (tmp_path / "whole" / name).exists() or (run / name).exists():
            assert (run / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    strip = lambda rs: [{k: v for k, v in r.items() if k not in _TIMING} for r in rs]  # noqa: E731
    assert strip(_log(run)) == strip(_log(tmp_path / "whole"))
    assert [r["qat"] for r in _log(run)] == [False, False, True, True]
    assert not (run / "resume").exists()


def test_an_unfinished_run_with_other_settings_starts_anew(runs, tmp_path, monkeypatch, capsys):
    from semgen.classifier import train as train_mod

    save = train_mod._save_train_state

    def save_then_die(*a, **k):
        save(*a, **k)
        raise _Killed

    monkeypatch.setattr(train_mod, "_save_train_state", save_then_die)
    kw = dict(arch="mobilenetv3_small_050", **FAST)
    with pytest.raises(_Killed):
        train_classifier(runs / "train", tmp_path / "r", epochs=3, **kw)
    monkeypatch.setattr(train_mod, "_save_train_state", save)
    capsys.readouterr()
    s = train_classifier(runs / "train", tmp_path / "r", epochs=2, seed=1, **kw)
    assert "unfinished run with other settings; starting anew" in capsys.readouterr().err
    assert s["epochs_run"] == 2 and [r["epoch"] for r in _log(tmp_path / "r")] == [1, 2]
