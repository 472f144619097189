"""Where torch computes: ``--device auto|cpu|cuda|cuda:N`` and ``--precision auto|fp32|bf16|fp16``.

One place for the choice, used by ``semgen train / evaluate / predict / pretrain`` and
``semgen diffuse train / sample / refine``:

- ``auto`` is the first CUDA GPU when torch sees one, else the CPU; ``cuda`` without a GPU is a
  one-line :class:`~semgen.errors.SemgenError`, never a torch traceback.
- Precision ``auto`` is fp32 on the CPU (so CPU results keep their bytes) and mixed precision on a
  GPU: bf16 where the GPU supports it, else fp16 with a gradient scaler. Mixed precision is
  autocast: the weights and the optimiser stay fp32; matmuls and convolutions run in 16 bits.
- On a GPU, results are reproducible only as far as cuDNN / cuBLAS kernels are (best effort): the
  same seed gives close, not necessarily identical, weights and images.
"""

from __future__ import annotations

import contextlib
import platform
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SemgenError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: the CLI adds --device to its parsers without loading torch

#: ``--precision`` values; ``auto``: fp32 on the CPU, bf16 (else fp16) on a GPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: ``--device`` values (``cuda:N`` for any N).
DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device that ``--device spec`` names.

    Parameters
    ----------
    spec : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
        ``auto`` (or None): ``cuda:0`` when CUDA is available, else the CPU.

    Returns
    -------
    torch.device
        ``cpu`` or ``cuda:N`` (always with an index, so the choice can be recorded).

    Raises
    ------
    SemgenError
        For an unknown name, or a CUDA device that this machine does not have.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    """
    import torch

    s = "auto" if spec is None else str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if s == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", s)
    if m is None:
        raise SemgenError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if not torch.cuda.is_available():
        raise SemgenError(f"--device {s}: no CUDA GPU is available to torch {torch.__version__} on this machine; "
                          "use --device cpu (or auto)")
    index = int(m.group(1)) if m.group(1) is not None else 0
    n = torch.cuda.device_count()
    if index >= n:
        raise SemgenError(f"--device {s}: this machine has {n} CUDA device(s) (cuda:0-cuda:{n - 1})")
    return torch.device("cuda", index)


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """The precision that ``--precision`` means on ``device``: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` (or None) is fp32 on the CPU and bf16 on a GPU that supports it, else fp16. A 16-bit
    precision on the CPU is refused: semgen's CPU results are fp32, byte for byte.

    Examples
    --------
    >>> resolve_precision("auto", resolve_device("cpu"))
    'fp32'
    """
    import torch

    p = "auto" if precision is None else str(precision).strip().lower()
    if p not in PRECISIONS:
        raise SemgenError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type != "cuda":
        if p in ("auto", "fp32"):
            return "fp32"
        raise SemgenError(f"--precision {p} needs a GPU (--device cuda); on the CPU semgen computes in fp32")
    bf16_ok = torch.cuda.is_bf16_supported()
    if p == "auto":
        return "bf16" if bf16_ok else "fp16"
    if p == "bf16" and not bf16_ok:
        raise SemgenError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16; "
                          "use fp16 (or auto)")
    return p


@dataclass(frozen=True)
class Compute:
    """A resolved device and precision: autocast, the gradient scaler and what a run records.

    Make one with :func:`compute`. On the CPU (and with fp32) :meth:`autocast` is a no-op and
    :meth:`grad_scaler` is None, so CPU code paths stay exactly as they were.
    """

    device: torch.device
    precision: str  # fp32, bf16 or fp16

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for fp32."""
        import torch

        if self.device.type != "cuda":
            return None
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        """A context manager: CUDA autocast to bf16 / fp16, or nothing (CPU, fp32)."""
        import torch

        dt = self.amp_dtype
        if dt is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=dt)

    def grad_scaler(self):
        """A ``torch.amp.GradScaler`` for fp16 (its small range underflows gradients), else None."""
        import torch

        if self.amp_dtype is torch.float16:
            return torch.amp.GradScaler("cuda")
        return None

    @property
    def accelerate_precision(self) -> str:
        """``accelerate``'s name for the precision: ``no``, ``bf16`` or ``fp16``."""
        return "no" if self.amp_dtype is None else self.precision

    def record(self) -> dict:
        """What a run writes into its config: device, its name, precision."""
        if self.device.type == "cuda":
            import torch

            name = torch.cuda.get_device_name(self.device)
        else:
            name = platform.processor() or platform.machine() or "cpu"
        return {"device": str(self.device), "device_name": name, "precision": self.precision}


def compute(device: str | torch.device | None = "auto", precision: str | None = "auto") -> Compute:
    """Resolve ``--device`` and ``--precision`` together (:func:`resolve_device`, :func:`resolve_precision`).

    Examples
    --------
    >>> c = compute("cpu")
    >>> c.precision, c.grad_scaler() is None
    ('fp32', True)
    >>> with c.autocast():  # a no-op on the CPU
    ...     pass
    """
    dev = resolve_device(device)
    return Compute(dev, resolve_precision(precision, dev))


def add_device_arguments(parser, *, precision: bool = True) -> None:
    """Add ``--device`` (and ``--precision``) to an argparse (sub)parser, with the shared help text."""
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N",
                        help="where torch computes (default auto: the first CUDA GPU if there is one, else the CPU)")
    if precision:
        parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                            help="auto: fp32 on the CPU, bf16 on a GPU (fp16 + gradient scaling where bf16 is "
                                 "not supported); the CPU computes in fp32 only")
