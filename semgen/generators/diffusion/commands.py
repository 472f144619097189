"""CLI: ``semgen diffuse train | sample | refine``. Heavy imports happen only when a command runs."""

from __future__ import annotations

import argparse
import json

from ...cli import long_running


def register(sub) -> None:
    from ...devices import add_device_arguments  # light: torch loads when a command runs
    from ...parallel import add_executor_args
    from .captions import NEGATIVES  # light: numpy and the taxonomy

    p = sub.add_parser("diffuse", help="text-conditioned diffusion: train a model, sample, refine images")
    dsub = p.add_subparsers(dest="diffuse_command", metavar="ACTION")
    dsub.required = True

    t = long_running(dsub.add_parser("train", help="train (or resume training) a diffusion model on dataset dirs"))
    t.add_argument("--data", action="append", required=True, metavar="DIR[=WEIGHT]",
                   help="dataset dir or ImageFolder tree, optionally with a sampling weight; repeatable")
    t.add_argument("--out", "-o", required=True, metavar="MODEL_DIR",
                   help="model folder (re-run the same command to resume)")
    t.add_argument("--resolution", type=int, default=128, metavar="PX", help="image side the model is trained at")
    t.add_argument("--model-config", default="small", metavar="SIZE", help="UNet size: tiny, small (CPU default), base (GPU)")
    t.add_argument("--steps", type=int, default=3000, help="training steps in all (resumed ones included)")
    t.add_argument("--batch", type=int, default=8, help="batch size")
    t.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (AdamW)")
    t.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up steps")
    t.add_argument("--ema-decay", type=float, default=0.999, help="decay of the exported EMA weights")
    t.add_argument("--caption-dropout", type=float, default=0.1, help="probability of the empty caption (CFG)")
    t.add_argument("--checkpoint-every", type=int, default=250, metavar="STEPS",
                   help="steps between resumable checkpoints")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, noise and batches")
    add_device_arguments(t)
    # the option's earlier name, kept so that existing commands run (no = fp32); --precision is the one documented
    t.add_argument("--mixed-precision", dest="precision", choices=("no", "fp16", "bf16"), default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    t.add_argument("--fp16-weights", action="store_true", help="store the exported UNet in fp16 (half the size)")
    t.add_argument("--init", default=None, metavar="MODEL_DIR", help="start from this model's weights (fine-tune)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    t.set_defaults(func=_train)

    s = long_running(dsub.add_parser("sample", help="generate images from a prompt or a class into a dataset dir"))
    s.add_argument("--model", default=None, metavar="MODEL_DIR", help="model folder (default: the bundled model)")
    s.add_argument("--prompt", default=None, help="text prompt (default: the class's caption)")
    s.add_argument("--class", dest="label", default=None, help="class of the images (and the prompt if none)")
    s.add_argument("--n", type=int, required=True, help="number of images (the whole run; resumes)")
    s.add_argument("--out", "-o", required=True, metavar="DIR", help="dataset dir to write")
    s.add_argument("--steps", type=int, default=25, help="denoising steps")
    s.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    s.add_argument("--scheduler", choices=("ddim", "dpm"), default="ddim", help="sampling scheduler")
    s.add_argument("--seed", type=int, default=0, help="master seed (per-image seeds derive from it)")
    s.add_argument("--batch", type=int, default=8, help="images per denoising batch")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_device_arguments(s)
    add_executor_args(s)
    s.set_defaults(func=_sample)

    r = long_running(dsub.add_parser("refine",
                                     help="SDEdit: move images toward the real look, keeping labels and masks"))
    r.add_argument("--model", default=None, metavar="MODEL_DIR", help="model folder (default: the bundled model)")
    r.add_argument("--input", "-i", required=True, metavar="DIR", help="dataset dir to refine")
    r.add_argument("--out", "-o", required=True, metavar="DIR", help="new dataset dir for the refined images")
    r.add_argument("--strength", type=float, default=0.3, help="noise level in (0, 1]; low keeps geometry")
    r.add_argument("--steps", type=int, default=25, help="denoising steps of a full-strength run (scaled by --strength)")
    r.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    r.add_argument("--negative", choices=NEGATIVES, default="empty",
                   help="guide away from the empty caption (plain CFG) or from the record's own caption "
                        "in the simulated style (pushes along the style direction only)")
    r.add_argument("--scheduler", choices=("ddim", "dpm"), default="ddim", help="sampling scheduler")
    r.add_argument("--seed", type=int, default=0, help="master seed (per-image seeds derive from it)")
    r.add_argument("--batch", type=int, default=8, help="images per denoising batch")
    r.add_argument("--limit", type=int, default=None, metavar="N", help="refine only the first N records")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_device_arguments(r)
    add_executor_args(r)
    r.set_defaults(func=_refine)


def _threads(n) -> None:
    if n:
        import torch

        torch.set_num_threads(int(n))


def _train(args) -> int:
    from ...manifests import current_command
    from .data import parse_data_arg
    from .train import TrainConfig, train

    _threads(args.threads)
    cfg = TrainConfig(
        data=[parse_data_arg(d) for d in args.data], out=args.out, resolution=args.resolution,
        model=args.model_config, steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
        ema_decay=args.ema_decay, p_drop=args.caption_dropout, checkpoint_every=args.checkpoint_every,
        seed=args.seed, mixed_precision=args.precision, device=args.device, num_threads=args.threads,
        init=args.init, progress=not args.no_progress, command=current_command(), extra={"fp16_weights": bool(args.fp16_weights)},
    )
    s = train(cfg)
    msg = f"{s['model_dir']}: trained to step {s['step']} ({s['trained_now']} now"
    if s.get("steps_per_s"):
        msg += f", {s['steps_per_s']:.2f} steps/s, loss {s['final_loss']:.4f}"
    print(msg + ")")
    return 0


def _sample(args) -> int:
    from .sample import sample

    from ...parallel import backend_from_args

    _threads(args.threads)
    with backend_from_args(args) as backend:
        s = sample(out=args.out, n=args.n, prompt=args.prompt, label=args.label, model=args.model, steps=args.steps,
                   guidance=args.guidance, seed=args.seed, batch=args.batch, scheduler=args.scheduler,
                   progress=not args.no_progress, device=args.device, precision=args.precision, backend=backend)
    print(f"{s['out']}: wrote {s['written']} {s['label']} images ({s['skipped']} already there); "
          f"prompt: {s['prompt']!r}")
    return 0


def _refine(args) -> int:
    from .refine import refine

    from ...parallel import backend_from_args

    _threads(args.threads)
    with backend_from_args(args) as backend:
        s = refine(input=args.input, out=args.out, strength=args.strength, model=args.model, steps=args.steps,
                   guidance=args.guidance, seed=args.seed, batch=args.batch, scheduler=args.scheduler,
                   negative=args.negative, limit=args.limit, progress=not args.no_progress,
                   device=args.device, precision=args.precision, backend=backend)
    print(f"{s['out']}: refined {s['written']} images ({s['skipped']} already there)")
    print("mask agreement: " + json.dumps(s["summary"]))
    return 0
