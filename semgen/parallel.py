"""One ordered map over workers, used wherever semgen fans work out (generate, curate, pretrain).

:func:`ordered_map` yields ``fn(chunk)`` results in input order with a bounded window of chunks in
flight, so memory stays flat however long the input, and the output order (hence every byte written
from it) does not depend on the number of workers. :func:`map_items` is the same over single items,
grouped into chunks.

Where the work runs is a :class:`Backend`: this process (:class:`InProcess`) or a local process
pool (:class:`LocalPool`) by default; any object with the same ``map`` method (a cluster, say) can
be passed as ``backend=`` and must keep the same contract: results in input order, at most
``window`` chunks in flight.

Examples
--------
>>> from semgen.parallel import map_items, ordered_map
>>> list(ordered_map(sum, [[1, 2], [3], [4, 5]], workers=1))
[3, 3, 9]
>>> list(map_items(abs, [-1, 2, -3], workers=1))
[1, 2, 3]
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import threading
from typing import Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

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


class Backend(Protocol):
    """Where :func:`ordered_map` runs its work.

    ``map(fn, chunks, window)`` yields ``fn(chunk)`` for each chunk in ``chunks``, in input order,
    consuming ``chunks`` lazily with at most ``window`` chunks submitted and not yet yielded. A
    failed task raises in the consumer; a worker that died raises :class:`RuntimeError`.
    """

    def map(self, fn: Callable[[T], R], chunks: Iterable[T], window: int) -> Iterator[R]: ...


class InProcess:
    """The :class:`Backend` that runs each chunk in this process, when it is asked for."""

    def map(self, fn: Callable[[T], R], chunks: Iterable[T], window: int) -> Iterator[R]:
        for c in chunks:
            yield fn(c)


class LocalPool:
    """The :class:`Backend` of ``workers`` local processes (forkserver; see :func:`pool_context`).

    Workers exit when the process that made the pool dies, run ``cv2.setNumThreads(1)`` and then
    ``initializer``; ``preload`` modules are imported once by the forkserver.
    """

    def __init__(self, workers: int, *, initializer: Callable[[], None] | None = None,
                 preload: Iterable[str] = ()):
        self.workers = int(workers)
        self.initializer = initializer
        self.preload = list(preload)

    def map(self, fn: Callable[[T], R], chunks: Iterable[T], window: int) -> Iterator[R]:
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        it = iter(chunks)
        ctx = pool_context(self.preload)
        try:
            with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(os.getpid(), self.initializer)) as ex:
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


def ordered_map(fn: Callable[[T], R], chunks: Iterable[T], *, workers: int = 1, window: int | None = None,
                initializer: Callable[[], None] | None = None, preload: Iterable[str] = (),
                force_pool: bool = False, backend: Backend | None = None) -> Iterator[R]:
    """``fn(chunk)`` for each chunk, in order, over ``workers`` processes (or ``backend``).

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
    backend : Backend, optional
        Run the chunks there instead; ``initializer``, ``preload`` and ``force_pool`` are then the
        backend's business. The results are the same whatever the backend.

    Yields
    ------
    The results, in the order of ``chunks``. A dead worker raises :class:`RuntimeError`.
    """
    window = window or 4 * max(1, workers)
    if backend is None:
        pooled = workers > 1 or (force_pool and workers == 1)
        backend = LocalPool(workers, initializer=initializer, preload=preload) if pooled else InProcess()
    yield from backend.map(fn, chunks, window)


def _apply_all(fn: Callable[[T], R], chunk: list) -> list:
    return [fn(a) for a in chunk]


def map_items(fn: Callable[[T], R], items: Sequence[T], *, workers: int = 1, chunksize: int | None = None,
              max_chunk: int = 64, serial_below: int = 2, preload: Iterable[str] = (),
              backend: Backend | None = None) -> Iterator[R]:
    """``fn(item)`` for each item, in order, lazily: :func:`ordered_map` over chunks of items.

    Parameters
    ----------
    fn : callable
        Picklable, as for :func:`ordered_map`.
    items : sequence
    workers : int
        Processes; fewer than 2, or fewer than ``serial_below`` items, run in this process.
    chunksize : int, optional
        Items per task; default ``len(items) // (8 * workers)``, between 1 and ``max_chunk``
        (about 8 tasks per worker, so a slow chunk does not leave the others idle).
    preload, backend
        As for :func:`ordered_map`.
    """
    if backend is None and (workers <= 1 or len(items) < serial_below):
        yield from map(fn, items)
        return
    workers = max(1, min(workers, len(items)))
    cs = chunksize or max(1, min(max_chunk, len(items) // (workers * 8)))
    chunks = (items[i:i + cs] for i in range(0, len(items), cs))
    for res in ordered_map(functools.partial(_apply_all, fn), chunks, workers=workers, preload=preload,
                           backend=backend):
        yield from res


_END = object()
