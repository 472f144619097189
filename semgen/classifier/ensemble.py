"""Ensembles: several trained runs that predict as one model.

Runs of the same recipe trained with different seeds make different mistakes on real images, so
averaging their probabilities is more accurate than any one of them (the figures are in
docs/results.md). An ensemble is a folder with one file, ``ensemble.json``: plain data that names
its member runs, the sha256 of each member's weights and each member's calibration temperature.
No weights are copied and no code is stored.

An ensemble folder goes wherever a run dir is *read* for predictions: ``semgen evaluate``,
``semgen predict`` (and :class:`~semgen.classifier.predict.Predictor`), ``--teacher`` of
``semgen train`` and :func:`~semgen.classifier.checkpoint.load_run`. Commands that need the
weights of one network (``--init``, ``semgen export``) refuse it with a one-line error.

The ensemble's probability is the mean of its members' calibrated probabilities,
``p = mean_i softmax(z_i / T_i)``. :class:`EnsembleClassifier` returns ``log p`` as its logits,
so ``softmax`` of its output is ``p`` and every caller that softmaxes logits gets the average;
the folder holds no ``calibration.json`` (temperature 1 on top of the members' own).

Examples
--------
>>> from semgen.classifier.ensemble import make_ensemble          # doctest: +SKIP
>>> make_ensemble(["runs/s0", "runs/s1", "runs/s2"], "runs/ens")  # doctest: +SKIP
>>> from semgen.classifier import evaluate_run                    # doctest: +SKIP
>>> evaluate_run("runs/ens", "data/test", tta="d4")["macro_f1"]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import SemgenError
from ..imageio import sha256_file, write_bytes_atomic

#: The one file of an ensemble folder.
ENSEMBLE_FILE = "ensemble.json"
FORMAT = "semgen-ensemble"
FORMAT_VERSION = 1


def is_ensemble(path) -> bool:
    """Whether ``path`` is an ensemble folder (or its ``ensemble.json``)."""
    p = Path(path)
    return (p.is_dir() and (p / ENSEMBLE_FILE).is_file()) or (p.name == ENSEMBLE_FILE and p.is_file())


def refuse_ensemble(path) -> None:
    """Raise the one-line error of a command that needs one network's weights, given an ensemble."""
    if is_ensemble(path):
        raise SemgenError(f"{path} is an ensemble of runs ({ENSEMBLE_FILE}), not one network's weights: pass one "
                          "of its member runs here (evaluate, predict and --teacher take the ensemble)")


class EnsembleClassifier(nn.Module):
    """Members that predict as one: ``forward`` returns ``log(mean_i softmax(z_i / T_i))``.

    Parameters
    ----------
    members : list of nn.Module
        Classifiers with the same classes in the same order, each mapping float ``[N, 1, S, S]``
        images in [0, 1] to logits ``[N, K]``.
    temperatures : list of float
        Each member's calibration temperature (1.0 for an uncalibrated one).
    """

    def __init__(self, members, temperatures):
        super().__init__()
        if len(members) != len(temperatures) or not members:
            raise ValueError("one temperature per member, and at least one member")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor([float(t) for t in temperatures]), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = None
        for m, t in zip(self.members, self.temperatures):
            q = torch.softmax(m(x).float() / t, dim=1)
            p = q if p is None else p + q
        # the log of the mean probability: softmax() of it gives the mean back exactly (it sums to 1)
        return torch.log((p / len(self.members)).clamp_min(1e-30))


def ensemble_file(path) -> Path:
    """The ``ensemble.json`` of an ensemble folder (or the file itself)."""
    p = Path(path)
    return p if p.name == ENSEMBLE_FILE else p / ENSEMBLE_FILE


def _member_path(ens_dir: Path, rec: dict) -> Path:
    """A member's run dir: relative to the ensemble folder (the tree moved as a whole), else absolute."""
    rel = ens_dir / rec["path"]
    return rel if rel.exists() else Path(rec["absolute"])


