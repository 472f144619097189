"""One ordered map over worker processes, used wherever semgen fans work out to a local pool.

:func:`ordered_map` yields ``fn(chunk)`` results in input order with a bounded window of chunks in
flight, so memory stays flat however long the input, and the output order (hence every byte written
from it) does not depend on the number of workers.

Examples
--------
>>> from semgen.parallel import ordered_map
>>> list(ordered_map(sum, [[1, 2], [3], [4, 5]], workers=1))
[3, 3, 9]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _watch_parent(parent: int) -> None:  # pragma: no cover - runs in a worker
    import time

    # The pool's main process, not os.getppid(): under forkserver a worker's parent is the server.
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:  # the main process died (kill -9)
            os._exit(1)
        except PermissionError:  # the pid now belongs to another user's process: ours is gone
            os._exit(1)


def _init_worker(parent: int, initializer: Callable[[], None] | None) -> None:  # pragma: no cover
    # A worker must not outlive its parent: after a kill -9 of the main process it would otherwise
    # wait for work forever, holding its memory.
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already; OpenCV threads would fight them
    except Exception:
        pass
    if initializer is not None:
        initializer()


def pool_context(preload: Iterable[str] = ()):
    """The multiprocessing context semgen's pools use (forkserver where available).

    Not "fork": a child forked after OpenCV or torch has started its thread pools can deadlock.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        if preload:
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - Windows / macOS


def ordered_map(fn: Callable[[T], R], chunks: Iterable[T], *, workers: int = 1, window: int | None = None,
                initializer: Callable[[], None] | None = None, preload: Iterable[str] = (),
                force_pool: bool = False) -> Iterator[R]:
    """``fn(chunk)`` for each chunk, in order, over ``workers`` processes.

    Parameters
    ----------
    fn : callable
        Picklable (a module-level function or an instance of a module-level class).
    chunks : iterable
        Work items; consumed lazily (at most ``window`` ahead of the consumer).
    workers : int
        Processes; 1 (or 0) runs in this process, without a pool, unless ``force_pool``.
    window : int, optional
        Chunks in flight; default ``4 * workers``.
    initializer : callable, optional
        Run once in each worker after semgen's own set-up.
    preload : iterable of str
        Modules the forkserver imports once, so workers start fast.
    force_pool : bool
        Use a pool even for one worker (to overlap its work with the consumer's).

    Yields
    ------
    The results, in the order of ``chunks``. A dead worker raises :class:`RuntimeError`.
    """
    it = iter(chunks)
    if workers <= 1 and not (force_pool and workers == 1):
        for c in it:
            yield fn(c)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    window = window or 4 * workers
    ctx = pool_context(preload)
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(os.getpid(), initializer)) as ex:
            pending = []
            for c in it:
                pending.append(ex.submit(fn, c))
                if len(pending) >= window:
                    break
            while pending:
                res = pending.pop(0).result()
                nxt = next(it, _END)
                if nxt is not _END:
                    pending.append(ex.submit(fn, nxt))
                yield res
    except BrokenProcessPool as e:
        raise RuntimeError(f"a worker process died ({e}); re-run the same command to resume") from None


_END = object()
