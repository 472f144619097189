"""Whole-dataset operations: summary, validation, merge, split."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ManifestError, SemgenError
from ..imageio import sha256_file
from .dataset import DatasetDir, current_command
from .schema import record_key


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


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge(inputs, out, *, sort: bool = True) -> DatasetDir:
    """Merge dataset dirs into ``out`` (hard links where possible, else copies).

    Records with the same key and the same sha256 are the same image (e.g. shards that overlap)
    and kept once; the same key with different bytes is an error. With ``sort`` the merged
    manifest is ordered by record key, so N shards merged equal one unsharded run byte for byte.
    """
    srcs = [DatasetDir.open(p) for p in inputs]
    dst = DatasetDir.create(out)
    if dst.manifest_path.exists() and dst.manifest_path.stat().st_size:
        raise SemgenError(f"merge output {dst.root} already holds records; merge into a new dir")
    merged: dict[str, dict] = {}
    configs: dict = {}
    for src in srcs:
        configs.update(src.read_info().get("configs", {}))
        for rec in src.iter_records():
            key = record_key(rec)
            if key in merged:
                if merged[key]["sha256"] != rec["sha256"]:
                    raise SemgenError(f"record {key!r} differs between inputs; cannot merge")
                continue
            for field in ("file_name", "mask_file_name"):
                if rec.get(field):
                    _link_or_copy(src.path(rec[field]), dst.path(rec[field]))
            merged[key] = rec
    recs = [merged[k] for k in (sorted(merged) if sort else merged)]
    with dst.appender() as app:
        for rec in recs:
            app.append(rec)
    dst.write_info(command=current_command(), records=recs, extra={"configs": configs} if configs else None)
    return dst


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
                for field in ("file_name", "mask_file_name"):
                    if rec.get(field):
                        _link_or_copy(src.path(rec[field]), dst.path(rec[field]))
                app.append(rec)
        dst.write_info(command=current_command(), records=picked)
    return result
