"""Keep freed image buffers in the process heap (glibc), instead of returning them to the kernel.

Every imaging step allocates a few 256 KB+ float32 temporaries. glibc serves blocks above its
mmap threshold (128 KB at start, adapting upwards only as such blocks are freed) with a fresh
``mmap`` and gives them back with ``munmap``; it also trims the top of the heap once 2x that
threshold is free. Either way the next image touches new pages: a page fault per 4 KB, about a
third of the CPU time of :func:`~.imaging.render` at 256 px. Raising both thresholds once per
process keeps those pages mapped and reused. Only allocation addresses change, never values, so
the images are byte-identical.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: glibc ``mallopt`` parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_done = False


def keep_heap(mmap_threshold: int = 4 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Serve blocks below ``mmap_threshold`` bytes from the heap and keep ``trim_threshold`` free.

    Idempotent and process-wide; a no-op (returns False) where the C library has no ``mallopt``
    (macOS, Windows, musl). The defaults cover 1024 x 1024 float32 images; the heap keeps at most
    ``trim_threshold`` bytes of free memory mapped.

    Examples
    --------
    >>> isinstance(keep_heap(), bool)
    True
    """
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    _done = ok
    return ok
