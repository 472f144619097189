"""What, beyond its seed, fixes a generated image's bytes: the CPU's class and the numeric libraries.

The procedural generators make the same bytes for a seed in every process, with any number of
workers or shards, and on every x86-64 CPU with AVX2 or AVX-512 (``bench/bench_determinism.py
--cpus``: 0 of 1,830 images differ). They do not yet on an x86-64 CPU without AVX2, nor, most
likely, on ARM: NumPy and OpenCV pick vector code by the CPU at run time, and some of it rounds
otherwise (docs/procedural.md, "Runs"). Other versions of NumPy, OpenCV, SciPy or numba may
compute a step otherwise too. :func:`byte_platform` names all of that in one line, which a
dataset dir records for the runs that made its images, so that bytes that differ from another
machine's can be told apart from a bug.
"""

from __future__ import annotations

import functools
import platform
from importlib import metadata

#: The libraries whose numerics the generators use, each with the distributions that install it.
_LIBRARIES = (("numpy", ("numpy",)),
              ("opencv", ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                          "opencv-contrib-python")),
              ("scipy", ("scipy",)), ("numba", ("numba",)))


def cpu_class() -> str:
    """The CPU's class as far as the generators' bytes go.

    ``x86-64-v3`` (AVX2 and FMA: every Intel CPU since 2013, AMD since 2015; AVX-512 CPUs make the
    same bytes), ``x86-64-v2`` (SSE4.2, no AVX2), ``x86-64`` (older), ``arm64``, or the machine's
    own name. NumPy's view of the CPU is used, so its ``NPY_DISABLE_CPU_FEATURES`` counts.

    Examples
    --------
    >>> cpu_class() in {"x86-64-v3", "x86-64-v2", "x86-64", "arm64"} or bool(cpu_class())
    True
    """
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "x64"):
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
        except ImportError:  # NumPy 1.x
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        # NumPy 2 dispatches by these groups (and NPY_DISABLE_CPU_FEATURES switches them off);
        # NumPy 1 by single features
        v3 = feats["X86_V3"] if "X86_V3" in feats else feats.get("AVX2") and feats.get("FMA3")
        v2 = feats["X86_V2"] if "X86_V2" in feats else feats.get("SSE42")
        return "x86-64-v3" if v3 else "x86-64-v2" if v2 else "x86-64"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    return machine or "unknown"


def _version(dists: tuple[str, ...]) -> str:
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return "none"


@functools.lru_cache(maxsize=1)
def byte_platform() -> str:
    """One line naming what fixes the generators' bytes besides the seed and semgen itself: the
    CPU class (:func:`cpu_class`) and the versions of NumPy, OpenCV, SciPy and numba.

    Examples
    --------
    >>> byte_platform().split()[2]
    'numpy'
    """
    libs = " ".join(f"{name} {_version(dists)}" for name, dists in _LIBRARIES)
    return f"{cpu_class()} {platform.system().lower() or 'unknown'} {libs}"
