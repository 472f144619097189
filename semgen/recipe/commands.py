"""CLI: ``semgen recipe``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import long_running


def register(sub) -> None:
    from ..classifier.registry import list_archs
    from ..classifier.tta import TTA_MODES
    from ..devices import add_device_arguments
    from .run import STUDENT_IMAGES, RecipeConfig

    d = {k: f.default for k, f in RecipeConfig.model_fields.items()}
    p = sub.add_parser(
        "recipe", help="ImageNet, then semgen's procedural images with your real ones: pretrain, ensemble and "
                       "(optionally) distil an edge model, in one resumable command",
        description="semgen's measured best use of a small real pool (docs/results.md), stage by stage: "
                    "from ImageNet weights, one pretraining run per seed on streamed procedural images with a "
                    "quarter of each batch from the real pool (joint pretraining), their ensemble, optionally a "
                    "baseline fine-tuned from ImageNet alone and a small student distilled from the ensemble. "
                    "--finetune --pretrain-real-fraction 0 gives the sequential recipe (procedural images, then "
                    "fine-tuning on the real pool). Running the same command again continues it.")
    long_running(p)
    p.add_argument("--real", required=True, metavar="DIR", help="real training images (ImageFolder or dataset dir)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="recipe folder (resumed if it holds this recipe)")
    p.add_argument("--test", action="append", default=None, metavar="DIR",
                   help="real test set: evaluate every model on it and write summary.md (repeatable)")
    p.add_argument("--tta", default="none", choices=tuple(TTA_MODES), help="test-time augmentation of --test")
    g = p.add_argument_group("stages")
    g.add_argument("--arch", default=d["arch"], choices=list_archs(), metavar="NAME", help="network of every stage "
                   "but the student")
    g.add_argument("--init", default=d["init"], metavar="INIT", help="starting weights (imagenet needs "
                   "pip install 'semgen[imagenet]')")
    g.add_argument("--images", type=int, default=d["images"],
                   help="streamed samples of each pretraining run (76,800: about 55 min on 2 cores)")
    g.add_argument("--pretrain-lr", type=float, default=d["pretrain_lr"], help="peak learning rate of pretraining")
    g.add_argument("--pretrain-real-fraction", type=float, default=d["pretrain_real_fraction"], metavar="F",
                   help="share of each pretraining batch drawn from --real, learnt through its class "
                        f"(default: {d['pretrain_real_fraction']}; 0: procedural images only, with --finetune)")
    g.add_argument("--finetune", action=argparse.BooleanOptionalAction, default=d["finetune"],
                   help="--no-finetune (the default): joint pretraining, the pretraining runs are the models, one per "
                        "--seeds; --finetune --pretrain-real-fraction 0: the sequential recipe, procedural images "
                        "only, then fine-tuning on --real (one joint run scored as its 3-model ensemble, docs/results.md)")
    g.add_argument("--size", type=int, default=d["size"],
                   help="image side in pixels of the pretraining, the student and its transfer images")
    g.add_argument("--finetune-size", type=int, metavar="PX",
                   help="image side of the fine-tuning on the real pool and of the baseline (default: --size)")
    g.add_argument("--seed", type=int, default=d["seed"],
                   help="seed of the transfer images (with --finetune: also of the procedural stream)")
    g.add_argument("--seeds", type=int, nargs="+", default=list(d["seeds"]),
                   help="seeds of the models: one joint pretraining run each (with --finetune: one fine-tune each); "
                        "two or more: also their ensemble (3 joint runs: about 3 h on 2 cores; --seeds 0: one model, "
                        "one third of it)")
    g.add_argument("--epochs", type=int, default=d["epochs"],
                   help="fine-tuning epochs on the real pool (the baseline's; with --finetune, the recipe's too)")
    g.add_argument("--lr", type=float, default=d["lr"], help="fine-tuning learning rate")
    g.add_argument("--head-only-epochs", type=int, default=d["head_only_epochs"],
                   help="epochs on the new head alone before fine-tuning the whole network")
    g.add_argument("--baseline", action="store_true",
                   help="also fine-tune from --init alone (same seeds), to see what semgen adds")
    g.add_argument("--student", default=None, choices=list_archs(), metavar="ARCH",
                   help="distil this small arch from the ensemble, for semgen export (efficientnet_lite0_035: the "
                        "0.6 MB edge file; its bundled backbone descends from ImageNet, where mobilenetv3_small_100's "
                        "was pretrained from scratch, and it distils better: docs/results.md)")
    g.add_argument("--student-init", default=None, metavar="INIT",
                   help="the student's starting weights (default: the recipe's own run by weight selection where the "
                        "student is a narrower --arch, else semgen where a bundled backbone exists, else scratch)")
    g.add_argument("--student-images", type=int, default=None,
                   help="streamed samples of the student's own pretraining, distilled from the pretraining run "
                        f"(default: {STUDENT_IMAGES:,}; 0: none)")
    g.add_argument("--student-pretrain-lr", type=float, default=d["student_pretrain_lr"],
                   help="peak learning rate of the student's pretraining")
    g.add_argument("--student-epochs", type=int, default=d["student_epochs"],
                   help="epochs of distillation (75: about 40 min for efficientnet_lite0_035 on 2 cores)")
    g.add_argument("--student-lr", type=float, default=d["student_lr"], help="learning rate of distillation")
    g.add_argument("--transfer", type=int, default=d["transfer"],
                   help="with --no-transfer-stream: unlabelled procedural images per generator the teacher labels for "
                        "the student, as a folder (0: no transfer images, the stream included)")
    g.add_argument("--transfer-weight", type=float, default=d["transfer_weight"],
                   help="transfer batches per labelled batch")
    g.add_argument("--transfer-stream", action=argparse.BooleanOptionalAction, default=None,
                   help="make the student's transfer images on the fly, each shown once, instead of the "
                        "--transfer folder (the default with --student; --no-transfer-stream: the folder)")
    g.add_argument("--teacher-tta", choices=("none", "flips", "d4"), default=d["teacher_tta"],
                   help="the student learns the teacher's probabilities averaged over these views of each batch "
                        "(its test-time-augmented prediction; one teacher pass per view)")
    g.add_argument("--qat", action="store_true",
                   help="quantisation-aware fine-tuning of the student, then its INT8 export (8-bit activations)")
    g.add_argument("--qat-epochs", type=int, default=d["qat_epochs"], help="epochs of quantisation-aware training")
    g.add_argument("--qat-lr", type=float, default=d["qat_lr"], help="its learning rate")
    g.add_argument("--qat-weight-bits", type=int, default=d["qat_weight_bits"], choices=(7, 8),
                   help="weight bits (7 avoids int16 overflow in onnxruntime's 8-bit kernels on CPUs without VNNI)")
    p.add_argument("--workers", type=int, default=1, help="generator processes")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                   help="stop the pretraining at this step (run the same command again to continue)")
    add_device_arguments(p)
    p.set_defaults(func=_recipe)


def _recipe(args) -> int:
    from .run import RecipeConfig, run_recipe

    cfg = RecipeConfig.make(real=args.real, arch=args.arch, init=args.init, images=args.images,
                            pretrain_lr=args.pretrain_lr, pretrain_real_fraction=args.pretrain_real_fraction,
                            finetune=args.finetune,
                            size=args.size, finetune_size=args.finetune_size,
                            seed=args.seed, seeds=args.seeds,
                            epochs=args.epochs, lr=args.lr, head_only_epochs=args.head_only_epochs,
                            baseline=args.baseline, student=args.student, student_init=args.student_init,
                            student_images=args.student_images, student_pretrain_lr=args.student_pretrain_lr,
                            student_epochs=args.student_epochs, student_lr=args.student_lr, transfer=args.transfer,
                            transfer_weight=args.transfer_weight, transfer_stream=args.transfer_stream,
                            teacher_tta=args.teacher_tta, qat=args.qat, qat_epochs=args.qat_epochs, qat_lr=args.qat_lr,
                            qat_weight_bits=args.qat_weight_bits)
    res = run_recipe(args.out, cfg, test=args.test, tta=args.tta, workers=args.workers, threads=args.threads,
                     stop_after=args.stop_after, device=args.device, precision=args.precision,
                     progress=not args.no_progress)
    if res.get("figures"):
        print((Path(args.out) / "summary.md").read_text())
    else:
        print(json.dumps({k: v for k, v in res.items() if k != "stages"}, indent=1))
    return 0
