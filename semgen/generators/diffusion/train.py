"""DDPM noise-prediction training with EMA, checkpoints and resume, on ``accelerate``.

The same call runs on a CPU, one GPU with mixed precision, or several GPUs under
``accelerate launch``: ``device`` and ``mixed_precision`` resolve through :mod:`semgen.devices`
(``auto``: the first GPU with bf16 autocast if there is one, else the CPU in fp32). Batches are drawn from an RNG seeded by (seed, step, process), so a run
resumed from a checkpoint draws exactly the batches it would have drawn without the interruption.

Layout of MODEL_DIR during and after training::

    train_config.json         the arguments (a different configuration refuses to resume)
    train_log.jsonl           one line every ``log_every`` steps: step, loss, lr, steps/s
    checkpoints/checkpoint-N  the training state as data only (UNet, optimizer, LR schedule, EMA,
                              grad scaler): ``*.safetensors`` tensors + ``semgen_state.json``;
                              the last 2 kept
    model_index.json pipeline_semgen.py unet/ scheduler/ semgen_config.json   the EMA weights as a
                              loadable pipeline (see :mod:`.pipeline`),
                              rewritten at every checkpoint

Checkpoints are data, never code: a run folder may come from someone else, and unpickling a file
runs whatever it names (accelerate's ``save_state`` wrote the EMA as a pickle, loaded with
``weights_only=False``; issue 14). So semgen writes and reads its own checkpoint: tensors with
safetensors, everything else as JSON, and never opens a ``.pkl`` / ``.bin`` file in a run dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np

from ...compat import ensure_torchvision

ensure_torchvision()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pydantic import AfterValidator, BeforeValidator, Field  # noqa: E402

from ... import __version__  # noqa: E402
from ...configs import Config, Flag, Int, Number, PathStr, PositiveInt  # noqa: E402
from ...devices import Compute, compute  # noqa: E402
from ...errors import SemgenError  # noqa: E402
from ...imageio import write_bytes_atomic  # noqa: E402
from ...manifests import JsonlAppender, lock_dir  # noqa: E402
from .captions import REAL_STYLE, SIM_STYLE, drop_caption  # noqa: E402
from .data import load_training_set  # noqa: E402
from .model import build_unet, sampling_scheduler, train_scheduler, unet_config  # noqa: E402
from .pipeline import MODEL_FILES, load_pipeline, quiet_hf, replace_dir_contents, save_model  # noqa: E402
from .pipeline_semgen import (  # noqa: E402
    DEFAULT_TEXT_ENCODER,
    MAX_LENGTH,
    SemgenDiffusionPipeline,
    encode_prompt,
    load_text_encoder,
    load_tokenizer,
)

#: Arguments that may change between a run and its resumption.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "num_threads", "progress", "command", "device")


#: Largest --resolution: a UNet's activations grow with its square (100000 px took 23 GB, then the OOM killer).
MAX_RESOLUTION = 1024


def _check(ok, phrase: str):
    """A validator keeping the messages these flags always had (``--lr must be a positive number``)."""
    def check(v):
        if not ok(v):
            raise ValueError(phrase)
        return v
    return AfterValidator(check)


def _pairs(v):
    """``[(DIR, WEIGHT)]`` or ``DIR[=WEIGHT]`` strings -> ``((DIR, WEIGHT), ...)``."""
    from .data import parse_data_arg

    items = [v] if isinstance(v, (str, os.PathLike)) else v
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("must be one or more dataset dirs")
    out = []
    for x in items:
        if isinstance(x, (list, tuple)) and len(x) == 2 and isinstance(x[0], (str, os.PathLike)) \
                and isinstance(x[1], (int, float)) and not isinstance(x[1], bool):
            out.append((os.fspath(x[0]), x[1]))
        elif isinstance(x, (str, os.PathLike)):
            try:
                out.append(parse_data_arg(os.fspath(x)))
            except SemgenError as e:
                raise ValueError(str(e)) from None
        else:
            raise ValueError("must be (DIR, WEIGHT) pairs or DIR[=WEIGHT]")
    return tuple(out)


def _probability(v):
    return 0.0 <= v <= 1.0


class TrainConfig(Config):
    """The settings of ``semgen diffuse train`` (a :class:`~semgen.configs.Config`).

    What decides the model is recorded as :meth:`identity` in the run's ``train_config.json``
    (field order and values as given: an int stays an int), so a run resumes only with the same
    settings; :data:`RESUMABLE_CHANGES` may differ.

    Examples
    --------
    >>> cfg = TrainConfig(data=["data/train=2"], out="models/m", steps=10)
    >>> cfg.data, cfg.lr
    ((('data/train', 2.0),), 0.0003)
    >>> TrainConfig(data=["d"], out="m", ema_decay=1.5)
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: --ema-decay must be in [0, 1), got 1.5 (TrainConfig.ema_decay)
    """

    flags = {"data": "--data", "model": "--model-config", "p_drop": "--caption-dropout",
             "p_field": "caption field dropout", "mixed_precision": "--precision", "num_threads": "--threads",
             "progress": "--no-progress", "weight_decay": "weight decay", "extra": "extra"}

    data: Annotated[tuple, BeforeValidator(_pairs)]  # ((path, weight), ...)
    out: PathStr
    resolution: Annotated[Int, _check(lambda v: 0 < v <= MAX_RESOLUTION, f"must be in [1, {MAX_RESOLUTION}]")] = 128
    model: str = "small"
    steps: PositiveInt = 3000
    batch: PositiveInt = 8
    lr: Annotated[Number, _check(lambda v: v > 0, "must be a positive number")] = 3e-4
    warmup: Annotated[Int, Field(ge=0)] = 100
    weight_decay: Annotated[Number, Field(ge=0)] = 1e-2
    ema_decay: Annotated[Number, _check(lambda v: 0 <= v < 1, "must be in [0, 1)")] = 0.999
    p_drop: Annotated[Number, _check(_probability, "must be a probability in [0, 1]")] = 0.1
    p_field: Annotated[Number, _check(_probability, "must be a probability in [0, 1]")] = 0.25
    checkpoint_every: PositiveInt = 250
    log_every: PositiveInt = 10
    seed: Annotated[Int, Field(ge=0)] = 0
    #: ``--precision``: auto, fp32 (or ``no``), bf16, fp16; stored resolved (``no`` / ``bf16`` / ``fp16``),
    #: so a CPU run's configuration is what it was before the option existed
    mixed_precision: str = "auto"
    device: str = "auto"  #: ``--device``; may change when a run is resumed
    text_encoder: str = DEFAULT_TEXT_ENCODER
    max_length: PositiveInt = MAX_LENGTH
    init: Optional[PathStr] = None
    num_threads: Optional[Annotated[Int, Field(ge=0)]] = None
    progress: Flag = True
    command: str = ""
    extra: dict = {}

    def identity(self) -> dict:
        """What decides the model (``train_config.json``): every field but :data:`RESUMABLE_CHANGES`
        and ``out``, with the data and the init as absolute paths."""
        d = self.model_dump()
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


STATE_FORMAT = 1  #: version of the checkpoint layout below (``semgen_state.json`` "format")


def _checkpoints(ckdir: Path) -> list[tuple[int, Path]]:
    """Finished checkpoints (those with ``semgen_step.json``), newest first."""
    found = []
    if ckdir.is_dir():
        for p in ckdir.iterdir():
            if p.name.startswith("checkpoint-") and (p / "semgen_step.json").exists():
                try:
                    found.append((int(json.loads((p / "semgen_step.json").read_text())["step"]), p))
                except (ValueError, KeyError, TypeError, OSError):
                    continue
    return sorted(found, key=lambda t: -t[0])


def _latest_checkpoint(ckdir: Path) -> tuple[Path | None, int]:
    found = _checkpoints(ckdir)
    return (found[0][1], found[0][0]) if found else (None, 0)


def _tensors_for_file(d: dict) -> dict:
    """CPU, contiguous, unshared copies: what ``safetensors`` can write."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in d.items()}


