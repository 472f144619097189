"""Resumable training states on disk: safetensors plus JSON, never pickle.

A state is a folder ``state-STEP/`` (``STEP`` zero-padded, so names sort by step) holding

``model.safetensors``      the model's ``state_dict``
``optimizer.safetensors``  the optimiser's tensors (Adam moments, ...)
``extra.safetensors``      any other tensors the run needs to continue exactly (random generator
                           states); only when there are some
``state.json``             ``format``, ``format_version``, ``step``, the optimiser's scalars and
                           parameter groups, the scheduler's state and the run's own ``info``

written into a temporary folder and renamed, then named in ``LATEST`` (written atomically: the
commit point). The previous state is kept, so that a damaged newest one (a truncated file) falls
back to it. ``semgen pretrain`` (a state every ``--save-every`` steps) and ``semgen train`` (one
per epoch) share this layout; their ``format`` strings tell them apart.

Examples
--------
>>> import tempfile, torch
>>> from pathlib import Path
>>> net = torch.nn.Linear(2, 1)
>>> opt = torch.optim.AdamW(net.parameters(), lr=0.1)
>>> net(torch.ones(1, 2)).sum().backward(); opt.step()
>>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
>>> d = Path(tempfile.mkdtemp())
>>> _ = save_state(d, 3, net, opt, sched, {"note": "x"}, fmt="demo-state")
>>> s = latest_state(d, fmt="demo-state")
>>> s.step, s.state["note"], sorted(s.model) == sorted(net.state_dict())
(3, 'x', True)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import SemgenError
from .imageio import write_bytes_atomic

LATEST = "LATEST"


@dataclass
class RunState:
    """One state read back by :func:`latest_state`."""

    dir: Path
    state: dict  # state.json as written (the run's ``info`` keys at its top level)
    model: dict
    optimizer: dict
    extra: dict = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.state["step"])

    def restore(self, model: torch.nn.Module, opt: torch.optim.Optimizer, sched=None, scaler=None) -> None:
        """Load the weights, optimiser, scheduler (and fp16 gradient scaler) into fresh objects."""
        model.load_state_dict(self.model)
        load_optimizer(opt, self.optimizer, self.state["optimizer"])
        if sched is not None:
            sched.load_state_dict(self.state["scheduler"])
        if scaler is not None and self.state.get("grad_scaler"):
            scaler.load_state_dict(self.state["grad_scaler"])


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """An optimiser's state as ``(tensors, JSON-able meta)``: :func:`load_optimizer` reverses it."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"{pid}.{k}"] = v.detach().contiguous()
            else:
                scalars[f"{pid}.{k}"] = float(v.item() if torch.is_tensor(v) else v)
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """Load what :func:`optimizer_tensors` gave into ``opt`` (built over the same parameters)."""
    state: dict = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = torch.tensor(v, dtype=torch.float32)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_state(out, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, info: dict, *,
               fmt: str, version: int = 1, keep: int = 2, scaler=None, extra: dict | None = None) -> Path:
    """Write ``out/state-STEP/`` and name it in ``out/LATEST``; keep the ``keep`` newest states."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"state-{int(step):09d}"
    tmp = out / f".state-{int(step):09d}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    ot, ometa = optimizer_tensors(opt)
    save_file({k: v.cpu() for k, v in ot.items()}, str(tmp / "optimizer.safetensors"))
    if extra:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra.items()}, str(tmp / "extra.safetensors"))
    state = {"format": fmt, "format_version": int(version), "step": int(step),
             "optimizer": ometa, "scheduler": sched.state_dict(), **info}
    if scaler is not None:  # fp16 on a GPU only: CPU states keep their bytes
        state["grad_scaler"] = scaler.state_dict()
    (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_bytes_atomic(out / LATEST, (final.name + "\n").encode())  # the commit point
    olds = sorted(p for p in out.glob("state-*") if p.is_dir() and p != final)
    for p in olds[:max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def read_state(d, *, fmt: str, version: int = 1) -> RunState:
    """Read one state folder; raises on anything missing or torn, :class:`SemgenError` on a newer format."""
    from safetensors.torch import load_file

    d = Path(d)
    state = json.loads((d / "state.json").read_text())
    if state.get("format") != fmt:
        raise ValueError(f"not a {fmt}")
    if state.get("format_version", 0) > version:
        raise SemgenError(f"{d} was written by a newer semgen")
    extra = load_file(str(d / "extra.safetensors")) if (d / "extra.safetensors").exists() else {}
    return RunState(d, state, load_file(str(d / "model.safetensors")), load_file(str(d / "optimizer.safetensors")),
                    extra)


def latest_state(out, *, fmt: str, version: int = 1) -> RunState | None:
    """The newest readable state under ``out``, or None.

    A damaged newest state (a truncated file) falls back to the previous one with a warning.
    """
    out = Path(out)
    names = []
    if (out / LATEST).exists():
        names.append((out / LATEST).read_text().strip())
    names += sorted((p.name for p in out.glob("state-*") if p.is_dir()), reverse=True)
    seen = set()
    for name in names:
        if name in seen or not name.startswith("state-"):
            continue
        seen.add(name)
        d = out / name
        try:
            return read_state(d, fmt=fmt, version=version)
        except SemgenError:
            raise
        except Exception as e:  # noqa: BLE001 - any damage means: try the previous state
            print(f"semgen: warning: {d} is unreadable ({type(e).__name__}); trying an older state",
                  file=sys.stderr)
    return None


def has_states(out) -> bool:
    """Whether ``out`` holds any state folder (readable or not)."""
    out = Path(out)
    return out.is_dir() and any(p.is_dir() for p in out.glob("state-*"))


def truncate_log(path, step: int, key: str = "step") -> None:
    """Drop the records of a JSONL log past the resumed ``step`` (``rec[key]``): a killed run may
    have logged after its last saved state, and the resumed run logs those steps again."""
    from .manifests.jsonl import dumps_record, iter_jsonl

    path = Path(path)
    if not path.exists():
        return
    keep = [r for r in iter_jsonl(path) if int(r.get(key, 0)) <= step]
    write_bytes_atomic(path, "".join(dumps_record(r) + "\n" for r in keep).encode())


def latest_step(out) -> int | None:
    """The step of the state ``out/LATEST`` names (without reading the state), or None."""
    try:
        name = (Path(out) / LATEST).read_text().strip()
        return int(name.split("-", 1)[1]) if name.startswith("state-") else None
    except (OSError, ValueError, IndexError):
        return None
