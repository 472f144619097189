"""What, beyond its seed, fixes a generated image's bytes: the CPU's architecture and the numeric libraries.

The procedural generators make the same bytes for a seed in every process, with any number of
workers or shards, and on every x86-64 CPU that NumPy runs on (x86-64-v2 and later: SSE4.2, AVX2
or AVX-512; ``bench/bench_determinism.py --cpus``: 0 of 1,830 images differ, the float signal before
rounding included). Their filters and transcendental functions are CPU-independent
(:mod:`semgen.generators.procedural.portable`). ARM was not measured: another compiler built the
libraries, and libm differs. Other versions of NumPy, OpenCV, SciPy or numba may compute a step
otherwise too. :func:`byte_platform` names all of that in one line, which a dataset dir records
for the runs that made its images, so that bytes that differ from another machine's can be told
apart from a bug.
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
    """The CPU's class as far as the generators' bytes go: ``x86-64`` (every x86-64 CPU makes the
    same bytes: the vector paths that rounded otherwise are gone), ``arm64``, or the machine's
    own name.

    Examples
    --------
    >>> cpu_class() in {"x86-64", "arm64"} or bool(cpu_class())
    True
    """
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "x64"):
        return "x86-64"
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
