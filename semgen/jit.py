"""The one way semgen compiles a function with numba: explicit signature, compiled code cached on disk.

An explicit signature compiles (or loads from the cache) when the module is imported, so a worker
pool's forkserver does it once before forking, and a call with other dtypes or layouts is refused
instead of silently compiling a variant whose arithmetic, and bytes, would differ. The cache lives
next to the module, else in the user's cache folder; where neither is writable (a read-only
install and home), the function is compiled in memory at every start instead of failing.
"""

from __future__ import annotations

from typing import Any, Callable

from numba import njit


def compiled(signature: Any, **options: Any) -> Callable[[Callable], Callable]:
    """``numba.njit(signature, cache=True, nogil=True, error_model="numpy", **options)``, without the
    cache if none is writable. NumPy's error model: a float division by zero gives inf or nan, as
    in NumPy, and the loops carry no check for it.

    Examples
    --------
    >>> from numba import types
    >>> @compiled(types.int64(types.int64))
    ... def twice(x):
    ...     return 2 * x
    >>> twice(21)
    42
    """
    options = {"nogil": True, "error_model": "numpy", **options}

    def wrap(fn: Callable) -> Callable:
        try:
            return njit(signature, cache=True, **options)(fn)
        except RuntimeError as e:  # numba: "cannot cache function ...: no locator available"
            if "cannot cache" not in str(e):
                raise
            return njit(signature, cache=False, **options)(fn)
    return wrap


def inner(fn: Callable) -> Callable:
    """A loop called only from :func:`compiled` functions, compiled into them with the same options.

    It gets no entry point of its own: nothing is compiled or loaded from the cache for it at
    import (each cached entry point costs a worker's start about 50 ms to load).
    """
    return njit(nogil=True, error_model="numpy")(fn)
