"""Procedural generation pipeline: one image (:func:`generate_one`) and a run into a dataset dir
(:func:`generate`) with workers, shards and resume.

Image ``i`` of class ``label`` under master seed ``s`` is a pure function of
``(generator version, image_seed(s, label, i), size, overrides)``, so the bytes are the same
whatever the number of workers, shards or machines. Records are appended in index order (chunks of
indices over a process pool or a Ray cluster, a bounded window in flight, results taken in order);
files are written atomically before their record, so a killed run leaves a manifest prefix whose
every record has its file, and re-running the same command skips the ids already recorded. On Ray
the workers return the PNG bytes and this process writes them, so the nodes share no filesystem
and a task that Ray redoes after its worker died is written once.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ... import deflate  # noqa: F401  (encode_png's compiled encoder, loaded before a pool forks its workers)
from ...errors import SemgenError
from ...imageio import encode_png, sha256_bytes
from ...manifests import DatasetDir, current_command, lock_dir
from ...parallel import Backend, map_items
from ...seeding import image_seed, rng_for
from . import DEFAULT_OUT, POOL_PRELOAD
from .imaging import render
from .overlays import apply_overlays
from .registry import Generator, create_generator

MIN_SIZE, MAX_SIZE = 32, 4096
MAX_N = 10_000_000  #: most images of one class in one run (its manifest alone would be ~20 GB)
SOURCE = "procedural"


@dataclass
class Sample:
    """One generated image and what it is made of."""

    image: np.ndarray                 #: uint8 (size, size)
    mask: np.ndarray | None           #: uint16 instance mask, None when there is no defect
    params: dict                      #: every sampled parameter (class + imaging)
    bboxes: list = field(default_factory=list)  #: [[x0, y0, x1, y1], ...] per mask instance
    meta: dict = field(default_factory=dict)    #: layout, view, orientation, pitch, ...


def _plain(v: Any) -> Any:
    """JSON-friendly Python scalars (numpy scalars and tuples converted)."""
    # exact-type fast paths first: a record holds dozens of plain str / int / float / bool values, each
    # of which went through the whole isinstance chain below (np.float64, a float subclass, still does)
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return v
    if t is float:
        return v if math.isfinite(v) else None
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def generate_one(gen: Generator | str, seed: int, size: int = 256, overrides: dict | None = None) -> Sample:
    """Make one image: sample parameters, build the scene, image it.

    Parameters
    ----------
    gen : Generator or str
        A generator or its name / label.
    seed : int
        The image's own seed (see :func:`semgen.seeding.image_seed`).
    size : int
        Output width and height in pixels.
    overrides : dict, optional
        ``{param: value}`` fixed instead of sampled (validated).
    """
    if isinstance(gen, str):
        gen = create_generator(gen)
    rng = rng_for(seed)
    p = gen.sample_params(rng, overrides)
    scene = gen.build(p, rng, int(size))
    if scene.shape != (size, size):
        raise RuntimeError(f"{gen.name}: scene is {scene.shape}, expected {(size, size)}")
    image = render(scene, p, rng)
    # nuisance overlays (info bar, markers, JPEG): a no-op for generators without overlay params
    image = apply_overlays(image, p, rng, scene)
    mask = scene.mask if scene.mask is not None and scene.mask.any() else None
    meta = dict(scene.meta)
    meta.setdefault("view", scene.view)
    return Sample(image=image, mask=mask, params=_plain(p), bboxes=scene.bboxes(), meta=_plain(meta))


# -- runs -----------------------------------------------------------------------------------------

def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"K/N"`` (K = 0..N-1) or ``(K, N)`` -> ``(K, N)``; None stays None."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            k_s, n_s = shard.split("/")
            k, n = int(k_s), int(n_s)
        except ValueError:
            raise SemgenError(f"--shard {shard!r}: expected K/N with 0 <= K < N, e.g. 0/4") from None
    else:
        k, n = (int(x) for x in shard)
    if n < 1 or not 0 <= k < n:
        raise SemgenError(f"--shard {k}/{n}: expected K/N with 0 <= K < N, e.g. 0/4")
    return k, n


def shard_range(n: int, shard: tuple[int, int] | None) -> range:
    """The contiguous indices of ``range(n)`` that shard ``(K, N)`` makes."""
    if shard is None:
        return range(n)
    k, parts = shard
    return range(k * n // parts, (k + 1) * n // parts)


def record_id(label: str, index: int) -> str:
    return f"{label}_{index:06d}"


def run_config(gen: Generator, *, seed: int, size: int, overrides: dict, profile: dict | None = None) -> dict:
    """What must match for a dir to be resumed (n and shard may differ: they only pick indices).

    ``profile`` (see :func:`run_profile`) adds ``profile`` (this class's effective overrides),
    ``profile_sha256`` and, for a tuned profile, its ``profile_reference``; a run without
    ranges or a profile has none of these keys (its ``dataset.json`` is as before profiles).
    """
    cfg = {"generator": gen.name, "version": gen.version, "label": gen.label, "seed": int(seed),
           "size": int(size), "overrides": {k: _plain(v) for k, v in sorted(overrides.items())}}
    if profile is not None:
        cfg.update(profile)
    return cfg


def run_profile(gen: Generator, profile: dict | None, pins: dict, ranges: dict) -> tuple[dict, dict, dict | None]:
    """Merge a loaded profile's overrides for ``gen`` with ``--set`` pins and ranges (``--set`` wins).

    Returns ``(pins, ranges, recorded)``: the values to fix, the sampling overrides, and what
    goes into ``dataset.json`` and every record (None when there are no ranges and no profile,
    so such runs keep their bytes): ``{"profile": canonical JSON of {"version", "classes":
    {gen.name: overrides}}, "profile_sha256": its sha256}`` (+ ``profile_reference``).
    """
    from .profile import PROFILE_VERSION, canonical_json, canonical_overrides, class_overrides, sha256_json, split_overrides

    if profile is None and not ranges:
        return pins, {}, None
    cli = {**{k: {"value": v} for k, v in pins.items()}, **ranges}
    eff = {**class_overrides(profile, gen), **canonical_overrides(gen, cli, "--set")}
    own = {"version": PROFILE_VERSION, "classes": {gen.name: dict(sorted(eff.items()))}}
    recorded = {"profile": canonical_json(own), "profile_sha256": sha256_json(own)}
    ref = (profile or {}).get("reference")
    if ref:
        recorded["profile_reference"] = ref
    pins2, ranges2 = split_overrides(eff)
    return pins2, ranges2, recorded


def remake(record: dict) -> Sample:
    """Make the image of a ``metadata.jsonl`` record again, from the record alone.

    Uses its generator, seed, size and, when present, its ``profile`` (ranges, weights and pins
    it was sampled with); the params it recorded are not used, so the result checks them.

    Examples
    --------
    >>> rec = {"generator": {"name": "ler", "version": create_generator("ler").version}, "seed": 7, "width": 32}
    >>> remake(rec).image.shape
    (32, 32)
    """
    from .profile import split_overrides, validate_profile

    gen = create_generator(record["generator"]["name"])
    if record["generator"].get("version") != gen.version:
        raise SemgenError(f"record {record.get('id', '?')} was made by {gen.name}@{record['generator'].get('version')}, "
                          f"this semgen has {gen.name}@{gen.version}: the bytes would differ")
    pins: dict = {}
    if record.get("profile"):
        prof = validate_profile(json.loads(record["profile"]), where=f"record {record.get('id', '?')} profile")
        pins, ranges = split_overrides(prof["classes"].get(gen.name, {}))
        gen = gen.with_ranges(ranges)
    return generate_one(gen, int(record["seed"]), int(record["width"]), pins)


_GENERATORS: dict[str, Generator] = {}  # per-process cache


class _Job:
    """Picklable worker state: makes image ``index`` and writes its files; returns its record."""

    def __init__(self, gen_name: str, root: str, master_seed: int, size: int, overrides: dict,
                 ranges: dict | None = None, recorded: dict | None = None):
        self.gen_name = gen_name
        self.root = root
        self.master_seed = master_seed
        self.size = size
        self.overrides = overrides
        self.ranges = ranges or {}
        self.recorded = recorded  # profile fields copied into every record

    def __call__(self, index: int) -> dict:
        rec, files = self.make(index)
        ds = DatasetDir(self.root)
        for name, data in files:
            ds.write_file(name, data)
        return rec

    def make(self, index: int) -> tuple[dict, list[tuple[str, bytes]]]:
        """Image ``index``'s record and its files ``[(file_name, PNG bytes), ...]``, nothing written."""
        key = self.gen_name + (json.dumps(self.ranges, sort_keys=True) if self.ranges else "")
        gen = _GENERATORS.get(key)
        if gen is None:
            gen = _GENERATORS[key] = create_generator(self.gen_name).with_ranges(self.ranges)
        label = gen.label
        rid = record_id(label, index)
        seed = image_seed(self.master_seed, label, index)
        s = generate_one(gen, seed, self.size, self.overrides)
        png = encode_png(s.image)
        file_name = f"images/{label}/{rid}.png"
        files = [(file_name, png)]
        rec = {
            "id": rid, "file_name": file_name, "label": label, "source": SOURCE, "sha256": sha256_bytes(png),
            "width": int(s.image.shape[1]), "height": int(s.image.shape[0]),
            "generator": {"name": gen.name, "version": gen.version}, "seed": seed, "index": int(index),
            "params": s.params, "meta": s.meta,
        }
        if self.recorded:
            rec["profile"] = self.recorded["profile"]
            rec["profile_sha256"] = self.recorded["profile_sha256"]
        if s.mask is not None:
            m = s.mask.astype(np.uint8) if int(s.mask.max()) <= 255 else s.mask
            mask_name = f"masks/{label}/{rid}.png"
            files.append((mask_name, encode_png(m)))
            rec["mask_file_name"] = mask_name
            rec["bboxes"] = s.bboxes
        elif label != "clean":
            rec["bboxes"] = []
        return rec, files


def _validate(label: str, n: int, size: int, workers: int, overrides: dict | None, ranges: dict | None = None,
              profile: dict | None = None):
    gen = create_generator(label)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise SemgenError(f"--n must be a positive integer, got {n}")
    if n > MAX_N:  # an unbounded n listed its indices first: 1e20 hung with its memory growing (issue 14)
        raise SemgenError(f"--n must be at most {MAX_N:,} images of one class per run, got {n}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise SemgenError(f"--size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise SemgenError(f"--workers must be a positive integer, got {workers}")
    pins, rngs, recorded = run_profile(gen, profile, dict(overrides or {}), dict(ranges or {}))
    fixed = gen.with_ranges(rngs).space.check_overrides(pins)
    return gen, fixed, rngs, recorded


def generate(label: str, n: int, out: str | os.PathLike = DEFAULT_OUT, *, seed: int = 0, size: int = 256,
             workers: int = 1, shard: str | tuple[int, int] | None = None, overrides: dict | None = None,
             ranges: dict | None = None, profile: dict | None = None, progress: bool = True,
             chunksize: int | None = None, backend: Backend | None = None) -> dict:
    """Generate ``n`` images of a class into dataset dir ``out`` (resuming what is already there).

    Parameters
    ----------
    label : str
        Class or generator name (aliases accepted).
    n : int
        Number of images of the whole run (a shard makes only its share of ``range(n)``).
    out : path
        Dataset dir (created if needed). Several classes may share one dir.
    seed : int
        Master seed; image ``i`` gets ``image_seed(seed, label, i)``.
    size : int
        Width and height in pixels.
    workers : int
        Processes; output bytes do not depend on it.
    shard : "K/N" or (K, N), optional
        Make only indices ``[K*n//N, (K+1)*n//N)``.
    overrides : dict, optional
        ``{param: value}`` fixed for every image (``--set name=v``).
    ranges : dict, optional
        ``{param: {"range": [lo, hi]} | {"choices": {value: weight}}}`` sampled instead of the
        defaults (``--set name=lo:hi``, ``--set name=a:2,b:1``); they override the profile's.
    profile : dict, optional
        A profile from :func:`~.profile.load_profile`; its overrides for this class apply. With
        ranges or a profile, ``dataset.json`` and every record hold the effective profile of
        this class (canonical JSON) and its sha256 (:func:`remake` needs nothing else).
    progress : bool
        Show a progress bar (only when stderr is a terminal).
    chunksize : int, optional
        Images per task (default: about 8 tasks per worker, at most 16).
    backend : Backend, optional
        Where the images are made instead of ``workers`` local processes, e.g. a
        :class:`~semgen.parallel.RayBackend` (``--executor ray``); the bytes are the same.

    Returns
    -------
    dict with ``out``, ``label``, ``generator``, ``made``, ``skipped`` (already present), ``total``.
    """
    gen, fixed, rngs, recorded = _validate(label, n, size, workers, overrides, ranges, profile)
    shard_t = parse_shard(shard)
    cfg = run_config(gen, seed=seed, size=size, overrides=fixed, profile=recorded)
    key = f"procedural:{gen.name}"
    ds = DatasetDir.create(out)          # raises on an unwritable dir or another schema
    with lock_dir(ds.root):              # one run per dir: two would interleave records (issue 14)
        ds.check_config(key, cfg)            # raises on a different configuration: nothing written yet
        for p in (ds.root / "images", ds.root / "images" / gen.label, ds.root / "masks", ds.root / "masks" / gen.label):
            if p.is_symlink():  # files would land outside the dataset dir
                raise SemgenError(f"{p} is a symbolic link; semgen writes only inside {ds.root}")
        indices = shard_range(int(n), shard_t)
        done = ds.keys()
        todo = [i for i in indices if record_id(gen.label, i) not in done]
        platforms = _platforms(ds, todo)
        ds.write_info(command=current_command(), config_key=key, config=cfg, extra=platforms)
        _remove_stale_temps(ds.root, gen.label)
        job = _Job(gen.name, str(ds.root), int(seed), int(size), fixed, rngs, recorded)
        from ...progress import progress_bar

        bar = progress_bar(total=len(todo), desc=f"procedural {gen.label}", unit="img", enabled=progress and bool(todo))
        made = 0
        try:
            with ds.appender() as app:
                for rec in _run(job, todo, workers, chunksize, backend, ds, gen):
                    app.append(rec)
                    made += 1
                    bar.update(1)
        finally:
            bar.close()
            if made:
                ds.write_info(command=current_command(), config_key=key, config=cfg, extra=platforms)
        return {"out": str(ds.root), "label": gen.label, "generator": f"{gen.name}@{gen.version}", "made": made,
                "skipped": len(indices) - len(todo), "total": len(indices)}


def _platforms(ds: DatasetDir, todo: list) -> dict | None:
    """``{"platforms": [...]}``: the dir's recorded :func:`~semgen.provenance.byte_platform` lines
    plus this machine's when it makes images (None when it makes none), and a warning when the
    images already there were made on another one: the same seeds may give other bytes there.
    With a Ray backend this is the driver's line; the cluster's machines are not asked."""
    if not todo:
        return None
    from ...provenance import byte_platform

    here, before = byte_platform(), list(ds.read_info().get("platforms", []))
    if before and here not in before:
        warnings.warn(f"{ds.root} holds images made on {' | '.join(before)}; this machine is {here}: the "
                      "images it adds are valid samples, but the same seeds may give other bytes on another "
                      "CPU class or library version (docs/procedural.md, Runs)", PlatformWarning, stacklevel=3)
    return {"platforms": sorted({*before, here})}


class PlatformWarning(UserWarning):
    """A dataset dir gets images from a machine other than the one that made those in it."""


def _remove_stale_temps(root, label: str) -> None:
    """Delete ``.NAME.PID.tmp`` files of this class left by a killed run (never a live process's)."""
    for sub in ("images", "masks"):
        d = os.path.join(root, sub, label)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            parts = name.split(".")
            if not (name.startswith(".") and name.endswith(".tmp") and len(parts) >= 4 and parts[-2].isdigit()):
                continue
            pid = int(parts[-2])
            try:
                os.kill(pid, 0)
                continue  # alive: another process may still be writing it
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            try:
                os.unlink(os.path.join(d, name))
            except FileNotFoundError:
                pass


def _run(job: _Job, todo: list[int], workers: int, chunksize: int | None, backend: Backend | None,
         ds: DatasetDir, gen: Generator) -> Iterable[dict]:
    """Records of ``todo`` in order, over :func:`semgen.parallel.map_items` (chunks of at most 16).

    Local workers write their files themselves (forkserver workers that exit when this process
    dies; see :mod:`semgen.parallel`). A remote backend's workers return the bytes and this
    process writes them, after checking the worker made them with this generator version.
    """
    remote = bool(getattr(backend, "remote", False))
    if backend is not None:
        workers = getattr(backend, "workers", workers)
    results = map_items(job.make if remote else job, todo, workers=workers, chunksize=chunksize,
                        max_chunk=16, preload=POOL_PRELOAD, backend=backend)
    for res in results:
        if not remote:
            yield res
            continue
        rec, files = res
        got = rec["generator"]["version"]
        if got != gen.version:  # another semgen on that node: its bytes are not this version's
            raise SemgenError(f"a worker made {rec['id']} with {gen.name}@{got}, this semgen has "
                              f"{gen.name}@{gen.version}: install the same semgen on every node")
        for name, data in files:
            ds.write_file(name, data)
        yield rec
