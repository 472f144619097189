"""Checkpoints: the one writer and reader of classifier weights, and ``load_run``.

A checkpoint is a folder in the layout timm and Hugging Face share:

``model.safetensors``
    The :class:`SemClassifier` state dict (no pickle). Its header metadata holds one key,
    ``semgen``: JSON with ``format``, ``format_version``, ``arch``, ``classes``, ``size``,
    ``epoch``, ``metrics`` and, for hierarchical heads, ``heads`` (so a bare file is still a model).
``config.json``
    The model config (:func:`model_config`: the same fields plus the input convention); a
    ``semgen train`` run dir adds its training config to it, a ``semgen pretrain`` run dir its own.
``qat.safetensors``
    Only for a QAT-trained model: the quantiser ranges (:mod:`semgen.classifier.qat`).

``semgen train`` writes the best epoch into the run dir itself and the last epoch into
``RUN/last/``; ``semgen pretrain`` writes its run dir the same way. Run dirs of earlier versions
(``best.pt`` / ``last.pt``, ``torch.save`` dicts) stay readable: they are loaded with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
Where a folder holds both (a ``semgen pretrain`` run dir of an earlier version), the ``.pt`` file
is read, as before; every writer here removes such stale files from the folder it writes.

>>> from semgen.classifier.checkpoint import load_run   # doctest: +SKIP
>>> model, meta = load_run("runs/a")                    # doctest: +SKIP
>>> meta["classes"], meta["size"], meta["checkpoint"]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .. import __version__
from ..errors import SemgenError
from ..imageio import write_bytes_atomic

FORMAT = "semgen-classifier"
#: 1: ``torch.save`` dicts (``best.pt``); 2: ``model.safetensors`` + ``config.json``.
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
QAT_WEIGHTS = "qat.safetensors"
#: The files of format 1, in the order a run dir was read.
LEGACY = ("best.pt", "last.pt")
#: Where ``semgen train`` keeps its last epoch (a checkpoint folder inside the run dir).
LAST = "last"
INPUT = "float32 [N, 1, S, S] in [0, 1] (8-bit gray / 255); normalisation inside the model"


def model_config(arch: str, classes, size: int, *, heads: dict | None = None) -> dict:
    """The model part of a checkpoint's ``config.json`` (what it takes to rebuild the network).

    Examples
    --------
    >>> model_config("mobilenetv3_small_100", ["clean", "bridge"], 128)["format_version"]
    2
    """
    cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch, "classes": list(classes),
           "size": int(size), "input": INPUT}
    if heads is not None:
        cfg["heads"] = heads
    return cfg


def write_safetensors(path, tensors: dict, meta: dict | None = None) -> Path:
    """Write tensors atomically with ``meta`` as the header's one metadata key ``semgen``.

    One key, holding JSON: safetensors serialises its metadata map in hash order, so two or more
    keys give other bytes in each process; one key keeps "same weights, same bytes". The JSON
    keeps ``meta``'s insertion order (a hierarchy's families are ordered).
    """
    from safetensors.torch import save

    md = {"semgen": json.dumps(meta)} if meta else None
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=md)
    write_bytes_atomic(path, data)
    return Path(path)


def safetensors_meta(path) -> dict:
    """The semgen metadata of a ``.safetensors`` file (the ``semgen`` JSON key, or the flat keys
    ``format`` / ``arch`` that earlier writers used); ``{}`` when it has none."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            md = dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - any header failure is the same user error
        raise SemgenError(f"{path} is not a readable safetensors file ({type(e).__name__})") from None
    if "semgen" in md:
        try:
            return dict(json.loads(md["semgen"]))
        except (ValueError, TypeError):
            raise SemgenError(f"{path}: broken semgen metadata in the safetensors header") from None
    return {k: md[k] for k in ("format", "arch") if k in md}


def _remove_stale(folder: Path) -> None:
    for name in LEGACY:
        (folder / name).unlink(missing_ok=True)


