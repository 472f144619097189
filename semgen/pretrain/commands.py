"""CLI: ``semgen pretrain``."""

from __future__ import annotations

import json

from ..cli import long_running


def register(sub) -> None:
    from ..classifier.registry import DEFAULT_ARCH, list_archs
    from ..devices import add_device_arguments

    p = sub.add_parser(
        "pretrain", help="pretrain a classifier backbone on procedural images streamed from workers",
        description="Pretrain on procedural images made on the fly, with labels and regression targets "
                    "derived from each image's generator parameters. Re-running the same command resumes. "
                    "Use the result with 'semgen train --init RUN_DIR'.")
    long_running(p)
    p.add_argument("--out", "-o", required=True, metavar="RUN_DIR", help="run dir (resumed if it exists)")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=list_archs(), metavar="NAME",
                   help=f"architecture; one of: {', '.join(list_archs())}")
    p.add_argument("--init", default="scratch", metavar="INIT",
                   help="starting weights: scratch, imagenet, semgen, or a checkpoint / run dir")
    p.add_argument("--images", type=int, default=100_000, help="samples to train on in all")
    p.add_argument("--labels", choices=("fine", "coarse"), default="fine",
                   help="fine: class x layout x orientation x subtype from the parameters; coarse: the class")
    p.add_argument("--aux-weight", type=float, default=1.0,
                   help="weight of the parameter-regression loss (0: no auxiliary head)")
    p.add_argument("--generators", default=None, metavar="A,B,...",
                   help="generators to stream (default: all; see 'semgen procedural --list')")
    p.add_argument("--data", action="append", default=None, metavar="DIR[=WEIGHT]",
                   help="dataset dirs / ImageFolders (real or synthetic) mixed into every batch; repeatable")
    p.add_argument("--data-fraction", type=float, default=0.25, help="share of each batch taken from --data")
    p.add_argument("--profile", default=None, metavar="FILE.yaml",
                   help="per-class sampling ranges and weights for the stream (semgen tune / semgen procedural "
                        "--profile); recorded in the run")
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", action="append", default=None, metavar="RUN",
                   help="a pretraining run with the same fine labels (or an ensemble of them) whose softened "
                        "predictions on every batch are learned too, e.g. EfficientNet-Lite0 from ImageNet "
                        "for a small --arch; repeatable (averaged)")
    g.add_argument("--distill-temperature", type=float, default=4.0, metavar="T", help="softening temperature")
    g.add_argument("--distill-weight", type=float, default=0.7, metavar="A",
                   help="share of the soft term: (1-A) * CE + A * T^2 * KL")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, cosine)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup", type=float, default=0.03, help="warm-up fraction of the steps")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the fine labels")
    p.add_argument("--drop-rate", type=float, default=0.2, help="dropout before the classifier")
    p.add_argument("--seed", type=int, default=0, help="master seed of the image stream and the weights")
    p.add_argument("--workers", type=int, default=1, help="generator processes (0: in this process)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores left after workers)")
    add_device_arguments(p)
    p.add_argument("--save-every", type=int, default=200, help="steps between resumable states")
    p.add_argument("--log-every", type=int, default=20, help="steps per train_log.jsonl line")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                   help="stop at this step (schedule unchanged; run again to continue)")
    p.set_defaults(func=_pretrain)


def config_from_args(args):
    """The :class:`~semgen.pretrain.train.PretrainConfig` of parsed ``semgen pretrain`` flags."""
    from .train import PretrainConfig

    gens = [g.strip() for g in args.generators.split(",") if g.strip()] if args.generators else None
    return PretrainConfig.make(arch=args.arch, init=None if args.init == "scratch" else args.init, generators=gens,
                               labels=args.labels, aux_weight=args.aux_weight, size=args.size, images=args.images,
                               batch_size=args.batch, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
                               label_smoothing=args.label_smoothing, drop_rate=args.drop_rate, seed=args.seed,
                               data=args.data, data_fraction=args.data_fraction, profile=args.profile,
                               teachers=args.teacher, distill_temperature=args.distill_temperature,
                               distill_weight=args.distill_weight)


def _pretrain(args) -> int:
    from .train import pretrain

    cfg = config_from_args(args)
    res = pretrain(args.out, cfg, workers=args.workers, threads=args.threads, save_every=args.save_every,
                   log_every=args.log_every, stop_after=args.stop_after, progress=not args.no_progress,
                   device=args.device, precision=args.precision)
    print(json.dumps(res, indent=1))
    return 0
