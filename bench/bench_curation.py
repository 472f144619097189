"""Curation benchmarks: analysis throughput, near-duplicate index scaling, and a labelled 10k test set.

    python bench/bench_curation.py throughput [--n 2000] [--workers 2]
    python bench/bench_curation.py throughput --baseline OLD_CHECKOUT [--n 2000] [--repeat 3]
    python bench/bench_curation.py steady [--n 64 2000 6000] [--size 256]   # the pool's rate once started
    python bench/bench_curation.py steady --baseline OLD_CHECKOUT [--repeat 3]  # ... old and new alternated
    python bench/bench_curation.py index [--sizes 10000 100000 1000000] [--radius 8]
    python bench/bench_curation.py data DIR [--n 10000]       # the labelled set bench_cleanvision.sh uses
    python bench/bench_curation.py ours DIR                   # semgen's findings on it (JSON)
    python bench/bench_curation.py residual                   # why thumbnails verify hash candidates
    python bench/bench_curation.py verify                     # margins of the thumbnail test
    python bench/bench_curation.py all

Prints figures (and writes them as JSON under out/bench/); never asserts a timing.

``throughput --baseline DIR`` (a checkout of an older commit: ``git worktree add /tmp/curbase
<commit>``) measures the old code and this one on the same PNG files, each in a fresh process
with its checkout first on ``PYTHONPATH``, alternated ``--repeat`` times, and prints new/old
ratios: on a shared, loaded machine the absolute figures drift, the ratio of neighbouring runs
much less.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' tiny line/space image maker

from _baseline import alternated, in_checkout, load, semgen_dir  # noqa: E402

from curation_synth import lines  # noqa: E402

from semgen.curation.analyze import analyze_image  # noqa: E402
from semgen.curation.curate import Item, analyze_items  # noqa: E402
from semgen.curation.index import HammingIndex, brute_force_pairs  # noqa: E402
from semgen.imageio import encode_png, read_gray, sha256_bytes  # noqa: E402
from semgen.manifests import DatasetDir  # noqa: E402

OUT = ROOT / "out" / "bench"


def _image(rng: np.random.Generator, size: int, k: int) -> np.ndarray:
    return lines(size, period=float(rng.uniform(7, 20)), angle=float(rng.choice([0, 90, 45, 30])), ler_seed=k,
                 noise_seed=k, bridge=(float(rng.uniform(5, size - 5)), float(rng.uniform(5, size - 5)))
                 if rng.random() < 0.6 else None, noise=float(rng.uniform(4, 20)))


def _write_files(root: Path, imgs) -> list[Item]:
    items = []
    for k, img in enumerate(imgs):
        p = root / f"{k:06d}.png"
        data = encode_png(img)
        p.write_bytes(data)
        items.append(Item(k, str(k), "clean", str(p), {"sha256": sha256_bytes(data)}))
    return items


def throughput(n: int = 2000, workers: int = 2) -> dict:
    """Images per second of decode + metrics + hashes + thumbnail, from PNG files, no cache."""
    res = {"workers": workers, "n": n}
    for size in (128, 256):
        with tempfile.TemporaryDirectory() as d:
            items = _bench_files(Path(d), n, size)
            t = time.perf_counter()
            analyze_items(items, workers=workers, cache_path=None)
            dt = time.perf_counter() - t
            assert all(it.ok for it in items)
            # single-process breakdown on 200 decoded images
            # decoded from the bytes already read, as the workers do (sha256 first: see analyze.fetch_file)
            datas = [Path(it.path).read_bytes() for it in items[:200]]
            t0 = time.perf_counter()
            for it, data in zip(items, datas):
                read_gray(it.path, data=data)
            t_dec = (time.perf_counter() - t0) / 200
            imgs = [read_gray(it.path, data=data) for it, data in zip(items, datas)]
            t0, c0 = time.perf_counter(), time.process_time()
            for im in imgs:
                analyze_image(im)
            t_an = (time.perf_counter() - t0) / 200
            c_an = (time.process_time() - c0) / 200
            c0 = time.process_time()
            for it, data in zip(items, datas):
                read_gray(it.path, data=data)
            c_dec = (time.process_time() - c0) / 200
        res[f"{size}"] = {"images_per_s": round(n / dt, 1), "seconds": round(dt, 2),
                          "single_process_ms": {"decode": round(t_dec * 1e3, 3), "analyse": round(t_an * 1e3, 3)},
                          "cpu_ms_per_image": round((c_dec + c_an) * 1e3, 3)}
        print(f"{size}x{size}: {n / dt:7.1f} images/s on {workers} workers ({n} PNGs in {dt:.2f} s); "
              f"one process: decode {t_dec * 1e3:.2f} ms + metrics/hashes/thumbnail {t_an * 1e3:.2f} ms per image "
              f"(CPU time {(c_dec + c_an) * 1e3:.2f} ms: {workers / (c_dec + c_an):.0f} images/s on {workers} "
              "uncontended cores)", flush=True)
    res["load"] = load()
    print(res["load"])
    return res


def measure_steady(files: list, ns, workers: int) -> dict:
    """Wall time of :func:`analyze_items` over the first ``n`` of ``files`` ([path, sha256] pairs), for each ``n``.

    The rate between the two largest counts is the pool's steady rate: the start of the pool (its
    processes, their imports) cancels out of the difference. What a ``steady --baseline`` child
    runs, with whichever semgen its ``PYTHONPATH`` gives it.
    """
    ns = sorted(ns)
    items = _items(files[:ns[-1]])
    res = {"semgen": semgen_dir(), "workers": workers, "seconds": {}}
    for n in ns:  # analyze_items recomputes every item (no cache): each count starts from the files
        t = time.perf_counter()
        analyze_items(items[:n], workers=workers, cache_path=None, progress=False)
        res["seconds"][n] = dt = time.perf_counter() - t
        print(f"{n} PNGs: {dt:.2f} s ({n / dt:.0f} images/s)", file=sys.stderr, flush=True)
    a, b = ns[-2:]
    ta, tb = res["seconds"][a], res["seconds"][b]
    res["steady_images_per_s"] = (b - a) / (tb - ta) if len(ns) > 1 and tb > ta else None
    res["end_to_end_images_per_s"] = ns[-1] / tb
    return res


def _files(root: Path, n: int, size: int) -> list:
    """:func:`_bench_files` as [path, sha256] pairs: what a ``--baseline`` child is handed (JSON)."""
    return [[it.path, it.record["sha256"]] for it in _bench_files(root, n, size)]


def _items(files: list) -> list[Item]:
    """The :class:`Item` list of [path, sha256] pairs (:func:`_files`), as a child rebuilds it."""
    return [Item(k, str(k), "clean", p, {"sha256": sha}) for k, (p, sha) in enumerate(files)]


def steady(ns=(64, 2000, 6000), size: int = 256, workers: int = 2) -> dict:
    """:func:`measure_steady` on ``max(ns)`` new PNGs of ``size`` px."""
    with tempfile.TemporaryDirectory() as d:
        res = measure_steady(_files(Path(d), max(ns), size), ns, workers)
    for n, dt in res["seconds"].items():
        print(f"{size}x{size}, {n} PNGs: {dt:.2f} s ({n / dt:.0f} images/s)", flush=True)
    rate = res["steady_images_per_s"]
    print(f"steady rate ({sorted(ns)[-2]} -> {max(ns)} files): "
          + (f"{rate:.1f} images/s" if rate else "none (the larger count took no longer)"), flush=True)
    res["size"], res["load"] = size, load()
    print(res["load"])
    return res


def _old_new(o: dict, w: dict, key: str) -> str:
    a, b = o[key], w[key]
    return f"{a:.0f} -> {b:.0f} (x{b / a:.2f})" if a and b else f"{a} -> {b}"


def compare_steady(baseline: str, ns=(64, 2000, 6000), size: int = 256, workers: int = 2, repeat: int = 3) -> dict:
    """Old (``baseline`` checkout) and new steady rates on the same files, each in a fresh process, alternated."""
    old, new = os.path.abspath(baseline), str(ROOT)
    ns = sorted(ns)
    print(f"# curation analysis, steady rate of the pool between {ns[-2]} and {ns[-1]} files (and end to end at "
          f"{ns[-1]}), {size} px, {workers} workers, no cache; old = {old}, new = {new}; {repeat} alternated runs; "
          f"{load()}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as d:
        fj = Path(d) / "files.json"
        fj.write_text(json.dumps(_files(Path(d), ns[-1], size)))
        runs = []
        for k in range(max(1, repeat)):
            pair = [in_checkout(c, [os.path.abspath(__file__), "--child-steady", fj, workers, *ns]) for c in (old, new)]
            runs.append(pair)
            o, w = pair
            print(f"run {k + 1}: steady {_old_new(o, w, 'steady_images_per_s')} images/s; end to end at {ns[-1]} "
                  f"files {_old_new(o, w, 'end_to_end_images_per_s')}; {load()}", flush=True)
    return {"ns": ns, "size": size, "workers": workers, "old": old, "new": new, "runs": runs, "load": load()}


def _bench_files(root: Path, n: int, size: int) -> list[Item]:
    """``n`` PNGs of ``size`` px under ``root``: 200 distinct images, the rest shifted copies of them."""
    rng = np.random.default_rng(0)
    base = [_image(rng, size, k) for k in range(min(n, 200))]
    return _write_files(root, [base[k % len(base)] if k < len(base) else np.roll(base[k % len(base)], k, axis=1)
                               for k in range(n)])


def measure_files(files: list, workers: int, single: int = 200) -> dict:
    """Images/s of :func:`analyze_items` over ``files`` ([path, sha256] pairs) and CPU ms per image in one process.

    What a ``--baseline`` child runs, with whichever semgen its ``PYTHONPATH`` gives it.
    """
    import multiprocessing.forkserver as forkserver
    import resource

    from semgen.curation.analyze import analyze_file

    def cpu() -> float:  # this process and every process it (and its fork server) waited for
        r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(x.ru_utime + x.ru_stime for x in r)

    items = _items(files)
    analyze_items(items[:8], workers=1, cache_path=None, progress=False)  # imports, lazy tables
    c0, t = cpu(), time.perf_counter()
    analyze_items(items, workers=workers, cache_path=None, progress=False)
    wall = time.perf_counter() - t
    # The workers are the fork server's children: stop it (it reaps them, then is reaped here)
    # so that the run's whole CPU time, start-up and transfers included, is counted.
    getattr(forkserver, "_forkserver")._stop()
    run_cpu = cpu() - c0
    assert all(it.ok for it in items)
    jobs = [(p, sha, None, False, 0) for p, sha in files[:single]]
    c0 = time.process_time()
    for j in jobs:
        analyze_file(j)  # read, sha256, decode, metrics, hashes, thumbnail: the worker's whole job
    single_cpu = (time.process_time() - c0) / len(jobs)
    return {"semgen": semgen_dir(), "images_per_s": len(items) / wall,
            "cpu_ms": 1e3 * single_cpu, "run_cpu_ms": 1e3 * run_cpu / len(items)}


def _in_checkout(checkout: str, files_json: str, workers: int) -> dict:
    """:func:`measure_files` in a fresh process importing semgen from ``checkout``."""
    return in_checkout(checkout, [os.path.abspath(__file__), "--child", files_json, str(workers)])


def compare_throughput(baseline: str, n: int = 2000, workers: int = 2, repeat: int = 3,
                       sizes=(128, 256)) -> dict:
    """Old (``baseline`` checkout) and new analysis side by side on the same files, alternated ``repeat`` times.

    Each side keeps its best run (most images/s; least CPU per image): on a shared machine other
    jobs only ever slow a run down, so the best of a few alternated runs is the steadiest figure.
    """
    old, new = os.path.abspath(baseline), str(ROOT)
    print(f"# curation analysis (read, sha256, decode, metrics, hashes, thumbnail), n={n} PNGs per run, "
          f"{workers} workers, no cache; {os.cpu_count()} CPUs; old = {old}, new = {new}; best of {repeat} "
          f"alternated runs; {load()}")
    print("# img/s: wall clock of the pool run; run cpu ms: CPU time of the whole run (main process, fork server, "
          "workers: start-up and transfers included) per image; one-process cpu ms: analyze_file alone, 200 images")
    print(f"{'size':>5} {'old img/s':>9} {'new img/s':>9} {'ratio':>6} {'old run cpu ms':>14} {'new run cpu ms':>14} "
          f"{'ratio':>6} {'old 1-proc ms':>13} {'new 1-proc ms':>13} {'ratio':>6}   load")
    res = {"n": n, "workers": workers, "repeat": repeat, "old": old, "new": new}
    for size in sizes:
        with tempfile.TemporaryDirectory(dir=OUT) as d:
            files = _files(Path(d), n, size)
            fj = str(Path(d) / "files.json")
            Path(fj).write_text(json.dumps(files))
            runs = alternated(repeat, lambda c: _in_checkout(c, fj, workers), old, new)
        best = [{"images_per_s": max(r[side]["images_per_s"] for r in runs),
                 "run_cpu_ms": min(r[side]["run_cpu_ms"] for r in runs),
                 "cpu_ms": min(r[side]["cpu_ms"] for r in runs)} for side in (0, 1)]
        o, w = best
        res[str(size)] = {"old": o, "new": w, "runs": runs, "load": load()}
        print(f"{size:>5} {o['images_per_s']:>9.1f} {w['images_per_s']:>9.1f} "
              f"{w['images_per_s'] / o['images_per_s']:>6.2f} {o['run_cpu_ms']:>14.2f} {w['run_cpu_ms']:>14.2f} "
              f"{o['run_cpu_ms'] / w['run_cpu_ms']:>6.2f} {o['cpu_ms']:>13.2f} {w['cpu_ms']:>13.2f} "
              f"{o['cpu_ms'] / w['cpu_ms']:>6.2f}   {load()}", flush=True)
        print(f"      = {workers * 1e3 / o['run_cpu_ms']:.0f} -> {workers * 1e3 / w['run_cpu_ms']:.0f} images/s "
              f"on {workers} uncontended cores (from the run CPU time)", flush=True)
    return res


def planted_hashes(n: int, radius: int, pairs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    truth = set()
    for k in range(0, 2 * pairs, 2):
        bits = rng.choice(64, int(rng.integers(1, radius + 1)), replace=False)
        h[k + 1] = h[k] ^ np.uint64(sum(1 << int(b) for b in bits))
        truth.add((k, k + 1))
    return h, truth


def index_scaling(sizes=(10_000, 100_000, 1_000_000), radius: int = 8) -> dict:
    """Build, self-join and query times of the multi-index hash index on random hashes."""
    res = {"radius": radius, "runs": []}
    for n in sizes:
        h, truth = planted_hashes(n, radius, pairs=max(100, n // 100))
        t = time.perf_counter()
        idx = HammingIndex(h, radius)
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        i, j, d = idx.pairs()
        t_pairs = time.perf_counter() - t
        found = set(zip(i.tolist(), j.tolist()))
        recall = len(truth & found) / len(truth)
        q = h[:10_000] ^ np.uint64(1 << 7)
        t = time.perf_counter()
        qi, _, _ = idx.query(q)
        t_query = time.perf_counter() - t
        run = {"n": n, "chunks": idx.m, "build_s": round(t_build, 3), "all_pairs_s": round(t_pairs, 2),
               "pairs_found": len(found), "planted": len(truth), "planted_recall": recall,
               "query_10k_s": round(t_query, 3), "query_hits": int(len(qi))}
        if n <= 20_000:
            t = time.perf_counter()
            bf = brute_force_pairs(h, radius)
            run["brute_force_s"] = round(time.perf_counter() - t, 2)
            run["equals_brute_force"] = set(zip(bf[0].tolist(), bf[1].tolist())) == found
        res["runs"].append(run)
        print(f"n={n:>9,}  chunks={idx.m}  build {t_build:6.2f} s  all pairs within {radius} bits {t_pairs:7.2f} s "
              f"({len(found)} pairs; planted recall {recall:.3f})  10k queries {t_query:6.2f} s"
              + (f"  brute force {run['brute_force_s']} s, identical={run['equals_brute_force']}"
                 if "brute_force_s" in run else ""), flush=True)
    r = res["runs"]
    for a, b in zip(r, r[1:]):
        print(f"  {a['n']:,} -> {b['n']:,} (x{b['n'] // a['n']}): all-pairs time x{b['all_pairs_s'] / max(a['all_pairs_s'], 1e-3):.1f} "
              f"(quadratic would be x{(b['n'] / a['n']) ** 2:.0f})")
    res["load"] = load()
    print(res["load"])
    return res


def residual_vs_thumbs(size: int = 128) -> dict:
    """Why near-duplicates are verified on thumbnails: bits apart under pHash and the residual pHash
    (periodic pattern notched out) vs the thumbnail test, for a re-noised copy and other bridges."""
    from semgen.curation.dedup import thumb_stats, zscore_thumbs
    from residual_hash import residual_hash

    from semgen.curation.hashing import hamming, raw_phash, simhash
    from semgen.curation.analyze import thumbnail

    a = lines(size, period=12.5, bridge=(40, 30), noise_seed=1, noise=12)
    cases = {"re-noised copy": lines(size, period=12.5, bridge=(40, 30), noise_seed=2, noise=12),
             "other bridge, same pattern": lines(size, period=12.5, bridge=(80, 90), noise_seed=3, noise=12),
             "bridge one period over": lines(size, period=12.5, bridge=(53, 30), noise_seed=4, noise=12),
             "no bridge, same pattern": lines(size, period=12.5, noise_seed=5, noise=12)}
    out = {}
    za, _ = zscore_thumbs(thumbnail(a).reshape(1, -1))
    for name, b in cases.items():
        zb, _ = zscore_thumbs(thumbnail(b).reshape(1, -1))
        local, rms = thumb_stats(za, zb, np.array([0]), np.array([0]))
        out[name] = {"phash_bits": hamming(raw_phash(a), raw_phash(b)),
                     "residual_hash_bits": hamming(residual_hash(a), residual_hash(b)),
                     "simhash_bits": hamming(simhash(thumbnail(a)), simhash(thumbnail(b))),
                     "thumb_local_sigmas": round(float(local[0]), 1), "thumb_rms": round(float(rms[0]), 3)}
        print(f"{name:28s} pHash {out[name]['phash_bits']:2d} bits  residual pHash {out[name]['residual_hash_bits']:2d} bits"
              f"  SimHash {out[name]['simhash_bits']:2d} bits"
              f"  thumbnail: local {out[name]['thumb_local_sigmas']:6.1f} sigmas, rms {out[name]['thumb_rms']:.3f}")
    return out


def verify_margins() -> dict:
    """The thumbnail test's two statistics for re-noised copies vs other bridges / other roughness."""
    from semgen.curation.analyze import analyze_image, thumb_from_bytes, thumb_noise
    from semgen.curation.dedup import thumb_stats, zscore_thumbs

    def stats(a, b):
        A, B = analyze_image(a), analyze_image(b)
        z, sd = zscore_thumbs(np.stack([thumb_from_bytes(A["thumb"]), thumb_from_bytes(B["thumb"])]))
        local, rms = thumb_stats(z, z, np.array([0]), np.array([1]))
        e = np.hypot(thumb_noise(A) / sd[0], thumb_noise(B) / sd[1])
        return float(local[0]), float(rms[0] / e)

    rows = []
    for size in (64, 128, 256):
        k = size / 64
        for noise in (4, 12, 20, 25):
            ren = [stats(lines(size, bridge=(20 * k, 15 * k), noise_seed=s, noise=noise),
                         lines(size, bridge=(20 * k, 15 * k), noise_seed=s + 1, noise=noise)) for s in (1, 3, 5, 7)]
            oth = [stats(lines(size, bridge=(20 * k, 15 * k), noise_seed=s, noise=noise),
                         lines(size, bridge=(40 * k, 45 * k), noise_seed=s + 1, noise=noise)) for s in (1, 3)]
            ler = [stats(lines(size, bridge=(20 * k, 15 * k), noise_seed=1, noise=noise),
                         lines(size, ler_seed=5, bridge=(20 * k, 15 * k), noise_seed=2, noise=noise))]
            row = {"size": size, "noise": noise, "renoised_max_local": max(r[0] for r in ren),
                   "renoised_max_ratio": max(r[1] for r in ren), "other_bridge_min_local": min(r[0] for r in oth),
                   "other_roughness_ratio": ler[0][1]}
            rows.append(row)
            print(f"{size:3d} px noise {noise:2d}: re-noised copy local <= {row['renoised_max_local']:4.1f} sigmas, "
                  f"rms/predicted <= {row['renoised_max_ratio']:.2f} | other bridge local >= "
                  f"{row['other_bridge_min_local']:5.1f} | other roughness rms/predicted {row['other_roughness_ratio']:.2f}")
    return {"rows": rows}