def make_ensemble(members, out, *, overwrite: bool = False) -> dict:
    """Write an ensemble folder ``out`` of trained runs (their best checkpoints).

    Parameters
    ----------
    members : list of path
        Two or more run dirs (or checkpoints) of ``semgen train`` with the same classes, in the
        same order, and the same input size; or ``semgen pretrain`` runs of one setting and
        several seeds (the same fine labels), whose ensemble folds into classes as one run does.
        A QAT run takes part through its fake-quant model, as it predicts on its own.
    out : path
        The ensemble folder; it gets ``ensemble.json`` only.
    overwrite : bool
        Replace an existing ``ensemble.json``.

    Returns
    -------
    dict
        What ``ensemble.json`` holds: ``format``, ``format_version``, ``classes``, ``size`` and
        ``members`` (``path`` relative to ``out``, ``absolute``, ``checkpoint``, ``sha256`` of
        the weights, ``temperature``, ``arch``); and ``task_classes`` when every member records
        the same (pretraining runs that mixed in one real pool).
    """
    from .calibrate import read_calibration
    from .checkpoint import read_checkpoint

    members = [Path(m) for m in members]
    if len(members) < 2:
        raise SemgenError(f"an ensemble needs at least 2 runs, got {len(members)}")
    out = Path(out)
    if (out / ENSEMBLE_FILE).exists() and not overwrite:
        raise SemgenError(f"{out / ENSEMBLE_FILE} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise SemgenError(f"--out {out} is a file, not a folder")
    recs, classes, size = [], None, None
    for m in members:
        if is_ensemble(m):
            raise SemgenError(f"{m} is itself an ensemble; list its member runs instead")
        ckpt = read_checkpoint(m)
        run = Path(ckpt["path"]).parent  # the run dir (RUN/model.safetensors; best.pt of earlier versions)
        if classes is None:
            classes, size = list(ckpt["classes"]), int(ckpt["size"])
        elif list(ckpt["classes"]) != classes:
            raise SemgenError(f"{m} has classes [{', '.join(ckpt['classes'])}] but {members[0]} has "
                              f"[{', '.join(classes)}]; ensemble members need the same classes in the same order")
        elif int(ckpt["size"]) != size:
            raise SemgenError(f"{m} takes {ckpt['size']} px images but {members[0]} takes {size} px; "
                              "ensemble members need the same input size")
        cal = read_calibration(run)
        recs.append({"path": os.path.relpath(run.resolve(), out.resolve()), "absolute": str(run.resolve()),
                     "checkpoint": os.path.relpath(Path(ckpt["path"]).resolve(), run.resolve()),
                     "sha256": sha256_file(ckpt["path"]), "temperature": float(cal["temperature"]) if cal else 1.0,
                     "arch": ckpt["arch"], "qat": "qat" in ckpt})
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "classes": classes, "size": size, "members": recs}
    tasks = {tuple(_recorded_task(Path(r["absolute"])) or ()) for r in recs}
    if len(tasks) == 1 and () not in tasks:  # pretraining runs that mixed in one pool: its classes, as each run's
        doc["task_classes"] = list(tasks.pop())
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / ENSEMBLE_FILE, (json.dumps(doc, indent=1) + "\n").encode())
    return doc


def _recorded_task(run: Path) -> list[str] | None:
    """The ``task_classes`` a run's ``config.json`` records (:func:`semgen.pretrain.labels.chosen_task`)."""
    from .checkpoint import CONFIG

    try:
        return json.loads((run / CONFIG).read_text()).get("task_classes")
    except (OSError, ValueError, AttributeError):
        return None


def read_ensemble(path) -> dict:
    """``ensemble.json`` of an ensemble folder, checked, with a one-line error for a broken one."""
    f = ensemble_file(path)
    try:
        doc = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise SemgenError(f"{f} is not a readable ensemble file ({type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SemgenError(f"{f} is not a semgen ensemble file")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise SemgenError(f"{f} was written by a newer semgen (format {doc['format_version']})")
    if not isinstance(doc.get("members"), list) or len(doc["members"]) < 2 or not doc.get("classes"):
        raise SemgenError(f"{f} lists no members or classes")
    return doc


def load_ensemble(path):
    """Load an ensemble folder as one model, in eval mode, and a ``load_run``-style meta.

    Each member's weights must still have the sha256 recorded when the ensemble was made: a
    retrained member under the same path is another model, and the error says which.

    Returns
    -------
    model : EnsembleClassifier
    meta : dict
        ``classes``, ``size``, ``arch`` (``"ensemble"``), ``epoch`` (None), ``metrics`` ({}),
        ``checkpoint`` (the ``ensemble.json``), ``run_dir`` (the folder), ``heads`` (None),
        ``config`` (the file's content), ``members`` and ``qat`` (whether a member is a QAT model).
    """
    from .evaluate import load_eval_model

    f = ensemble_file(path)
    doc = read_ensemble(f)
    models, temps = [], []
    for rec in doc["members"]:
        run = _member_path(f.parent, rec)
        weights = run / rec["checkpoint"]
        if not weights.is_file():
            raise SemgenError(f"ensemble {f.parent}: member {rec['absolute']} is gone (no {rec['checkpoint']})")
        if sha256_file(weights) != rec["sha256"]:
            raise SemgenError(f"ensemble {f.parent}: member {run} changed since the ensemble was made "
                              "(its weights have another sha256); make the ensemble again")
        model, meta = load_eval_model(run)
        if list(meta["classes"]) != list(doc["classes"]) or int(meta["size"]) != int(doc["size"]):
            raise SemgenError(f"ensemble {f.parent}: member {run} no longer has the ensemble's classes and size")
        models.append(model)
        temps.append(float(rec["temperature"]))
    model = EnsembleClassifier(models, temps).eval()
    meta = {"classes": list(doc["classes"]), "size": int(doc["size"]), "arch": "ensemble", "epoch": None,
            "metrics": {}, "checkpoint": str(f), "run_dir": str(f.parent), "heads": None, "config": doc,
            "members": [str(_member_path(f.parent, r)) for r in doc["members"]],
            # any fake-quant member keeps the ensemble in fp32, as that member trained
            "qat": any(r.get("qat", False) for r in doc["members"])}
    return model, meta
