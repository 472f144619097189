"""Train the ``base`` diffusion model on a GPU, time it, and bundle it only if it is more realistic (issue 16).

One command, on a machine with a CUDA GPU::

    python bench/gpu_run.py --real-train ../shared/data/sem-real/train \\
        --ref ../shared/data/sem-real/dev_test --out out/gpu_run

What it does, each step resumable (re-run the same command after a crash or a kill):

1. procedural training images: ``--proc-per-class`` per real class, 128 px, seed 7 (``semgen procedural``);
2. ``semgen diffuse train --model-config base`` on them plus ``--real-train`` (weights 1 : 1), on the
   GPU with bf16 autocast (``--device`` / ``--precision``), ``--steps`` steps;
3. times training (steps/s and images/s from ``train_log.jsonl``) and sampling (images/s of
   ``semgen diffuse sample``, new and bundled model, same device and settings);
4. realism as in docs/diffusion.md: a held-out procedural set (seed 2) refined at strength 0.3 by
   the bundled model and by the new one, KID to ``--ref`` on texture features
   (``bench/bench_diffusion.py realism``, paired by file name) and the refinements' mask agreement;
5. bundles the new model into ``semgen/generators/diffusion/default_model`` **only if** it is closer
   to the real images than the bundled one with 95 % confidence (the paired bundled -> new KID
   difference has its whole interval below 0, for raw and L2-normalised features) **and** keeps
   the masks as well (mean edge IoU at most ``--max-iou-loss`` below the bundled model's).
   ``--no-bundle`` only reports.

``--smoke`` runs the same steps end to end on a CPU (a ``tiny`` model at 32 px, a few images and
steps, 4 sampling and 8 refinement steps; with no ``--ref`` a procedural stand-in reference) and never touches the
bundled folder: it "bundles" into ``OUT/bundle_dry_run``. Results: ``OUT/gpu_run.json``, printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: The classes of the real SEM set (``scratch`` has no real images).
REAL_CLASSES = ("bridge", "open", "ler", "particle", "cmp", "clean", "via", "crack", "other")

FULL = dict(model="base", resolution=128, steps=40_000, batch=32, lr=1e-4, warmup=1000, checkpoint_every=2000,
            proc_per_class=2000, eval_per_class=40, sample_n=256, sample_batch=64, sample_steps=25, refine_steps=25,
            ref_limit=400)
SMOKE = dict(model="tiny", resolution=32, steps=4, batch=4, lr=1e-3, warmup=0, checkpoint_every=2,
             proc_per_class=3, eval_per_class=2, sample_n=2, sample_batch=2, sample_steps=4, refine_steps=8,
             ref_limit=40)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/gpu_run", help="work dir (resumable)")
    ap.add_argument("--real-train", default=None, metavar="DIR",
                    help="real training images (ImageFolder or dataset dir); required without --smoke")
    ap.add_argument("--ref", default=None, metavar="DIR", help="real held-out images to measure realism against "
                    "(e.g. sem-real/dev_test); required without --smoke")
    ap.add_argument("--smoke", action="store_true", help="tiny end-to-end run (CPU is fine); never bundles")
    ap.add_argument("--device", default="auto", help="auto, cuda, cuda:N (cpu only with --smoke)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None,
                        help=f"default {v} ({SMOKE[k]} with --smoke)")
    ap.add_argument("--strength", type=float, default=0.3, help="refinement strength of the realism test")
    ap.add_argument("--max-iou-loss", type=float, default=0.02,
                    help="largest drop of mean edge IoU (mask agreement) the new model may have and still be bundled")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="procedural processes")
    ap.add_argument("--no-bundle", action="store_true", help="report only; never replace the bundled model")
    a = ap.parse_args(argv)
    base = SMOKE if a.smoke else FULL
    for k, v in base.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def _generate(classes, n, out: Path, *, seed: int, size: int, workers: int) -> Path:
    from semgen.generators.procedural.generation import generate

    for c in classes:
        generate(c, n, out, seed=seed, size=size, workers=workers, progress=False)
    return out


def _train_log_rate(model_dir: Path) -> float | None:
    """Median steps/s of the training log (each line covers ``log_every`` steps)."""
    p = model_dir / "train_log.jsonl"
    if not p.exists():
        return None
    rates = [json.loads(line)["steps_per_s"] for line in p.read_text().splitlines() if line.strip()]
    return statistics.median(rates) if rates else None


def _sample_rate(model, out: Path, a) -> dict:
    """Images/s of ``diffuse sample`` (``--sample-steps`` DDIM steps, guidance 3, PNGs included) after a warm-up."""
    from semgen.generators.diffusion.sample import sample

    shutil.rmtree(out, ignore_errors=True)
    sample(out=out / "warm", n=1, label="bridge", model=model, steps=2, batch=1, progress=False,
           device=a.device, precision=a.precision)
    t = time.perf_counter()
    sample(out=out / "timed", n=a.sample_n, label="bridge", model=model, steps=a.sample_steps, guidance=3.0,
           batch=a.sample_batch, progress=False, device=a.device, precision=a.precision)
    dt = time.perf_counter() - t
    return {"images": a.sample_n, "batch": a.sample_batch, "steps": a.sample_steps, "seconds": round(dt, 3),
            "images_per_s": round(a.sample_n / dt, 3)}


def _decide(realism: dict, agree_old: dict, agree_new: dict, max_iou_loss: float) -> dict:
    """Bundle only if the new model is closer to the reference (paired 95 % interval below 0 for
    every feature normalisation) and keeps the masks about as well."""
    closer = {}
    for how, r in realism["by_normalization"].items():
        p = r["paired"]["bundled:new"]
        closer[how] = {"kid_bundled": p["kid_a"], "kid_new": p["kid_b"], "diff": p["diff"],
                       "diff_ci95": p["diff_ci95"], "closer": p["diff_ci95"][1] < 0}
    iou_old, iou_new = agree_old.get("edge_iou"), agree_new.get("edge_iou")
    masks_ok = iou_old is None or (iou_new is not None and iou_new >= iou_old - max_iou_loss)
    better = bool(closer) and all(c["closer"] for c in closer.values()) and masks_ok
    return {"kid_x1000": closer, "edge_iou": {"bundled": iou_old, "new": iou_new, "max_loss": max_iou_loss},
            "masks_kept": masks_ok, "better": better}


def _bundle(model_dir: Path, dest: Path, report: dict) -> None:
    """Replace the bundled model's weights, scheduler, index and config by ``model_dir``'s; the
    folder's ``pipeline_semgen.py`` (a link to the package's module in the repository) stays."""
    from semgen.generators.diffusion.pipeline import SEMGEN_CONFIG, check_model_dir, replace_dir_contents

    check_model_dir(model_dir)
    names = ("model_index.json", "unet", "scheduler", SEMGEN_CONFIG)
    tmp = dest.parent / f".{dest.name}.incoming-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for n in names:
        (shutil.copytree if (model_dir / n).is_dir() else shutil.copy2)(model_dir / n, tmp / n)
    replace_dir_contents(tmp, dest, names)
    shutil.rmtree(tmp, ignore_errors=True)
    note = (f"\n\n## Replaced by `bench/gpu_run.py` ({time.strftime('%Y-%m-%d', time.gmtime())})\n\n"
            f"`{report['train']['command']}`: {report['train']['steps']} steps on {report['device']['device_name']}; "
            + ("it beat" if report["decision"]["better"] else "a --smoke dry run: it did NOT beat")
            + f" the previous bundled model on KID to `{report['ref']}` (texture features, paired, 95 % "
            f"intervals {json.dumps({k: v['diff_ci95'] for k, v in report['decision']['kid_x1000'].items()})}) "
            f"and kept mean edge IoU {report['decision']['edge_iou']['new']} "
            f"(previous {report['decision']['edge_iou']['bundled']}). It was trained on real images too "
            f"(`{report['real_train']}`).\n")
    readme = dest / "README.md"
    readme.write_text((readme.read_text() if readme.exists() else "# Bundled default diffusion model\n") + note)


def run(a) -> dict:
    from bench_diffusion import main as bench_diffusion_main

    from semgen.devices import compute
    from semgen.errors import SemgenError
    from semgen.generators.diffusion.pipeline import DEFAULT_MODEL_DIR
    from semgen.generators.diffusion.refine import refine
    from semgen.generators.diffusion.train import TrainConfig, train

    comp = compute(a.device, a.precision)
    if comp.device.type != "cuda" and not a.smoke:
        raise SemgenError("this run needs a CUDA GPU (--device auto found none); --smoke runs on the CPU")
    if not a.smoke and not (a.real_train and a.ref):
        raise SemgenError("--real-train and --ref are required (only --smoke runs without real images)")
    for p in (a.real_train, a.ref):
        if p and not Path(p).exists():
            raise SemgenError(f"{p} does not exist")
    a.device = str(comp.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = {"smoke": a.smoke, "device": comp.record(), "real_train": a.real_train, "ref": a.ref,
              "settings": {k: getattr(a, k) for k in FULL}}

    # 1. training data: procedural (+ real)
    t = time.perf_counter()
    proc = _generate(REAL_CLASSES, a.proc_per_class, out / "proc", seed=7, size=128, workers=a.workers)
    data = [(str(proc), 1.0)] + ([(str(Path(a.real_train).resolve()), 1.0)] if a.real_train else [])
    report["data_seconds"] = round(time.perf_counter() - t, 1)

    # 2. train (resumes from its checkpoints)
    model_dir = out / "model"
    cmd = (f"semgen diffuse train {' '.join(f'--data {p}={w:g}' for p, w in data)} --out {model_dir} "
           f"--model-config {a.model} --resolution {a.resolution} --steps {a.steps} --batch {a.batch} --lr {a.lr} "
           f"--warmup {a.warmup} --checkpoint-every {a.checkpoint_every} --fp16-weights --device {a.device} "
           f"--precision {comp.precision}")
    cfg = TrainConfig(data=data, out=str(model_dir), resolution=a.resolution, model=a.model, steps=a.steps,
                      batch=a.batch, lr=a.lr, warmup=a.warmup, checkpoint_every=a.checkpoint_every,
                      log_every=max(1, min(50, a.steps // 4)), device=a.device, mixed_precision=comp.precision,
                      progress=sys.stderr.isatty(), command=cmd, extra={"fp16_weights": True})
    t = time.perf_counter()
    s = train(cfg)
    rate = _train_log_rate(model_dir)
    report["train"] = {"command": cmd, "steps": s["step"], "trained_now": s["trained_now"],
                       "seconds_now": round(time.perf_counter() - t, 1), "final_loss": s.get("final_loss"),
                       "steps_per_s_median": rate, "images_per_s": round(rate * a.batch, 2) if rate else None}

    # 3. sampling speed, new and bundled, same device and settings
    report["sample"] = {"new": _sample_rate(model_dir, out / "speed_new", a),
                        "bundled": _sample_rate(None, out / "speed_bundled", a)}

    # 4. realism: a held-out procedural set refined by each model, KID to the reference, mask agreement
    ev = _generate(REAL_CLASSES, a.eval_per_class, out / "eval_raw", seed=2, size=128, workers=a.workers)
    agree = {}
    for name, model in (("bundled", None), ("new", model_dir)):
        r = refine(input=ev, out=out / f"eval_{name}", model=model, strength=a.strength, steps=a.refine_steps,
                   guidance=2.0, batch=a.sample_batch, progress=False, device=a.device, precision=a.precision)
        agree[name] = r["summary"]
    ref = a.ref
    if ref is None:  # smoke without real data: another procedural seed stands in (plumbing only)
        ref = str(_generate(REAL_CLASSES, a.eval_per_class * 2, out / "standin_ref", seed=9, size=128,
                            workers=a.workers))
        report["ref"] = f"{ref} (procedural stand-in: --smoke without --ref)"
    n_eval = a.eval_per_class * len(REAL_CLASSES)
    rj = out / "realism.json"
    bench_diffusion_main(["realism", "--ref", ref, "--set", f"raw={ev}", "--set", f"bundled={out / 'eval_bundled'}",
                          "--set", f"new={out / 'eval_new'}", "--paired", "raw:bundled", "--paired", "raw:new",
                          "--paired", "bundled:new", "--limit", str(a.ref_limit),
                          "--subset", str(min(50, n_eval)), "--json", str(rj)])
    realism = json.loads(rj.read_text())
    report["mask_agreement"] = agree
    report["decision"] = _decide(realism, agree["bundled"], agree["new"], a.max_iou_loss)

    # 5. bundle only if better (never the real folder in a smoke run)
    dest = out / "bundle_dry_run" if a.smoke else DEFAULT_MODEL_DIR
    if a.smoke:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(DEFAULT_MODEL_DIR, dest, symlinks=False)
    bundle = (report["decision"]["better"] or a.smoke) and not a.no_bundle
    if bundle:  # a smoke run always exercises the bundling, into its dry-run copy
        _bundle(model_dir, dest, report)
    report["bundled"] = {"done": bool(bundle), "into": str(dest)}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "gpu_run.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None) -> int:
    a = parse_args(argv)
    from semgen.errors import SemgenError

    try:
        report = run(a)
    except SemgenError as e:
        print(f"gpu_run: error: {e}", file=sys.stderr)
        return 2
    d = report["decision"]
    print(json.dumps({k: report[k] for k in ("device", "train", "sample", "decision", "bundled", "seconds")}, indent=2))
    verdict = "better: bundled" if d["better"] and report["bundled"]["done"] and not report["smoke"] else (
        "better (not bundled: --no-bundle)" if d["better"] and not report["smoke"] else
        "smoke run: bundling exercised on a copy" if report["smoke"] else "not better: the bundled model stays")
    print(f"gpu_run: {verdict}; report {Path(a.out) / 'gpu_run.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