# -- the labelled 10k set for the cleanvision comparison --------------------------------------

def make_data(root, n: int = 10_000, size: int = 128, seed: int = 0) -> dict:
    """A dataset dir with known near-duplicates, exact copies, blurred images and 'same pattern, other
    defect' pairs. Ground truth goes to ``truth.json`` beside it."""
    root = Path(root)
    if (root / "truth.json").exists():
        return json.loads((root / "truth.json").read_text())
    rng = np.random.default_rng(seed)
    n_renoised, n_exact, n_blur = n // 20, n // 50, n // 33
    n_base = n - n_renoised - n_exact - n_blur
    n_patterns = n_base // 10  # ten different bridges on each pattern
    imgs, names, kinds = [], [], []
    pattern = {}
    cells: dict = {}
    for k in range(n_base):
        p = k // 10
        if p not in pattern:
            pattern[p] = dict(period=float(rng.uniform(7, 20)), angle=float(rng.choice([0, 90])), ler_seed=p)
            # ten different bridges: distinct (gap, position along the lines) cells, all inside the image
            per = pattern[p]["period"]
            gaps = range(1, int(size // per) - 1)
            grid = [(g, a) for g in gaps for a in (16, 40, 64, 88, 112)]
            cells[p] = [grid[c] for c in rng.choice(len(grid), 10, replace=False)]
        gap, along = cells[p][k % 10]
        u = (gap + 0.75) * pattern[p]["period"]  # the middle of that gap
        b = (u, float(along)) if pattern[p]["angle"] == 0 else (float(along), u)
        imgs.append(lines(size, bridge=b, noise_seed=k, noise=float(rng.uniform(5, 15)), **pattern[p]))
        names.append(f"base_{k:06d}")
        kinds.append(("base", p))
    truth = {"near_dup_pairs": [], "exact_pairs": [], "blurry": [], "same_pattern_groups": n_patterns}
    for k in range(n_renoised):
        src = int(rng.integers(n_base))
        a = imgs[src].astype(np.float32) + rng.normal(0, 6, imgs[src].shape)
        imgs.append(np.clip(a, 0, 255).astype(np.uint8))
        names.append(f"renoised_{k:06d}")
        truth["near_dup_pairs"].append([names[src], names[-1]])
    for k in range(n_exact):
        src = int(rng.integers(n_base))
        imgs.append(imgs[src].copy())
        names.append(f"exact_{k:06d}")
        truth["exact_pairs"].append([names[src], names[-1]])
    for k in range(n_blur):
        p = pattern[int(rng.integers(n_patterns))]
        img = lines(size, noise=0, **p).astype(np.float32)
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(3, 5))) + rng.normal(0, 1.0, img.shape)
        imgs.append(np.clip(img, 0, 255).astype(np.uint8))
        names.append(f"blur_{k:06d}")
        truth["blurry"].append(names[-1])
    ds = DatasetDir.create(root)
    with ds.appender() as app:
        for name, img in zip(names, imgs):
            data = encode_png(img)
            fn = f"images/clean/{name}.png"
            ds.write_file(fn, data)
            app.append({"file_name": fn, "id": name, "label": "clean", "source": "procedural",
                        "sha256": sha256_bytes(data), "width": size, "height": size})
    ds.write_info(command="bench_curation.py data")
    (root / "truth.json").write_text(json.dumps(truth))
    return truth