def _save_state(accelerator, unet, opt, lr_sched, ema, folder: Path, step: int) -> None:
    """Write the whole training state into ``folder`` as safetensors + JSON (main process only).

    ``model.safetensors`` (UNet), ``ema.safetensors`` (EMA shadow weights, ``shadow.NNNNN``),
    ``optimizer.safetensors`` (per-parameter tensors, ``state.P.NAME``) and ``semgen_state.json``
    (the rest: EMA counters, optimizer param groups and scalar state, LR schedule, grad scaler).
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(_tensors_for_file(accelerator.unwrap_model(unet).state_dict()), str(folder / "model.safetensors"))
    ema_sd = ema.state_dict()
    save_file(_tensors_for_file({f"shadow.{i:05d}": t for i, t in enumerate(ema_sd["shadow_params"])}),
              str(folder / "ema.safetensors"))
    opt_sd = opt.state_dict()
    opt_tensors, opt_scalars = {}, {}
    for pid, st in opt_sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                opt_tensors[f"state.{pid}.{name}"] = v
            else:
                opt_scalars.setdefault(str(pid), {})[name] = v
    save_file(_tensors_for_file(opt_tensors), str(folder / "optimizer.safetensors"))
    scaler = getattr(accelerator, "scaler", None)
    meta = {
        "format": STATE_FORMAT, "step": int(step),
        "ema": {k: v for k, v in ema_sd.items() if k != "shadow_params"}, "ema_params": len(ema_sd["shadow_params"]),
        "optimizer": {"param_groups": opt_sd["param_groups"], "scalars": opt_scalars},
        "scheduler": lr_sched.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    (folder / "semgen_state.json").write_text(json.dumps(meta, indent=1) + "\n")


def _read_state(folder: Path) -> dict:
    """Read (and check) a checkpoint written by :func:`_save_state`; raises on anything missing or torn.

    Reads only ``semgen_state.json`` and the three ``.safetensors`` files: nothing that could run code.
    """
    from safetensors.torch import load_file

    meta = json.loads((folder / "semgen_state.json").read_text())
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise ValueError(f"semgen_state.json format {meta.get('format') if isinstance(meta, dict) else '?'}, "
                         f"expected {STATE_FORMAT}")
    model = load_file(str(folder / "model.safetensors"))
    ema_t = load_file(str(folder / "ema.safetensors"))
    n = int(meta["ema_params"])
    shadow = [ema_t[f"shadow.{i:05d}"] for i in range(n)]
    opt_t = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict] = {}
    for key, v in opt_t.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for pid, scalars in meta["optimizer"]["scalars"].items():
        state.setdefault(int(pid), {}).update(scalars)
    groups = meta["optimizer"]["param_groups"]
    for g in groups:  # JSON made the tuples lists; torch keeps betas as a tuple
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return {"model": model, "ema": dict(meta["ema"], shadow_params=shadow),
            "optimizer": {"state": state, "param_groups": groups}, "scheduler": meta["scheduler"],
            "scaler": meta.get("scaler")}


def _stray_code_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".pkl", ".pickle", ".bin", ".pt", ".pth"))


def _resume(accelerator, unet, opt, lr_sched, ema, ckdir: Path) -> tuple[Path | None, int]:
    """Load the newest loadable checkpoint of ``ckdir`` into the training objects.

    A checkpoint that cannot be read (torn by a crash or a full disk, or in the old pickle-based
    layout) is skipped with a warning for the one before it. Pickle-like files in a checkpoint
    (``*.pkl``, ``*.bin``, ...) are never opened, only reported. Raises :class:`SemgenError` when
    checkpoints exist but none is loadable (training from scratch would overwrite them).
    """
    found = _checkpoints(ckdir)
    problems = []
    for step, folder in found:
        try:
            st = _read_state(folder)
        except FileNotFoundError as e:
            why = ("an old pickle-based checkpoint, which semgen no longer loads (a pickle can run code)"
                   if not (folder / "semgen_state.json").exists() else f"incomplete ({Path(e.filename).name} missing)")
            problems.append(f"{folder.name}: {why}")
            continue
        except Exception as e:  # torn safetensors / JSON: the previous checkpoint is still good
            problems.append(f"{folder.name}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        for p in problems:
            _warn(f"skipping checkpoint {p}; resuming from {folder.name}")
        stray = _stray_code_files(folder)
        if stray:
            _warn(f"ignoring {', '.join(stray)} in {folder}: semgen never loads pickle files from a run dir")
        accelerator.unwrap_model(unet).load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        lr_sched.load_state_dict(st["scheduler"])
        if st["scaler"] is not None and getattr(accelerator, "scaler", None) is not None:
            accelerator.scaler.load_state_dict(st["scaler"])
        ema.load_state_dict(st["ema"])
        ema.to(accelerator.device)
        return folder, step
    if found:
        raise SemgenError(f"no checkpoint in {ckdir} can be resumed ({'; '.join(problems)}); "
                          "use another --out (--init can start it from a finished model folder)")
    return None, 0


class CaptionEmbeddings:
    """Caption -> (token embeddings, attention mask) of the frozen text encoder, each caption encoded once.

    Training draws the same captions again and again; the embeddings are kept on the CPU.
    """

    def __init__(self, ref: str = DEFAULT_TEXT_ENCODER, max_length: int = MAX_LENGTH):
        try:
            with quiet_hf():
                self.tokenizer, self.text_encoder = load_tokenizer(ref), load_text_encoder(ref)
        except OSError as e:
            raise SemgenError(f"cannot load the text encoder: {e}") from None
        self.max_length = int(max_length)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        todo = sorted({c for c in captions if c not in self._cache})
        if todo:
            emb, mask = encode_prompt(self.tokenizer, self.text_encoder, todo, self.max_length)
            self._cache.update((c, (e, m)) for c, e, m in zip(todo, emb.cpu(), mask.cpu()))
        return (torch.stack([self._cache[c][0] for c in captions]),
                torch.stack([self._cache[c][1] for c in captions]))


def _warn(msg: str) -> None:
    print(f"semgen: warning: {msg}", file=sys.stderr)


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


def resolve_compute(cfg: TrainConfig) -> tuple[Compute, TrainConfig]:
    """Resolve ``cfg.device`` / ``cfg.mixed_precision`` (:func:`semgen.devices.compute`); returns the
    compute and ``cfg`` with them resolved: the device as ``cuda:N`` / ``cpu``, the precision in
    accelerate's names (what ``train_config.json`` records)."""
    comp = compute(cfg.device, {"no": "fp32"}.get(cfg.mixed_precision, cfg.mixed_precision))
    return comp, cfg.model_copy(update={"device": str(comp.device), "mixed_precision": comp.accelerate_precision})


