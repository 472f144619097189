"""Classifier figures: training throughput per architecture, and the real-data FP32 vs INT8 result.

    nice python bench/bench_classifier.py throughput [--archs A B] [--threads 2] [--steps 12]
    nice python bench/bench_classifier.py throughput --archs efficientnet_lite0_035 --teacher RUN \
        [--baseline OLD_CHECKOUT --repeat 2]     # a distilled step (the teachers' forward passes too)
    nice python bench/bench_classifier.py evaluate --run RUN --data DIR [--baseline OLD_CHECKOUT]
    nice python bench/bench_classifier.py real [--archs A B] [--epochs 30] [--out out/bench_classifier]

``throughput`` times the real training step (batch augmentation + forward + backward + AdamW,
channels_last) on in-memory 128 x 128 images; with ``--teacher`` the step is a distilled one (the
teachers label the batch, the loss is semgen train's 0.3 x hard + 0.7 x soft). ``--baseline DIR``
(a checkout of older code, e.g. ``git worktree add /tmp/old COMMIT``) times old and new code
alternately (``throughput`` and ``evaluate``: ``evaluate_run`` of ``--run`` on ``--data``, images
loaded and predicted, nothing written), each in a fresh process with its checkout first on ``sys.path``, and prints new/old:
on a shared machine the ratio of neighbouring runs drifts far less than the figures. ``real`` trains on sem-real/train (validation split of
train only), evaluates on dev_test, exports INT8 calibrated on train and reports FP32 vs INT8
accuracy, INT8 size and onnxruntime latency. The CPU is shared: the load average is printed beside
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
from _baseline import alternated, in_checkout, load, semgen_dir  # noqa: E402
from semgen.classifier.augment import AugmentConfig, augment_batch  # noqa: E402
from semgen.classifier.models import create_model  # noqa: E402

REAL = Path(os.environ.get("SEMGEN_REAL_DATA", REPO.parent / "shared" / "data" / "sem-real"))
ARCHS = ["mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv2_035"]


def throughput(arch: str, *, size: int = 128, batch: int = 64, steps: int = 12, warmup: int = 3,
               threads: int = 2, augment: bool = True, teachers: list | None = None) -> dict:
    """Training images per second (median over steps, after warm-up), and the CPU time per image.

    The CPU time (this process, all its threads, median step) does not count the time the
    machine gave to other jobs or, on a virtual machine, to other guests (steal time), so on a
    shared machine it is the steadier figure of the two.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    distiller = None
    if teachers:
        from semgen.classifier.checkpoint import load_run
        from semgen.classifier.distill import DistillConfig, Distiller, resolve_teacher

        classes = list(load_run(resolve_teacher(teachers[0]))[1]["classes"])
        distiller = Distiller(DistillConfig(list(teachers)), classes)
    model = create_model(arch, 9).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (batch * 4, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 9, (batch * 4,), generator=g)
    cfg = AugmentConfig() if augment else None
    times, cpu = [], []
    for s in range(warmup + steps):
        idx = torch.randint(0, len(images), (batch,), generator=g)
        t0, c0 = time.perf_counter(), time.process_time()
        x = augment_batch(images[idx], cfg, g) if cfg else images[idx].unsqueeze(1).float() / 255
        x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        loss = F.cross_entropy(logits, labels[idx], label_smoothing=0.1)
        if distiller is not None:
            loss = 0.3 * loss + 0.7 * distiller.soft_loss(logits, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    times.sort()
    med = times[len(times) // 2]
    return {"arch": arch, "threads": threads, "batch": batch, "size": size, "augment": augment,
            "teachers": [str(t) for t in teachers or []],
            "images_per_s": batch / med, "best_images_per_s": batch / times[0],
            "cpu_ms_per_image": 1e3 * sorted(cpu)[len(cpu) // 2] / batch, "load": load()}


def evaluate_speed(run, data, *, threads: int = 2) -> dict:
    """Images per second of ``evaluate_run`` (loading and prediction; no files written)."""
    from semgen.classifier import evaluate_run

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    m = evaluate_run(run, data, n_boot=10, write=False)
    dt = time.perf_counter() - t0
    return {"arch": str(run), "threads": threads, "images_per_s": m["n"] / dt, "seconds": dt,
            "macro_f1": m["macro_f1"], "load": load()}


def _measure(a, arch: str) -> dict:
    """The measurement ``a.what`` asks for, in this process."""
    if a.what == "evaluate":
        return evaluate_speed(a.run, a.data, threads=a.threads)
    return throughput(arch, steps=a.steps, threads=a.threads, augment=not a.no_augment, teachers=a.teacher)


def _child(code: str, arch: str, a) -> dict:
    """One measurement in a fresh process running the semgen of checkout ``code`` (paths made absolute:
    the child runs in the checkout)."""
    ab = os.path.abspath
    cmd = [ab(__file__), a.what, "--archs", arch, "--threads", str(a.threads), "--steps", str(a.steps), "--json"] + \
        (["--no-augment"] if a.no_augment else []) + (["--teacher", *map(ab, a.teacher)] if a.teacher else []) + \
        (["--run", ab(a.run), "--data", ab(a.data)] if a.what == "evaluate" else [])
    return in_checkout(code, cmd, what=f"{a.what} {arch}")


def compare(arch: str, a) -> dict:
    """Old (``--baseline``) and new code alternately, ``--repeat`` times each; the best of each
    (most images/s; least CPU ms per image, for ``throughput``)."""
    runs = alternated(a.repeat, lambda code: _child(code, arch, a), str(Path(a.baseline).resolve()), str(REPO))
    old, new = [r[0]["images_per_s"] for r in runs], [r[1]["images_per_s"] for r in runs]
    res = {"arch": arch, "old": old, "new": new, "ratio": max(new) / max(old), "load": load()}
    if "cpu_ms_per_image" in runs[0][0]:
        res["old_cpu_ms"] = [r[0]["cpu_ms_per_image"] for r in runs]
        res["new_cpu_ms"] = [r[1]["cpu_ms_per_image"] for r in runs]
        res["cpu_ratio"] = min(res["old_cpu_ms"]) / min(res["new_cpu_ms"])
    return res


def real(arch: str, out: Path, *, epochs: int, threads: int, seed: int = 0) -> dict:
    from semgen.classifier import evaluate_run, train_classifier
    from semgen.classifier.export import export_run
    from semgen.classifier.train_config import TrainConfig

    run = out / arch
    t0 = time.perf_counter()
    s = train_classifier(TrainConfig.make(data=REAL / "train", out=run, arch=arch, epochs=epochs, seed=seed,
                                          num_threads=threads, progress=False, overwrite=True))
    train_s = time.perf_counter() - t0
    m = evaluate_run(run, REAL / "dev_test")
    torch.set_num_threads(threads)
    e = export_run(run, REAL / "train", data=REAL / "dev_test")
    return {
        "arch": arch, "epochs_run": s["epochs_run"], "best_epoch": s["best_epoch"],
        "val_macro_f1": s["best_val_macro_f1"], "train_seconds": round(train_s, 1),
        "train_images_per_s": s["images_per_s"],
        "dev_test_torch": {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "ci": m["ci"]},
        "fp32": {k: e["fp32"][k] for k in ("accuracy", "macro_f1", "bytes")} | {"ms": e["fp32"]["latency"]["median_ms"]},
        "int8": {k: e["int8"][k] for k in ("accuracy", "macro_f1", "bytes")} | {"ms": e["int8"]["latency"]["median_ms"]},
        "int8_accuracy_drop": e["accuracy_drop"], "top1_agreement": e["top1_agreement"],
        "quantization": e["quantization"]["strategy"], "nodes_kept_float": len(e["quantization"]["nodes_kept_float"]),
        "load": load(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "real", "evaluate"])
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--no-augment", action="store_true", help="throughput of the network alone")
    ap.add_argument("--teacher", nargs="+", default=None, metavar="RUN",
                    help="throughput: time a distilled step with these teachers (run dirs or an ensemble folder)")
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="throughput, evaluate: a checkout of older code; time old and new alternately, print new/old")
    ap.add_argument("--repeat", type=int, default=2, help="with --baseline: measurements of each")
    ap.add_argument("--run", type=Path, help="evaluate: the run dir to evaluate")
    ap.add_argument("--data", type=Path, default=REAL / "dev_test", help="evaluate: the test images")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench_classifier")
    a = ap.parse_args(argv)
    if a.what == "evaluate":
        if a.run is None:
            ap.error("evaluate needs --run RUN")
        a.archs = [a.run.name]
    if a.json:  # a --baseline child: one row, as JSON
        print(json.dumps({**_measure(a, a.archs[0]), "semgen": semgen_dir()}))
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, torch {torch.__version__}, {load()}")
    rows = []
    for arch in a.archs:
        if a.what in ("throughput", "evaluate") and a.baseline:
            r = compare(arch, a)
            print(f"{arch:24s} old {' '.join(f'{v:.1f}' for v in r['old'])} | new {' '.join(f'{v:.1f}' for v in r['new'])}"
                  f" img/s | new/old x{r['ratio']:.2f} (best of {a.repeat} each"
                  f"{', distilled from ' + ' '.join(a.teacher) if a.teacher else ''}), {r['load']}", flush=True)
            if "cpu_ratio" in r:
                print(f"{'':24s} CPU ms/image old {' '.join(f'{v:.2f}' for v in r['old_cpu_ms'])} | new "
                      f"{' '.join(f'{v:.2f}' for v in r['new_cpu_ms'])} | old/new x{r['cpu_ratio']:.2f}", flush=True)
        elif a.what == "evaluate":
            r = _measure(a, arch)
            print(f"{arch:24s} {r['images_per_s']:7.1f} img/s ({r['seconds']:.1f} s, macro-F1 {r['macro_f1']:.4f}), "
                  f"{r['threads']} threads, {r['load']}", flush=True)
        elif a.what == "throughput":
            r = _measure(a, arch)
            print(f"{arch:24s} {r['images_per_s']:7.1f} img/s (best step {r['best_images_per_s']:.1f}; "
                  f"{r['cpu_ms_per_image']:.2f} CPU ms/image), "
                  f"batch {r['batch']} at {r['size']}x{r['size']}, {r['threads']} threads, "
                  f"augment {r['augment']}, {r['load']}", flush=True)
        else:
            if not (REAL / "train").is_dir():
                print(f"real data not found at {REAL}; set SEMGEN_REAL_DATA")
                return 2
            r = real(arch, a.out, epochs=a.epochs, threads=a.threads)
            print(f"{arch:24s} dev_test FP32 acc {r['fp32']['accuracy']:.3f} F1 {r['fp32']['macro_f1']:.3f} | "
                  f"INT8 acc {r['int8']['accuracy']:.3f} F1 {r['int8']['macro_f1']:.3f} "
                  f"(drop {100 * r['int8_accuracy_drop']:+.1f} pt, agreement {r['top1_agreement']:.3f}, "
                  f"{r['quantization']}) | INT8 {r['int8']['bytes'] / 1e6:.3f} MB, {r['int8']['ms']:.2f} ms/img "
                  f"(FP32 {r['fp32']['bytes'] / 1e6:.2f} MB, {r['fp32']['ms']:.2f} ms) | "
                  f"{r['epochs_run']} epochs, {r['train_seconds']} s | {r['load']}", flush=True)
        rows.append(r)
    tag = "_".join(a.archs) if len(a.archs) < len(ARCHS) else "all"
    (a.out / f"{a.what}_{tag}.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