def score_findings(truth: dict, dup_pairs, blurry) -> dict:
    """Compare found duplicate pairs (of names) and blurry names with the ground truth."""
    def key(a, b):
        return tuple(sorted((a, b)))

    want_near = {key(*p) for p in truth["near_dup_pairs"]}
    want_exact = {key(*p) for p in truth["exact_pairs"]}
    found = {key(a, b) for a, b in dup_pairs}
    # a pair between two base images is a false alarm (all base images are distinct by construction;
    # most such alarms are two different bridges on the same pattern)
    false = {p for p in found if p[0].startswith("base_") and p[1].startswith("base_")}
    blur = set(blurry)
    want_blur = set(truth["blurry"])
    return {"near_dup_recall": round(len(found & want_near) / max(len(want_near), 1), 4),
            "exact_recall": round(len(found & want_exact) / max(len(want_exact), 1), 4),
            "false_pairs_between_distinct_images": len(false),
            "blurry_recall": round(len(blur & want_blur) / max(len(want_blur), 1), 4),
            "blurry_false_alarms": len(blur - want_blur)}


def ours(root, workers: int = 2) -> dict:
    """semgen's near-duplicates and too_blurry on the labelled set; times the whole curate run (no cache)."""
    from semgen.curation.curate import curate

    truth = make_data(root)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        res = curate(root, Path(d) / "out", workers=workers, cache=False)
        dt = time.perf_counter() - t
    by_id = {it.id: it for it in res.items}
    pairs = []
    for it in res.items:
        if it.duplicate_of:
            pairs.append((it.duplicate_of, it.id))
    # a near duplicate that is also blurry was never compared (it was rejected first): count pairs
    # only; blurry = anything with too_blurry
    blurry = [it.id for it in res.items if "too_blurry" in it.reasons]
    out = {"tool": "semgen", "seconds": round(dt, 2), "workers": workers, "n": len(by_id),
           **score_findings(truth, pairs, blurry), "load": load()}
    print(json.dumps(out), flush=True)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "--child":
        print(json.dumps(measure_files(json.loads(Path(argv[1]).read_text()), int(argv[2]))))
        return 0
    if len(argv) >= 4 and argv[0] == "--child-steady":
        files = json.loads(Path(argv[1]).read_text())
        print(json.dumps(measure_steady(files, [int(n) for n in argv[3:]], int(argv[2]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--baseline", metavar="DIR", help="checkout of the old code: old, new and their ratio")
    p.add_argument("--repeat", type=int, default=3, help="with --baseline: old and new alternated this many times")
    p = sub.add_parser("steady", help="analysis time over growing counts of files: the pool's steady rate")
    p.add_argument("--n", type=int, nargs="+", default=[64, 2000, 6000])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--baseline", metavar="DIR", help="checkout of the old code: old and new steady rates alternated")
    p.add_argument("--repeat", type=int, default=3, help="with --baseline: old and new alternated this many times")
    p = sub.add_parser("index")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--radius", type=int, default=8)
    p = sub.add_parser("data")
    p.add_argument("dir")
    p.add_argument("--n", type=int, default=10_000)
    p = sub.add_parser("ours")
    p.add_argument("dir")
    p.add_argument("--workers", type=int, default=2)
    sub.add_parser("residual")
    sub.add_parser("verify")
    sub.add_parser("all")
    a = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if a.what == "throughput" and a.baseline:
        if not (Path(a.baseline) / "semgen").is_dir():
            raise SystemExit(f"--baseline {a.baseline}: no semgen/ package there (want a checkout of the repo)")
        r = compare_throughput(a.baseline, a.n, a.workers, a.repeat)
    elif a.what == "throughput":
        r = throughput(a.n, a.workers)
    elif a.what == "steady" and a.baseline:
        r = compare_steady(a.baseline, tuple(a.n), a.size, a.workers, a.repeat)
    elif a.what == "steady":
        r = steady(tuple(a.n), a.size, a.workers)
    elif a.what == "index":
        r = index_scaling(tuple(a.sizes), a.radius)
    elif a.what == "data":
        r = make_data(a.dir, a.n)
        print(f"{a.dir}: {a.n} images; truth: {len(r['near_dup_pairs'])} re-noised copies, "
              f"{len(r['exact_pairs'])} exact copies, {len(r['blurry'])} blurred, {r['same_pattern_groups']} patterns "
              "with 10 different bridges each")
        return 0
    elif a.what == "verify":
        r = verify_margins()
    elif a.what == "residual":
        r = residual_vs_thumbs()
    elif a.what == "ours":
        r = ours(a.dir, a.workers)
    else:
        r = {"throughput": throughput(), "index": index_scaling()}
    (OUT / f"curation_{a.what}.json").write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