def save_checkpoint(folder, model, *, classes, size: int, epoch: int, metrics: dict | None = None,
                    config: dict | None = None) -> Path:
    """Write a checkpoint folder; each file atomically, ``model.safetensors`` last.

    Parameters
    ----------
    folder : path
        Created if needed.
    model : SemClassifier or HierClassifier
        Its ``arch`` and, for hierarchical heads, its ``hierarchy`` are recorded. A QAT model
        (:mod:`semgen.classifier.qat`) is written as the plain architecture's state dict (loadable
        as a float model) plus its quantiser ranges in ``qat.safetensors``.
    classes, size, epoch, metrics
        Recorded in the weights' metadata.
    config : dict, optional
        When given, ``config.json`` is written: :func:`model_config` plus these fields. When None,
        an existing ``config.json`` is left as it is (a run dir's, written when training started).

    Returns
    -------
    Path
        The weights file.
    """
    folder = Path(folder)
    if folder.suffix in (".pt", ".safetensors"):
        raise SemgenError(f"{folder}: a checkpoint is a folder (model.safetensors + config.json), not a file")
    from .qat import is_qat, plain_state_dict, qat_record

    folder.mkdir(parents=True, exist_ok=True)
    qat = qat_record(model) if is_qat(model) else None
    heads = model.hierarchy.to_dict() if getattr(model, "hierarchy", None) is not None else None
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "semgen_version": __version__,
            "arch": model.arch, "classes": list(classes), "size": int(size), "epoch": int(epoch),
            "metrics": metrics or {}}
    if heads is not None:
        meta["heads"] = heads
    if qat is not None:
        meta["qat"] = True
        write_safetensors(folder / QAT_WEIGHTS, qat["state"], {
            "format": f"{FORMAT}-qat", "version": qat["version"], "fold": qat["fold"], "bn_eps": qat["bn_eps"],
            "weight_bits": qat["weight_bits"], "epoch": int(epoch)})
    else:
        (folder / QAT_WEIGHTS).unlink(missing_ok=True)
    if config is not None:
        cfg = {**model_config(model.arch, classes, size, heads=heads), **config}
        write_bytes_atomic(folder / CONFIG, (json.dumps(cfg, indent=1) + "\n").encode())
    state = model.state_dict() if qat is None else plain_state_dict(model)
    path = write_safetensors(folder / WEIGHTS, state, meta)
    _remove_stale(folder)
    return path


def clear_checkpoints(folder) -> None:
    """Remove the checkpoint files of ``folder`` and its ``last/`` (a run started anew)."""
    folder = Path(folder)
    for name in (WEIGHTS, QAT_WEIGHTS, *LEGACY):
        (folder / name).unlink(missing_ok=True)
    last = folder / LAST
    if last.is_dir() and ((last / WEIGHTS).exists() or not any(last.iterdir())):
        shutil.rmtree(last)


def resolve_checkpoint(path, which: str | None = None) -> Path:
    """The weights file of a checkpoint folder, a run dir or a checkpoint file.

    Parameters
    ----------
    path : path
        A folder with ``model.safetensors`` (or, from earlier versions, ``best.pt`` / ``last.pt``),
        a ``.safetensors`` file or a ``.pt`` file.
    which : {"best", "last"}, optional
        For a run dir: its best epoch (the default: the folder itself, or ``best.pt``) or the last
        one (``last/``, or ``last.pt``).
    """
    p = Path(path)
    if which not in (None, "best", "last"):
        raise SemgenError(f"which must be 'best' or 'last', got {which!r}")
    if p.is_dir():
        legacy = ("last.pt",) if which == "last" else LEGACY
        for name in legacy:
            if (p / name).exists():
                return p / name
        folder = p / LAST if which == "last" else p
        if (folder / WEIGHTS).is_file():
            return folder / WEIGHTS
        raise SemgenError(f"{p} holds no checkpoint (model.safetensors, or best.pt / last.pt of an earlier "
                          "version); is it a run dir of 'semgen train'?")
    if not p.exists():
        raise SemgenError(f"checkpoint {p} does not exist")
    return p


def read_checkpoint(path, which: str | None = None) -> dict:
    """Load a checkpoint (tensors on CPU) with a clear error for anything else.

    Returns
    -------
    dict
        ``format``, ``format_version``, ``arch``, ``classes``, ``size``, ``epoch``, ``metrics``,
        ``config`` (the folder's ``config.json``, or what a ``.pt`` file held), ``state_dict``,
        ``path`` (the weights file), ``heads`` (None for a plain classifier) and, for a QAT model,
        ``qat`` (see :func:`save_checkpoint`).
    """
    from .ensemble import refuse_ensemble

    refuse_ensemble(path)  # --init, export and QAT need one network's weights, not several
    p = resolve_checkpoint(path, which)
    if p.suffix == ".safetensors":
        ckpt = _read_safetensors(p)
    else:
        ckpt = _read_legacy(p)
    ckpt["path"] = str(p)
    ckpt.setdefault("heads", None)
    return ckpt