def _check_inputs(cfg: TrainConfig) -> Path:
    """``cfg.out`` as a Path, after one-line errors for an --out that is a file or missing data."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise SemgenError(f"--out {out} exists and is not a directory")
    for path, _ in cfg.data:
        if not Path(path).exists():
            raise SemgenError(f"training data {path} does not exist")
    return out


def train(cfg: TrainConfig) -> dict:
    """Train (or resume training of) a model folder; see :func:`_train`. One run per folder at a time."""
    out = _check_inputs(cfg)
    resolve_compute(cfg)  # --device cuda without a GPU: one line, before anything is written
    # Two runs in one folder would interleave checkpoints and the log (issue 14). Under
    # ``accelerate launch`` every process of the one run calls this: only global rank 0 locks.
    main = int(os.environ.get("RANK", "0") or 0) == 0
    with lock_dir(out) if main else contextlib.nullcontext():
        return _train(cfg)


def _train(cfg: TrainConfig) -> dict:
    """Train (or resume training of) a model folder; returns a summary dict.

    Raises :class:`SemgenError` for bad data or when ``cfg.out`` holds a run with another configuration.
    """
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from ...progress import progress_bar

    out = _check_inputs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    unet_config(cfg.model, cfg.resolution)  # validates model / resolution before loading data
    comp, cfg = resolve_compute(cfg)

    cfg_path = out / "train_config.json"
    ident = cfg.identity()
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != ident:
            diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
            raise SemgenError(f"{out} holds a training run with another configuration (differs in: "
                              f"{', '.join(diff)}); use another --out or the same arguments to resume")
    if comp.device.type == "cuda" and "WORLD_SIZE" not in os.environ:
        torch.cuda.set_device(comp.device)  # one process: accelerate uses the current CUDA device
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=comp.device.type == "cpu")
    main = accelerator.is_main_process
    ts = load_training_set(cfg.data, cfg.resolution, progress=cfg.progress and main)
    if main:  # only once the data loaded: bad data leaves no configuration behind to conflict with
        write_bytes_atomic(cfg_path, (json.dumps(ident, indent=2, sort_keys=True) + "\n").encode())
    styles = sorted({p[0] for p in ts.parts} & {REAL_STYLE, SIM_STYLE})
    te = CaptionEmbeddings(cfg.text_encoder, cfg.max_length)

    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg.model, cfg.resolution)
    if cfg.init:  # fine-tune: start from another model folder's (EMA) weights
        src = load_pipeline(cfg.init).unet
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

    ckdir = out / "checkpoints"
    ck, step = _resume(accelerator, unet, opt, lr_sched, ema, ckdir)
    if ck is not None:
        if main:
            print(f"resuming from {ck} (step {step})", file=sys.stderr)
    if step >= cfg.steps:
        if main:
            print(f"{out} is already trained to step {step} (>= --steps {cfg.steps})", file=sys.stderr)
        if not (out / "model_index.json").exists():
            _save_pipeline(accelerator, unet, ema, noise_sched, te, cfg, out, step, styles, ts)
        return {"model_dir": str(out), "step": step, "trained_now": 0}

    log = JsonlAppender(out / "train_log.jsonl") if main else None
    bar = progress_bar(total=cfg.steps, initial=step, desc="diffuse train", unit="step",
                       enabled=cfg.progress and main)
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
            emb, mask = te(caps)
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
                _checkpoint(accelerator, ckdir, step, (unet, opt, lr_sched, ema))
                _save_pipeline(accelerator, unet, ema, noise_sched, te, cfg, out, step, styles, ts)
    finally:
        bar.close()
        if log is not None:
            log.close()
    elapsed = time.perf_counter() - t_start
    return {"model_dir": str(out), "step": step, "trained_now": step - s_start,
            "steps_per_s": (step - s_start) / max(elapsed, 1e-9),
            "final_loss": float(np.mean(losses[-50:])) if losses else None}


def _checkpoint(accelerator, ckdir: Path, step: int, objs: tuple, keep: int = 2) -> None:
    """Save the training state (:func:`_save_state`) to checkpoint-N through a temporary folder and a rename."""
    accelerator.wait_for_everyone()
    tmp = ckdir / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        _save_state(accelerator, *objs, tmp, step)
        (tmp / "semgen_step.json").write_text(json.dumps({"step": step}) + "\n")
        final = ckdir / f"checkpoint-{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        # only semgen-layout checkpoints count: a foreign one must not push out a loadable one
        done = sorted((p for p in ckdir.glob("checkpoint-*")
                       if (p / "semgen_step.json").exists() and (p / "semgen_state.json").exists()),
                      key=lambda p: int(p.name.split("-")[1]))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _save_pipeline(accelerator, unet, ema, noise_sched, te: CaptionEmbeddings, cfg: TrainConfig, out: Path,
                   step: int, styles: list[str], ts) -> None:
    """Write the EMA weights as a loadable pipeline into ``out`` (replacing the previous one), with
    the DDIM sampler of the training schedule (what ``semgen diffuse sample`` uses by default)."""
    if not accelerator.is_main_process:
        return
    from diffusers import UNet2DConditionModel

    base = accelerator.unwrap_model(unet)
    ema_unet = UNet2DConditionModel.from_config(base.config)
    ema.copy_to(ema_unet.parameters())
    pipe = SemgenDiffusionPipeline(ema_unet, sampling_scheduler(noise_sched.config, "ddim"),
                                   text_encoder=te.text_encoder, tokenizer=te.tokenizer,
                                   text_encoder_ref=cfg.text_encoder, max_length=cfg.max_length)
    tmp = out / f".tmp-pipeline-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(pipe, tmp, fp16=bool(cfg.extra.get("fp16_weights")), semgen_config={
        "model_config": cfg.model, "resolution": cfg.resolution, "styles": styles, "trained_steps": step,
        "train_command": cfg.command, "data": ts.sources, "batch": cfg.batch, "lr": cfg.lr, "seed": cfg.seed,
        "caption_format": 1, "semgen_version": __version__, "init": cfg.init,
        # where it was trained (under accelerate launch: the main process's device)
        "device": str(accelerator.device), "precision": {"no": "fp32"}.get(cfg.mixed_precision, cfg.mixed_precision),
    })
    replace_dir_contents(tmp, out, MODEL_FILES)
    shutil.rmtree(tmp, ignore_errors=True)
