"""DDPM noise-prediction training with EMA, checkpoints and resume, on ``accelerate``.

The same call runs on a CPU, one GPU with mixed precision, or several GPUs under
``accelerate launch``. Batches are drawn from an RNG seeded by (seed, step, process), so a run
resumed from a checkpoint draws exactly the batches it would have drawn without the interruption.

Layout of MODEL_DIR during and after training::

    train_config.json         the arguments (a different configuration refuses to resume)
    train_log.jsonl           one line every ``log_every`` steps: step, loss, lr, steps/s
    checkpoints/checkpoint-N  accelerate state (UNet, optimizer, LR schedule, EMA); the last 2 kept
    model_index.json unet/ scheduler/ semgen_config.json   the EMA weights as a loadable pipeline,
                              rewritten at every checkpoint
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...compat import ensure_torchvision

ensure_torchvision()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ... import __version__  # noqa: E402
from ...errors import SemgenError  # noqa: E402
from ...imageio import write_bytes_atomic  # noqa: E402
from ...manifests import JsonlAppender  # noqa: E402
from .captions import REAL_STYLE, SIM_STYLE, drop_caption  # noqa: E402
from .data import load_training_set  # noqa: E402
from .model import build_unet, train_scheduler, unet_config  # noqa: E402
from .pipeline import SemgenDiffusionPipeline, replace_dir_contents  # noqa: E402
from .text_encoder import DEFAULT_TEXT_ENCODER, MAX_LENGTH, get_text_encoder  # noqa: E402

#: Arguments that may change between a run and its resumption.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "num_threads", "progress", "command")


@dataclass
class TrainConfig:
    data: list  # [(path, weight)]
    out: str
    resolution: int = 128
    model: str = "small"
    steps: int = 3000
    batch: int = 8
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 1e-2
    ema_decay: float = 0.999
    p_drop: float = 0.1
    p_field: float = 0.25
    checkpoint_every: int = 250
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "no"
    text_encoder: str = DEFAULT_TEXT_ENCODER
    max_length: int = MAX_LENGTH
    init: str | None = None
    num_threads: int | None = None
    progress: bool = True
    command: str = ""
    extra: dict = field(default_factory=dict)

    def identity(self) -> dict:
        d = asdict(self)
        for k in RESUMABLE_CHANGES:
            d.pop(k, None)
        d["data"] = [[str(Path(p).resolve()), float(w)] for p, w in self.data]
        d.pop("out")
        if self.init:
            d["init"] = str(Path(self.init).resolve())
        return d


def denoising_loss(unet, scheduler, x0: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """The DDPM epsilon-prediction MSE for clean images ``x0`` in [-1, 1] (noise drawn on CPU)."""
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(x0.device)
    xt = scheduler.add_noise(x0, noise, t)
    pred = unet(xt, t, encoder_hidden_states=emb, encoder_attention_mask=mask).sample
    return F.mse_loss(pred.float(), noise.float())


def _latest_checkpoint(ckdir: Path) -> tuple[Path | None, int]:
    best, step = None, 0
    if ckdir.is_dir():
        for p in ckdir.iterdir():
            if p.name.startswith("checkpoint-") and (p / "semgen_step.json").exists():
                try:
                    s = int(json.loads((p / "semgen_step.json").read_text())["step"])
                except (ValueError, KeyError, OSError):
                    continue
                if s > step:
                    best, step = p, s
    return best, step


def _batch(ts, step: int, cfg: TrainConfig, proc: int):
    """The batch of one step: images in [-1, 1] (flipped), training captions, a torch generator."""
    rng = np.random.default_rng([cfg.seed, step, proc])
    idx = rng.choice(len(ts), size=cfg.batch, replace=True, p=ts.weights)
    imgs = ts.images[idx].astype(np.float32) / 127.5 - 1.0
    hflip = rng.random(cfg.batch) < 0.5
    vflip = (rng.random(cfg.batch) < 0.5) & ts.vflip_ok[idx]
    imgs[hflip] = imgs[hflip][:, :, ::-1]
    imgs[vflip] = imgs[vflip][:, ::-1, :]
    caps = [drop_caption(ts.parts[i], rng, p_drop=cfg.p_drop, p_field=cfg.p_field) for i in idx]
    gen = torch.Generator("cpu").manual_seed(int(rng.integers(0, 2**63 - 1)))
    return torch.from_numpy(np.ascontiguousarray(imgs))[:, None], caps, gen


def train(cfg: TrainConfig) -> dict:
    """Train (or resume training of) a model folder; returns a summary dict.

    Raises :class:`SemgenError` for bad data or when ``cfg.out`` holds a run with another configuration.
    """
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise SemgenError(f"--out {out} exists and is not a directory")
    for path, _ in cfg.data:
        if not Path(path).exists():
            raise SemgenError(f"training data {path} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    unet_config(cfg.model, cfg.resolution)  # validates model / resolution before loading data
    if cfg.steps < 1 or cfg.batch < 1 or cfg.checkpoint_every < 1:
        raise SemgenError("--steps, --batch and --checkpoint-every must be >= 1")

    cfg_path = out / "train_config.json"
    ident = cfg.identity()
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != ident:
            diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
            raise SemgenError(f"{out} holds a training run with another configuration (differs in: "
                              f"{', '.join(diff)}); use another --out or the same arguments to resume")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    main = accelerator.is_main_process
    ts = load_training_set(cfg.data, cfg.resolution, progress=cfg.progress and main and sys.stderr.isatty())
    if main:  # only once the data loaded: bad data leaves no configuration behind to conflict with
        write_bytes_atomic(cfg_path, (json.dumps(ident, indent=2, sort_keys=True) + "\n").encode())
    styles = sorted({p[0] for p in ts.parts} & {REAL_STYLE, SIM_STYLE})
    te = get_text_encoder(cfg.text_encoder, max_length=cfg.max_length)

    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg.model, cfg.resolution)
    if cfg.init:  # fine-tune: start from another model folder's (EMA) weights
        src = SemgenDiffusionPipeline.load(cfg.init).unet
        want = unet_config(cfg.model, cfg.resolution)
        if any(json.dumps(src.config.get(k)) != json.dumps(list(v) if isinstance(v, tuple) else v)
               for k, v in want.items()):
            raise SemgenError(f"--init {cfg.init} is a {src.config.block_out_channels} model at "
                              f"{src.config.sample_size} px; this run is --model-config {cfg.model} at {cfg.resolution}")
        unet.load_state_dict(src.state_dict())
    if accelerator.device.type == "cpu":
        unet = unet.to(memory_format=torch.channels_last)
    noise_sched = train_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=cfg.warmup * accelerator.num_processes)
    unet, opt, lr_sched = accelerator.prepare(unet, opt, lr_sched)
    ema = EMAModel(accelerator.unwrap_model(unet).parameters(), decay=cfg.ema_decay, use_ema_warmup=True,
                   power=3 / 4)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)

    ckdir = out / "checkpoints"
    ck, step = _latest_checkpoint(ckdir)
    if ck is not None:
        accelerator.load_state(str(ck))
        if main:
            print(f"resuming from {ck} (step {step})", file=sys.stderr)
    if step >= cfg.steps:
        if main:
            print(f"{out} is already trained to step {step} (>= --steps {cfg.steps})", file=sys.stderr)
        if not (out / "model_index.json").exists():
            _save_pipeline(accelerator, unet, ema, noise_sched, cfg, out, step, styles, ts)
        return {"model_dir": str(out), "step": step, "trained_now": 0}

    log = JsonlAppender(out / "train_log.jsonl") if main else None
    bar = tqdm(total=cfg.steps, initial=step, desc="diffuse train", unit="step",
               disable=not (cfg.progress and main and sys.stderr.isatty()))
    unet.train()
    t_start, s_start = time.perf_counter(), step
    losses: list[float] = []
    t_log = time.perf_counter()
    try:
        while step < cfg.steps:
            x0, caps, gen = _batch(ts, step, cfg, accelerator.process_index)
            x0 = x0.to(accelerator.device)
            if accelerator.device.type == "cpu":
                x0 = x0.contiguous(memory_format=torch.channels_last)
            emb, mask = te.encode(caps)
            emb, mask = emb.to(accelerator.device), mask.to(accelerator.device)
            with accelerator.autocast():
                loss = denoising_loss(unet, noise_sched, x0, emb, mask, gen)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            lr_sched.step()
            opt.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if main and (step % cfg.log_every == 0 or step == cfg.steps):
                now = time.perf_counter()
                n = min(len(losses), cfg.log_every)
                log.append({"step": step, "loss": round(float(np.mean(losses[-n:])), 6),
                            "lr": float(lr_sched.get_last_lr()[0]),
                            "steps_per_s": round(n / max(now - t_log, 1e-9), 4),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                t_log = now
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _checkpoint(accelerator, ckdir, step)
                _save_pipeline(accelerator, unet, ema, noise_sched, cfg, out, step, styles, ts)
    finally:
        bar.close()
        if log is not None:
            log.close()
    elapsed = time.perf_counter() - t_start
    return {"model_dir": str(out), "step": step, "trained_now": step - s_start,
            "steps_per_s": (step - s_start) / max(elapsed, 1e-9),
            "final_loss": float(np.mean(losses[-50:])) if losses else None}


def _checkpoint(accelerator, ckdir: Path, step: int, keep: int = 2) -> None:
    """Save the accelerate state to checkpoint-N through a temporary folder and a rename."""
    accelerator.wait_for_everyone()
    tmp = ckdir / f".tmp-checkpoint-{step}"
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / "semgen_step.json").write_text(json.dumps({"step": step}) + "\n")
        final = ckdir / f"checkpoint-{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        done = sorted((p for p in ckdir.glob("checkpoint-*") if (p / "semgen_step.json").exists()),
                      key=lambda p: int(p.name.split("-")[1]))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _save_pipeline(accelerator, unet, ema, noise_sched, cfg: TrainConfig, out: Path, step: int,
                   styles: list[str], ts) -> None:
    """Write the EMA weights as a loadable pipeline into ``out`` (replacing the previous one)."""
    if not accelerator.is_main_process:
        return
    from diffusers import UNet2DConditionModel

    base = accelerator.unwrap_model(unet)
    ema_unet = UNet2DConditionModel.from_config(base.config)
    ema.copy_to(ema_unet.parameters())
    pipe = SemgenDiffusionPipeline(ema_unet, noise_sched, text_encoder_ref=cfg.text_encoder,
                                   max_length=cfg.max_length)
    tmp = out / f".tmp-pipeline-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, fp16=bool(cfg.extra.get("fp16_weights")), semgen_config={
        "model_config": cfg.model, "resolution": cfg.resolution, "styles": styles, "trained_steps": step,
        "train_command": cfg.command, "data": ts.sources, "batch": cfg.batch, "lr": cfg.lr, "seed": cfg.seed,
        "caption_format": 1, "semgen_version": __version__, "init": cfg.init,
    })
    replace_dir_contents(tmp, out, ["unet", "scheduler", "model_index.json", "semgen_config.json"])
    shutil.rmtree(tmp, ignore_errors=True)
