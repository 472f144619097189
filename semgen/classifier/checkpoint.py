"""Checkpoints and run dirs: saving, loading, and ``load_run``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from .. import __version__
from ..errors import SemgenError
from ..imageio import write_bytes_atomic
from .models import SemClassifier, create_model

FORMAT = "semgen-classifier"
FORMAT_VERSION = 1


def save_checkpoint(path, model: SemClassifier, *, classes, size: int, epoch: int, metrics: dict | None = None,
                    config: dict | None = None) -> None:
    """Write a checkpoint atomically (a crash never leaves a half file)."""
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    ckpt = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "semgen_version": __version__,
        "arch": model.arch, "classes": list(classes), "size": int(size), "epoch": int(epoch),
        "metrics": metrics or {}, "config": config or {}, "state_dict": state,
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    write_bytes_atomic(path, buf.getvalue())


def resolve_checkpoint(path) -> Path:
    """A run dir (-> its ``best.pt``, else ``last.pt``) or a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).exists():
                return p / name
        raise SemgenError(f"{p} holds no checkpoint (best.pt / last.pt); is it a run dir of 'semgen train'?")
    if not p.exists():
        raise SemgenError(f"checkpoint {p} does not exist")
    return p


def read_checkpoint(path) -> dict:
    """Load a checkpoint dict (tensors on CPU) with a clear error for anything else."""
    p = resolve_checkpoint(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise SemgenError(f"{p} is not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise SemgenError(f"{p} is not a semgen classifier checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise SemgenError(f"{p} was written by a newer semgen (format {ckpt['format_version']})")
    ckpt["path"] = str(p)
    return ckpt


def load_run(run_dir, *, which: str | None = None):
    """Load a trained classifier.

    Parameters
    ----------
    run_dir : path
        A run dir of :func:`train_classifier` (its ``best.pt``) or a checkpoint file.
    which : {"best", "last"}, optional

    Returns
    -------
    model : SemClassifier, in eval mode
    meta : dict
        ``classes``, ``size``, ``arch``, ``epoch``, ``checkpoint`` and the run's ``config``.
    """
    p = Path(run_dir)
    if which is not None and p.is_dir():
        p = p / f"{which}.pt"
    ckpt = read_checkpoint(p)
    model = create_model(ckpt["arch"], len(ckpt["classes"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    config = dict(ckpt.get("config") or {})
    run = Path(ckpt["path"]).parent
    if (run / "config.json").exists():
        try:
            config = json.loads((run / "config.json").read_text())
        except ValueError:
            pass
    meta = {"classes": list(ckpt["classes"]), "size": int(ckpt["size"]), "arch": ckpt["arch"],
            "epoch": ckpt.get("epoch"), "metrics": ckpt.get("metrics", {}), "checkpoint": ckpt["path"],
            "config": config}
    return model, meta
