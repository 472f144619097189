"""Whole-dataset operations: summary, validation, merge, split."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ManifestError, SemgenError
from ..imageio import sha256_file, write_bytes_atomic
from .dataset import DatasetDir, current_command
from .lock import LOCK_FILES, lock_dir
from .schema import MANIFEST_NAME, record_key
from .sources import iter_source


def summarize(root) -> dict:
    """Counts by class, source and generator, as ``semgen info`` prints them."""
    ds = DatasetDir.open(root)
    recs = ds.records()
    info = ds.read_info()
    gens = Counter(
        f"{r['generator']['name']}@{r['generator'].get('version', '?')}" if isinstance(r.get("generator"), dict)
        else str(r["generator"]) for r in recs if r.get("generator")
    )
    sizes = Counter(f"{r['width']}x{r['height']}" for r in recs)
    return {
        "root": str(ds.root),
        "schema_version": info.get("schema_version"),
        "semgen_version": info.get("semgen_version"),
        "num_records": len(recs),
        "class_counts": dict(sorted(Counter(r["label"] for r in recs).items())),
        "sources": dict(sorted(Counter(r["source"] for r in recs).items())),
        "generators": dict(sorted(gens.items())),
        "sizes": dict(sizes.most_common()),
        "with_masks": sum(1 for r in recs if r.get("mask_file_name")),
        "commands": info.get("commands", []),
        "platforms": info.get("platforms", []),
    }


def validate_dir(root, *, check_hash: bool = True) -> list[str]:
    """Check every record against its files. Returns a list of problems (empty if all is well)."""
    ds = DatasetDir.open(root)
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        records = ds.records(strict=True)
    except ManifestError as e:
        return [str(e)]
    for i, rec in enumerate(records, 1):
        key = record_key(rec)
        if key in seen:
            problems.append(f"line {i}: duplicate record {key!r} (first at line {seen[key]})")
        seen.setdefault(key, i)
        p = ds.path(rec["file_name"])
        if not p.is_file():
            problems.append(f"line {i}: {rec['file_name']} is missing")
            continue
        if check_hash and sha256_file(p) != rec["sha256"]:
            problems.append(f"line {i}: {rec['file_name']} does not match its sha256")
            continue
        try:
            from PIL import Image

            with Image.open(p) as im:
                if im.size != (rec["width"], rec["height"]):
                    problems.append(f"line {i}: {rec['file_name']} is {im.size[0]}x{im.size[1]}, "
                                    f"record says {rec['width']}x{rec['height']}")
        except Exception as e:  # noqa: BLE001 - any decoding failure is a problem to report
            problems.append(f"line {i}: {rec['file_name']} cannot be opened ({e})")
        if rec.get("mask_file_name") and not ds.path(rec["mask_file_name"]).is_file():
            problems.append(f"line {i}: mask {rec['mask_file_name']} is missing")
    return problems


def check_writable_dir(path, name: str = "--out") -> Path:
    """Raise a one-line :class:`SemgenError` unless ``path`` is, or can be made as, a writable dir.

    Creates nothing that stays: a probe dir is made and removed in ``path`` or, where ``path`` does
    not exist yet, in its nearest existing ancestor. Commands call it before any long work, so a
    read-only or file ``--out`` is a message, not a traceback after minutes of training (issue 14).
    (A permission test would not do: root passes ``os.access`` on read-only mounts.)

    Parameters
    ----------
    path : path
        The output dir.
    name : str
        How the message names it (``--out``, ``the run dir``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SemgenError(f"{name} {path} exists and is not a directory")
    base = path
    while not base.exists() and base.parent != base:  # where the missing dirs would be made
        base = base.parent
    if not base.is_dir():
        raise SemgenError(f"{name} {path} cannot be made: {base} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".semgen-write-test-", dir=base))
    except OSError as e:
        raise SemgenError(f"{name} {path} cannot be written ({e.strerror or e})") from None
    return path


#: Marker file in an output dir that a merge or curate is building from nothing; see :func:`new_output`.
PARTIAL_NAME = ".semgen.partial"


def link_or_copy(src, dst) -> Path:
    """Hard-link ``src`` to ``dst`` (a copy where links fail), atomically; an identical link stays.

    The one way semgen puts an existing file into a dataset dir without re-encoding it (merge,
    split, curate, import, ablation subsets). The file appears under its name only when whole
    (temporary name + rename), so a crash or a full disk never leaves a truncated copy that a later
    run would take for done. A ``dst`` that already is ``src`` (the same inode) is left as it is:
    renaming a hard link over another link of the same file is a no-op that would leave the
    temporary name behind.

    Returns
    -------
    Path
        ``dst``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.png").write_bytes(b"x")
    >>> link_or_copy(d / "a.png", d / "sub" / "b.png").read_bytes()
    b'x'
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        try:
            if os.path.samefile(src, dst):
                return dst
        except OSError:
            pass
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def _clear_dir(root: Path) -> None:
    """Remove everything in ``root`` except the lock files (held by this process), marker last."""
    for p in sorted(root.iterdir(), key=lambda p: p.name == PARTIAL_NAME):
        if p.name in LOCK_FILES:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


@contextlib.contextmanager
def new_output(root, what: str) -> Iterator[DatasetDir]:
    """Lock the output dataset dir ``root`` and build it, leaving nothing half-made behind.

    A command that makes a dataset dir from nothing (``merge``, ``curate`` into a new ``--out``)
    used to leave, after a ``kill -9`` or a full disk, a dir with images but no manifest, which the
    re-run refused as "not empty and is not a dataset dir" (issue 14). Now such a run marks the dir
    with :data:`PARTIAL_NAME` before writing anything, and removes the mark once ``dataset.json``
    is written. Then:

    - an exception in the body (a full disk, a bad input found late, Ctrl-C) removes what the run
      wrote, and the dir itself if the run created it;
    - after a ``kill -9`` the mark is still there, so the next run knows that everything in the
      dir is its own unfinished work, clears it and starts again: the same command resumes.

    A dir that already holds a dataset (e.g. curate re-run on its own output) is written in place,
    with no mark: its files are replaced atomically, so a crash leaves the previous output.

    Parameters
    ----------
    root : path
        The output dir.
    what : str
        The command, written into the mark (for a person who finds it).

    Yields
    ------
    DatasetDir
        The output, locked (:func:`~semgen.manifests.lock_dir`) for the whole body.
    """
    root = Path(root)
    created = not root.exists()
    try:
        with lock_dir(root):
            marker = root / PARTIAL_NAME
            if marker.exists():  # a run of ours was killed here: all of it is unfinished work
                _clear_dir(root)
            dst = DatasetDir.create(root)
            fresh = not (dst.manifest_path.exists() or dst.info_path.exists())
            try:
                if fresh:
                    write_bytes_atomic(marker, f"{what} is building this dir; re-run it to finish\n".encode())
                yield dst
            except BaseException:
                if fresh:
                    _clear_dir(root)
                raise
            if fresh:
                marker.unlink()
    except BaseException:
        if created:  # after the lock's release removed its files: the dir is empty again
            try:
                root.rmdir()
            except OSError:
                pass
        raise


@dataclass
class MergeResult:
    """What :func:`merge_dirs` wrote, and the input records it left out (``skip_bad`` only)."""

    dataset: DatasetDir
    records: int
    skipped: list[str] = field(default_factory=list)


def merge_dirs(inputs, out, *, sort: bool = True, skip_bad: bool = False) -> MergeResult:
    """Merge dataset dirs into the new dataset dir ``out``; see :func:`merge`.

    Every input record is checked before anything is written: its line parses, it is a valid
    record, its image exists and matches its sha256 (a truncated or changed file does not), its mask
    exists. A bad record is an error that names it and writes nothing, or, with ``skip_bad``, is
    left out and listed in :attr:`MergeResult.skipped`. Two inputs that give one key (or one
    file name) different bytes are an error either way: that is a conflict, not a bad record.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SemgenError(f"merge output {out} exists and is not a directory")
    if (out / MANIFEST_NAME).exists() and (out / MANIFEST_NAME).stat().st_size:
        raise SemgenError(f"merge output {out} already holds records; merge into a new dir")
    srcs = [DatasetDir.open(p) for p in inputs]
    merged: dict[str, tuple[DatasetDir, dict]] = {}
    names: dict[str, tuple[str, str]] = {}  # file name in the output -> (its sha256, first record key)
    bad: list[str] = []
    configs: dict = {}
    platforms: set[str] = set()
    hashed: dict[Path, str] = {}
    for src in srcs:
        info = src.read_info()
        configs.update(info.get("configs", {}))
        platforms.update(info.get("platforms", []))
        if not src.manifest_path.exists():
            continue
        def on_bad(n, obj, why, src=src):
            bad.append(f"{src.manifest_path}:{n}: {why}")

        for img, _, rec, n in iter_source(src.root, on_bad=on_bad):
            where = f"{src.manifest_path}:{n}"
            mask = src.path(rec["mask_file_name"]) if rec.get("mask_file_name") else None
            key = record_key(rec)
            if key in merged:
                if merged[key][1]["sha256"] != rec["sha256"]:
                    raise SemgenError(f"record {key!r} differs between inputs; cannot merge")
                continue  # the same image again (overlapping shards): kept once
            if not img.is_file():
                bad.append(f"{where}: {rec['file_name']} is missing")
                continue
            if img not in hashed:
                hashed[img] = sha256_file(img)
            if hashed[img] != rec["sha256"]:
                bad.append(f"{where}: {rec['file_name']} does not match its sha256 (changed or truncated)")
                continue
            if mask is not None and not mask.is_file():
                bad.append(f"{where}: mask {rec['mask_file_name']} is missing")
                continue
            # two records may share a file name only for the same bytes: the output holds one file
            files = [(rec["file_name"], rec["sha256"])]
            if mask is not None:
                files.append((rec["mask_file_name"], sha256_file(mask)))
            for name, digest in files:
                if names.setdefault(name, (digest, key))[0] != digest:
                    raise SemgenError(f"{name} is a different file in two inputs (records "
                                      f"{names[name][1]!r} and {key!r}); cannot merge")
            merged[key] = (src, rec)
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more bad record(s))" if len(bad) > 1 else ""
        raise SemgenError(f"{bad[0]}{more}; nothing was merged: fix the input, or pass --skip-bad to leave "
                          "bad records out")
    keys = sorted(merged) if sort else list(merged)
    with new_output(out, "semgen merge") as dst:
        if dst.manifest_path.exists() and dst.manifest_path.stat().st_size:  # checked again under the lock
            raise SemgenError(f"merge output {dst.root} already holds records; merge into a new dir")
        recs = []
        for k in keys:
            src, rec = merged[k]
            for fld in ("file_name", "mask_file_name"):
                if rec.get(fld):
                    link_or_copy(src.path(rec[fld]), dst.path(rec[fld]))
            recs.append(rec)
        with dst.appender() as app:
            for rec in recs:
                app.append(rec)
        extra = {**({"configs": configs} if configs else {}), **({"platforms": sorted(platforms)} if platforms else {})}
        dst.write_info(command=current_command(), records=recs, extra=extra or None)
    if len(platforms) > 1:
        # each image is a valid sample; only "N shards merged equal one run byte for byte" is lost
        warnings.warn(f"the inputs were made on {len(platforms)} platforms ({' | '.join(sorted(platforms))}): the "
                      "merged dir may differ in bytes from one made on a single machine", stacklevel=2)
    return MergeResult(dst, len(recs), bad)


def merge(inputs, out, *, sort: bool = True, skip_bad: bool = False) -> DatasetDir:
    """Merge dataset dirs into ``out`` (hard links where possible, else copies).

    Records with the same key and the same sha256 are the same image (e.g. shards that overlap)
    and kept once; the same key with different bytes is an error. With ``sort`` the merged
    manifest is ordered by record key, so N shards merged equal one unsharded run byte for byte
    (shards made on machines of one platform: inputs from several, ``platforms`` in their
    ``dataset.json``, warn).
    A bad input record (unreadable line, missing or mismatched file) is an error before anything
    is written, or left out with ``skip_bad`` (:func:`merge_dirs` says which). An interrupted merge
    leaves nothing half-made: the same command runs again (:func:`new_output`).
    """
    return merge_dirs(inputs, out, sort=sort, skip_bad=skip_bad).dataset


def split(root, outs: dict[str, float], *, seed: int = 0, group_field: str | None = None) -> dict[str, DatasetDir]:
    """Split a dataset dir into several, stratified by label: ``{"out/train": .8, "out/val": .2}``.

    Records sharing ``group_field`` (e.g. a near-duplicate group) stay in one split.
    """
    src = DatasetDir.open(root)
    recs = src.records()
    names = list(outs)
    fracs = np.array([outs[n] for n in names], dtype=float)
    if (fracs <= 0).any():
        raise SemgenError("split fractions must be positive")
    fracs = fracs / fracs.sum()
    rng = np.random.default_rng(seed)

    def group_of(r: dict) -> str:
        return str(r[group_field]) if group_field and r.get(group_field) is not None else record_key(r)

    assignment: dict[str, str] = {}
    by_label: dict[str, list[str]] = {}
    for r in recs:
        g = group_of(r)
        by_label.setdefault(r["label"], [])
        if g not in by_label[r["label"]]:
            by_label[r["label"]].append(g)
    for label in sorted(by_label):
        groups = sorted(by_label[label])
        rng.shuffle(groups)
        bounds = np.round(np.cumsum(fracs) * len(groups)).astype(int)
        start = 0
        for name, end in zip(names, bounds):
            for g in groups[start:end]:
                assignment.setdefault(g, name)
            start = end
    result = {name: DatasetDir.create(name) for name in names}
    for name, dst in result.items():
        picked = [r for r in recs if assignment[group_of(r)] == name]
        with dst.appender() as app:
            for rec in picked:
                for fld in ("file_name", "mask_file_name"):
                    if rec.get(fld):
                        link_or_copy(src.path(rec[fld]), dst.path(rec[fld]))
                app.append(rec)
        dst.write_info(command=current_command(), records=picked)
    return result