def _read_legacy(p: Path) -> dict:
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise SemgenError(f"{p} is not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise SemgenError(f"{p} is not a semgen classifier checkpoint")
    if ckpt.get("format_version", 0) > 1:
        raise SemgenError(f"{p} was written by a newer semgen (format {ckpt['format_version']})")
    return ckpt


def _read_safetensors(p: Path) -> dict:
    from safetensors.torch import load_file

    meta = safetensors_meta(p)
    cfg = {}
    if (p.parent / CONFIG).is_file():
        try:
            cfg = json.loads((p.parent / CONFIG).read_text())
        except ValueError:
            raise SemgenError(f"{p.parent / CONFIG} is not valid JSON") from None
    get = (lambda k: meta.get(k, cfg.get(k)))
    if get("format") != FORMAT:
        raise SemgenError(f"{p} is not a semgen classifier checkpoint")
    if int(get("format_version") or 0) > FORMAT_VERSION:
        raise SemgenError(f"{p} was written by a newer semgen (format {get('format_version')})")
    if not get("arch"):
        raise SemgenError(f"{p}: no architecture recorded")
    if not get("classes") or not get("size"):
        raise SemgenError(f"{p} is a backbone without classes (no classifier head); it is an --init, not a model")
    try:
        state = load_file(str(p))
    except Exception as e:  # noqa: BLE001 - a truncated or damaged file
        raise SemgenError(f"{p} is not a readable checkpoint ({type(e).__name__})") from None
    ckpt = {"format": FORMAT, "format_version": int(get("format_version") or FORMAT_VERSION),
            "arch": get("arch"), "classes": list(get("classes")), "size": int(get("size")),
            "epoch": get("epoch") if get("epoch") is not None else cfg.get("step"),
            "metrics": meta.get("metrics", {}), "config": cfg, "state_dict": state, "heads": get("heads")}
    if meta.get("qat"):
        q = p.parent / QAT_WEIGHTS
        if not q.is_file():
            raise SemgenError(f"{p} is a QAT checkpoint but {q.name} is missing beside it")
        qm = safetensors_meta(q)
        if qm.get("epoch") != meta.get("epoch"):
            raise SemgenError(f"{q} is of epoch {qm.get('epoch')} but {p.name} of epoch {meta.get('epoch')}")
        ckpt["qat"] = {"version": qm.get("version"), "state": load_file(str(q)), "fold": qm.get("fold", []),
                       "bn_eps": qm.get("bn_eps", {}), "weight_bits": qm.get("weight_bits", 8)}
    return ckpt


def load_run(run_dir, *, which: str | None = None):
    """Load a trained classifier.

    Parameters
    ----------
    run_dir : path
        A run dir of :func:`train_classifier` or ``semgen pretrain``, a checkpoint folder, or a
        checkpoint file (``model.safetensors``, or a ``.pt`` of an earlier version).
    which : {"best", "last"}, optional

    Returns
    -------
    model : SemClassifier or HierClassifier, in eval mode
    meta : dict
        ``classes``, ``size``, ``arch``, ``epoch``, ``metrics``, ``checkpoint`` (the weights file),
        ``run_dir`` (where the run's ``config.json`` / ``calibration.json`` are), ``heads`` and the
        run's ``config``.
    """
    from .ensemble import is_ensemble, load_ensemble
    from .models import create_model

    if is_ensemble(run_dir):
        return load_ensemble(run_dir)
    ckpt = read_checkpoint(run_dir, which)
    model = create_model(ckpt["arch"], len(ckpt["classes"]), heads=ckpt["heads"], classes=ckpt["classes"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    folder = Path(ckpt["path"]).parent
    run = folder.parent if folder.name == LAST and (folder.parent / CONFIG).exists() else folder
    config = dict(ckpt.get("config") or {})
    if (run / CONFIG).exists():
        try:
            config = json.loads((run / CONFIG).read_text())
        except ValueError:
            pass
    meta = {"classes": list(ckpt["classes"]), "size": int(ckpt["size"]), "arch": ckpt["arch"],
            "epoch": ckpt.get("epoch"), "metrics": ckpt.get("metrics", {}), "checkpoint": ckpt["path"],
            "run_dir": str(run), "heads": ckpt["heads"], "config": config}
    return model, meta

