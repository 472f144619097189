"""--device / --precision (semgen.devices): resolution, CPU no-ops, one-line errors, the device recorded.

CPU only: CUDA is mocked where a test needs torch to believe in a GPU (nothing then runs on it).
"""

from __future__ import annotations

import json

import pytest
import torch

from semgen.cli import main
from semgen.devices import compute, resolve_device, resolve_precision
from semgen.errors import SemgenError

from classifier_synth import make_dataset


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch believes in one GPU with bf16 (only for resolving names; nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")


def test_auto_is_the_cpu_without_cuda_and_the_gpu_with_it(no_cuda, monkeypatch):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(SemgenError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_is_one_clear_error(no_cuda, spec):
    with pytest.raises(SemgenError) as e:
        resolve_device(spec)
    msg = str(e.value)
    assert "\n" not in msg and f"--device {spec}: no CUDA GPU" in msg and "--device cpu" in msg


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "mps:0", ""])
def test_unknown_devices_are_refused(spec):
    with pytest.raises(SemgenError, match="--device must be auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


def test_precision_auto_is_fp32_on_cpu_and_bf16_or_fp16_on_a_gpu(fake_cuda, monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_precision("auto", cpu) == resolve_precision("fp32", cpu) == "fp32"
    for p in ("bf16", "fp16"):  # the CPU stays fp32: its results keep their bytes
        with pytest.raises(SemgenError, match=f"--precision {p} needs a GPU"):
            resolve_precision(p, cpu)
    with pytest.raises(SemgenError, match="--precision must be one of"):
        resolve_precision("fp8", cpu)
    assert resolve_precision("auto", gpu) == "bf16"
    assert resolve_precision("fp16", gpu) == "fp16" and resolve_precision("fp32", gpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", gpu) == "fp16"  # an older GPU: fp16 with a gradient scaler
    with pytest.raises(SemgenError, match="does not support bfloat16"):
        resolve_precision("bf16", gpu)


def test_amp_settings_on_a_gpu(fake_cuda):
    c = compute("cuda", "fp16")
    assert c.amp_dtype is torch.float16 and c.accelerate_precision == "fp16"
    assert compute("cuda", "auto").amp_dtype is torch.bfloat16
    assert compute("cuda", "fp32").amp_dtype is None and compute("cuda", "fp32").accelerate_precision == "no"
    assert compute("cuda").record() == {"device": "cuda:0", "device_name": "Fake GPU", "precision": "bf16"}


def test_autocast_and_scaler_are_no_ops_on_the_cpu(no_cuda):
    c = compute("auto", "auto")
    assert c.device == torch.device("cpu") and c.precision == "fp32"
    assert c.grad_scaler() is None and c.amp_dtype is None and c.accelerate_precision == "no"
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 16, generator=g), torch.randn(16, 16, generator=g)
    conv = torch.nn.Conv2d(1, 4, 3)
    x = torch.randn(2, 1, 8, 8, generator=g)
    with c.autocast():
        inside, conv_in = a @ b, conv(x)
    assert inside.dtype == torch.float32 and torch.equal(inside, a @ b)
    assert torch.equal(conv_in, conv(x))
    assert c.record()["device"] == "cpu" and c.record()["precision"] == "fp32"


def test_optimizer_step_is_the_plain_step_and_refuses_divergence():
    from semgen.classifier.train import optimizer_step, warmup_cosine

    def setup():
        torch.manual_seed(0)
        m = torch.nn.Linear(4, 3)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
        return m, opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(10, 2))

    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    m1, o1, s1 = setup()
    m2, o2, s2 = setup()
    for _ in range(3):
        optimizer_step(m1(x).square().mean(), o1, s1)
        loss = m2(x).square().mean()
        o2.zero_grad(set_to_none=True)
        loss.backward()
        o2.step()
        s2.step()
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    assert s1.last_epoch == s2.last_epoch == 3
    with pytest.raises(SemgenError, match=r"^pretraining diverged \(loss nan\) at step 7; lower --lr$"):
        optimizer_step(torch.tensor(float("nan")), o1, s1, what="pretraining", at="step 7")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dev")
    make_dataset(root / "train", n_per_class=6, seed=0)
    return root


FAST = dict(arch="mobilenetv3_small_050", size=32, batch_size=16, num_threads=1, progress=False, epochs=1,
            min_epoch_images=32)


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_train_evaluate_predict_record_the_device(data, tmp_path, no_cuda, device):
    from semgen.classifier import evaluate_run, train_classifier
    from semgen.classifier.predict import Predictor

    run = tmp_path / "run"
    train_classifier(data / "train", run, device=device, **FAST)
    conf = json.loads((run / "config.json").read_text())
    assert conf["device"] == "cpu" and conf["precision"] == "fp32" and conf["device_name"]
    assert "device" not in conf["request"]  # the same run on any device
    m = evaluate_run(run, data / "train", n_boot=5, write=False, device=device)
    assert m["compute"]["device"] == "cpu"
    assert Predictor(run, device=device).compute.device == torch.device("cpu")


def test_pretrain_records_the_device(tmp_path, no_cuda):
    from semgen.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(arch="mobilenetv3_small_050", generators=["ler", "bridge"], size=32, batch_size=4,
                         images=8, seed=1)
    pretrain(tmp_path / "pt", cfg, workers=0, threads=1, progress=False, device="auto")
    conf = json.loads((tmp_path / "pt" / "config.json").read_text())
    assert conf["device"] == "cpu" and conf["precision"] == "fp32"
    state = next((tmp_path / "pt").glob("state-*/state.json"))
    assert json.loads(state.read_text())["device"] == "cpu" and "grad_scaler" not in json.loads(state.read_text())


@pytest.mark.parametrize("argv", [
    ["train", "--data", "{d}", "--out", "{t}/r", "--device", "cuda"],
    ["evaluate", "{t}/none", "--data", "{d}", "--device", "cuda"],
    ["predict", "{t}/none", "{t}/x.png", "--device", "cuda:0"],
    ["pretrain", "--out", "{t}/pt", "--device", "cuda"],
    ["diffuse", "train", "--data", "{d}", "--out", "{t}/m", "--device", "cuda"],
    ["diffuse", "sample", "--class", "bridge", "--n", "2", "--out", "{t}/s", "--device", "cuda"],
    ["diffuse", "refine", "--input", "{d}", "--out", "{t}/rf", "--device", "cuda"],
])
def test_cli_device_cuda_without_a_gpu_is_a_one_line_error(argv, data, tmp_path, no_cuda, capsys):
    rc = main([a.format(d=data / "train", t=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and err.startswith("semgen: error: --device cuda") and "no CUDA GPU" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "rf").exists()  # nothing written


def test_cli_precision_16_bit_on_the_cpu_is_a_one_line_error(data, tmp_path, no_cuda, capsys):
    rc = main(["train", "--data", str(data / "train"), "--out", str(tmp_path / "r"), "--precision", "bf16"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "semgen: error: --precision bf16 needs a GPU (--device cuda); on the CPU semgen computes in fp32"


def test_diffusion_train_and_sample_record_the_device(tmp_path, no_cuda):
    from semgen.generators.diffusion.sample import sample
    from semgen.generators.diffusion.train import TrainConfig, train
    from test_diffusion_pipeline import _make_dataset

    data = _make_dataset(tmp_path / "data", n=4)
    cfg = TrainConfig(data=[(str(data), 1.0)], out=str(tmp_path / "m"), resolution=32, model="tiny", steps=1,
                      batch=2, warmup=0, p_field=0.0, progress=False, device="auto")
    train(cfg)
    sc = json.loads((tmp_path / "m" / "semgen_config.json").read_text())
    assert sc["device"] == "cpu" and sc["precision"] == "fp32"
    ident = json.loads((tmp_path / "m" / "train_config.json").read_text())
    # stored resolved, as CPU runs stored it before the option: their resumes still match
    assert ident["mixed_precision"] == "no" and "device" not in ident
    s = sample(out=tmp_path / "s", n=1, label="bridge", model=tmp_path / "m", steps=1, progress=False, device="cpu")
    assert s["written"] == 1
    info = json.loads((tmp_path / "s" / "dataset.json").read_text())
    assert info["compute"]["device"] == "cpu" and info["compute"]["precision"] == "fp32"


def test_diffuse_train_keeps_the_old_mixed_precision_spelling():
    from semgen.cli import build_parser

    p = build_parser()
    base = ["diffuse", "train", "--data", "d", "--out", "o"]
    assert p.parse_args(base).precision == "auto" and p.parse_args(base).device == "auto"
    assert p.parse_args(base + ["--mixed-precision", "no"]).precision == "no"
    assert p.parse_args(base + ["--precision", "bf16"]).precision == "bf16"


def test_qat_trains_in_fp32_only(data, tmp_path, fake_cuda):
    from semgen.classifier import train_classifier

    # refused before any image loads or anything moves to the (mocked) GPU
    with pytest.raises(SemgenError, match=r"^--qat trains in fp32 \(fake quantisation\); drop --precision bf16"):
        train_classifier(data / "train", tmp_path / "q", qat=True, device="cuda", precision="bf16", **FAST)
    assert not (tmp_path / "q").exists()
