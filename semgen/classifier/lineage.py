"""What a model was trained on: the chain of ``--init`` stages behind a run dir, read from the
``config.json`` files the runs already write.

A model of the product's recipe is three stages: ImageNet weights, then ``semgen pretrain`` on
streamed procedural images, then ``semgen train`` on the user's real images. A pretraining run may
itself start from another (a second cycle), so "how much synthetic data is in this model" is a walk
down the chain, not a field of one config. :func:`lineage` does the walk; :func:`synthetic_budget`
sums it, telling samples *seen* from *distinct* scenes: sample ``i`` of a stream is a pure
function of its master seed and generators (:mod:`semgen.pretrain.stream`), so two cycles
with the same seed see the same scenes again.

>>> from semgen.classifier.lineage import lineage, synthetic_budget   # doctest: +SKIP
>>> [s["kind"] for s in lineage("runs/ft")]                            # doctest: +SKIP
['imagenet', 'pretrain', 'pretrain', 'train']
>>> synthetic_budget(lineage("runs/ft"))                               # doctest: +SKIP
{'seen': 153600, 'distinct': 153600, 'cycles': 2}
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SemgenError
from ..imageio import sha256_file
from ..run_state import latest_step
from .checkpoint import CONFIG
from .ensemble import ENSEMBLE_FILE


def _stream_key(p: dict) -> tuple:
    from ..pretrain.stream import stream_key  # lazy: semgen.pretrain imports the classifier package

    return stream_key(p)

#: A chain longer than this is a loop (a run dir that was overwritten by one of its descendants).
MAX_DEPTH = 64


def _run_config(folder: Path) -> dict:
    try:
        return json.loads((folder / CONFIG).read_text())
    except FileNotFoundError:
        raise SemgenError(f"{folder}: no {CONFIG}; not a semgen run dir or checkpoint folder") from None
    except (OSError, ValueError) as e:
        raise SemgenError(f"{folder / CONFIG}: unreadable ({e})") from None


def _streamed(images: int, p: dict) -> int:
    """The streamed share of a pretraining run's samples: with ``data`` dirs mixed in, each batch of
    ``batch_size`` holds ``max(1, round(data_fraction * batch_size))`` dataset images
    (:class:`semgen.pretrain.train.PretrainConfig`)."""
    if not p.get("data"):
        return images
    b = int(p.get("batch_size") or 64)
    return images * (b - max(1, round(float(p.get("data_fraction", 0.25)) * b))) // b


def _stage(folder: Path, cfg: dict) -> dict:
    """One run dir's own stage record (no recursion)."""
    if "pretrain" in cfg:
        p, n = cfg["pretrain"], int(cfg.get("images_seen") or 0)
        return {"kind": "pretrain", "run": str(folder), "images": n,
                "seed": p.get("seed"), "size": p.get("size"), "labels": p.get("labels"),
                "generators": p.get("generators"), "data": p.get("data"), "stream": list(_stream_key(p)),
                "streamed": _streamed(n, p), **({"profile": _stream_key(p)[2][:12]} if p.get("profile") else {}),  # the key's profile sha256
                **({"teachers": list(p["teachers"])} if p.get("teachers") else {})}
    if "train" in cfg or "request" in cfg:
        req = cfg.get("request") or {}
        st = {"kind": "train", "run": str(folder), "images": (cfg.get("train") or {}).get("n"),
              "seed": req.get("seed"), "size": cfg.get("size"),
              "data": [d.get("path") for d in req.get("data") or []]}
        saved = None if (folder / "summary.json").exists() else latest_step(folder / "resume")
        if saved is not None:  # killed after that epoch: `semgen train` with the same settings continues it
            st["unfinished"] = [saved, req.get("epochs")]
        return st
    return {"kind": "checkpoint", "run": str(folder)}


def lineage(run, *, verify: bool = True) -> list[dict]:
    """The stages behind a run dir or checkpoint folder, oldest first (the run itself last).

    Parameters
    ----------
    run : str or path
        A ``semgen train`` or ``semgen pretrain`` run dir, or a checkpoint folder.
    verify : bool
        Hash each init's weights file and compare it with the sha256 its child recorded; a stage
        whose init's file changed since (retrained in place) gets ``"init_changed": True``.

    Returns
    -------
    list of dict
        Each has ``kind``: ``"scratch"``, ``"imagenet"``, ``"semgen"``, ``"safetensors"`` (a bare
        backbone), ``"pretrain"``, ``"train"``, ``"checkpoint"`` (a folder of neither), or
        ``"missing"`` (an init whose files are gone: the walk stops there). Run stages carry ``run``,
        ``images`` (samples seen for ``pretrain``, training images for ``train``), ``seed`` and
        ``size``; ``pretrain`` also ``labels``, ``generators``, ``data`` and ``streamed`` (its
        procedural share of ``images``).

    Raises
    ------
    SemgenError
        ``run`` is not a run dir, is an ensemble (its members each have a lineage), or the chain
        loops.
    """
    folder = Path(run)
    if (folder / ENSEMBLE_FILE).is_file():
        raise SemgenError(f"{folder} is an ensemble: its members each have a lineage "
                          f"(its ensemble.json lists them)")
    stages: list[dict] = []
    seen: set[str] = set()
    while True:
        key = str(folder.resolve())
        if key in seen or len(stages) >= MAX_DEPTH:
            raise SemgenError(f"{run}: the --init chain loops at {folder} (a run dir overwritten by a descendant)")
        seen.add(key)
        cfg = _run_config(folder)
        stages.append(_stage(folder, cfg))
        init = cfg.get("init") or {}
        kind = init.get("kind", "scratch")
        if kind != "checkpoint":
            base = {"kind": kind}
            if init.get("file"):
                base["file"] = init["file"]
            stages.append(base)
            break
        weights = Path(init.get("checkpoint") or init["file"])
        parent = weights.parent if weights.suffix else weights
        if not (parent / CONFIG).is_file():
            stages.append({"kind": "missing", "file": str(weights)})
            break
        if verify and init.get("sha256") and weights.is_file() and sha256_file(weights) != init["sha256"]:
            stages[-1]["init_changed"] = True  # the child was trained from other weights than are there now
        folder = parent
    stages.reverse()
    return stages


