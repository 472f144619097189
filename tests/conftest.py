"""Shared fixtures. Tests are fast and offline: nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see semgen/__init__.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("SEMGEN_REAL_DATA", REPO.parent / "shared" / "data" / "sem-real"))


@pytest.fixture(autouse=True)
def _few_threads():
    """Two cores are shared by the whole suite: keep torch from oversubscribing them."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)


@pytest.fixture
def real_data() -> Path:
    """The real SEM images (``../shared/data/sem-real``); tests using it skip where it is absent."""
    if not (REAL_DATA / "labels.csv").exists():
        pytest.skip(f"real SEM data not found at {REAL_DATA} (set SEMGEN_REAL_DATA)")
    return REAL_DATA


def disk_full_on_link(monkeypatch, module, nth: int = 3) -> None:
    """Make ``module.link_or_copy`` fail with ENOSPC on its ``nth`` call: a disk that fills mid-way."""
    import errno

    real, calls = module.link_or_copy, []

    def link(src, dst):
        calls.append(dst)
        if len(calls) == nth:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(module, "link_or_copy", link)