def _stream_of(stage: dict) -> tuple[str, int]:
    """A pretraining stage's stream (as a hashable key) and its streamed sample count."""
    return json.dumps(stage.get("stream")), int(stage.get("streamed", stage.get("images")) or 0)


def synthetic_budget(stages: list[dict]) -> dict:
    """Streamed procedural samples in a lineage: ``seen`` (summed over pretraining cycles) and
    ``distinct`` (scenes: cycles with the same :func:`~semgen.pretrain.stream.stream_key`, i.e.
    seed and generators, repeat the same prefix of one stream, so only the longest counts), and
    ``cycles``.

    A pretraining run that also mixed in dataset dirs (``data``) counts its ``streamed`` share only.

    Examples
    --------
    >>> st = [{"kind": "imagenet"}, {"kind": "pretrain", "images": 76800, "stream": [0, None]},
    ...       {"kind": "pretrain", "images": 76800, "stream": [0, None]}, {"kind": "train", "images": 240}]
    >>> synthetic_budget(st)
    {'seen': 153600, 'distinct': 76800, 'cycles': 2}
    >>> st[2]["stream"] = [1, None]
    >>> synthetic_budget(st)["distinct"]
    153600
    """
    longest: dict[str, int] = {}
    seen = cycles = 0
    for s in stages:
        if s.get("kind") != "pretrain":
            continue
        stream, n = _stream_of(s)
        longest[stream] = max(longest.get(stream, 0), n)
        seen += n
        cycles += 1
    return {"seen": seen, "distinct": sum(longest.values()), "cycles": cycles}


def describe(stages: list[dict]) -> list[str]:
    """One line per stage and a budget line: what ``semgen info RUN`` prints.

    Examples
    --------
    >>> st = [{"kind": "imagenet"}, {"kind": "pretrain", "run": "pt", "images": 76800, "seed": 0,
    ...        "labels": "fine", "stream": [0, None]}, {"kind": "train", "run": "ft", "images": 240, "seed": 1, "data": ["real"]}]
    >>> print("\\n".join(describe(st)))
      1. imagenet
      2. pretrain  pt: 76,800 streamed samples, seed 0, fine labels
      3. train     ft: 240 images from real, seed 1
    synthetic samples: 76,800 seen, 76,800 distinct scenes, 1 pretraining cycle
    """
    lines, streams = [], set()
    for i, s in enumerate(stages, 1):
        kind, what = s["kind"], ""
        if kind == "pretrain":
            key, n = _stream_of(s)
            what = (f"{s['run']}: {n:,} streamed samples, seed {s.get('seed')}, "
                    f"{s.get('labels')} labels" + (" (the same scenes as an earlier cycle)" if key in streams else "")
                    + (f", profile {s['profile']}" if s.get("profile") else "")
                    + (f", plus dataset dirs {', '.join(map(str, s['data']))}" if s.get("data") else "")
                    + (f", distilled from {', '.join(map(str, s['teachers']))}" if s.get("teachers") else ""))
            streams.add(key)
        elif kind == "train":
            what = f"{s['run']}: {s.get('images')} images from {', '.join(map(str, s.get('data') or [])) or '?'}, seed {s.get('seed')}"
            if s.get("unfinished"):
                what += (f" [unfinished: {s['unfinished'][0]} of {s['unfinished'][1]} epochs done; the same "
                         "semgen train command continues it]")
        elif kind in ("missing", "safetensors") or s.get("file") and kind != "imagenet":
            what = str(s.get("file", ""))
        elif kind == "checkpoint":
            what = s["run"]
        if s.get("init_changed"):
            what += " [its init's weights changed since it was trained]"
        lines.append(f"  {i}. {kind:<9} {what}".rstrip())
    b = synthetic_budget(stages)
    lines.append(f"synthetic samples: {b['seen']:,} seen, {b['distinct']:,} distinct scenes, "
                 f"{b['cycles']} pretraining cycle{'s' if b['cycles'] != 1 else ''}")
    return lines
