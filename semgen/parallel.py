"""One ordered map over workers, used wherever semgen fans work out (generate, curate, import,
pretrain, diffusion batches, ablation cells).

:func:`ordered_map` yields ``fn(chunk)`` results in input order with a bounded window of chunks in
flight, so memory stays flat however long the input, and the output order (hence every byte written
from it) does not depend on the number of workers. :func:`map_items` is the same over single items,
grouped into chunks.

Where the work runs is a :class:`Backend`: this process (:class:`InProcess`) or a local process
pool (:class:`LocalPool`) by default, or a Ray cluster (:class:`RayBackend`, the ``ray`` extra;
``--executor ray``) for more than one machine. Any object with the same ``map`` method can be
passed as ``backend=`` and must keep the same contract: results in input order, at most
``window`` chunks in flight. A backend whose ``remote`` attribute is true may run ``fn`` on
another machine, so ``fn`` must return what it makes rather than write it to a local path, and
take what it reads as bytes (:func:`map_fetched`). A command's ``--executor`` / ``--ray-address``
come from :func:`add_executor_args` and become a backend in :func:`backend_from_args`.

Examples
--------
>>> from semgen.parallel import map_items, ordered_map
>>> list(ordered_map(sum, [[1, 2], [3], [4, 5]], workers=1))
[3, 3, 9]
>>> list(map_items(abs, [-1, 2, -3], workers=1))
[1, 2, 3]
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import multiprocessing as mp
import os
import threading
from typing import Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from .errors import SemgenError

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


def start_pool_early(preload: Iterable[str]) -> None:
    """Start the fork server of this process's pools now, importing ``preload`` in it.

    A command that will fan out calls this first: the server's imports (about a second for the
    generators or for the image analysis) then run while this process does its own imports and
    reads its input, instead of after. ``preload`` must be the list the later pools pass (the
    server is one per process and keeps the modules it started with). Does nothing where pools
    spawn instead (Windows, macOS).

    Examples
    --------
    >>> start_pool_early(["semgen.seeding"])  # doctest: +SKIP
    """
    ctx = pool_context(preload)
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()  # spawns the server and returns; the server imports on its own


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


#: ``--executor`` choices: the local process pool (default) or a Ray cluster.
EXECUTORS = ("local", "ray")
#: How a dead Ray worker's task is redone before the run gives up (Ray's own default).
RAY_MAX_RETRIES = 3
_RAY_EXTRA = "pip install -c constraints.txt 'semgen[ray]'"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SemgenError(f"--executor ray needs the ray extra: {_RAY_EXTRA}") from None
    return ray


_RAY_WORKER_READY = False


def _ray_task(fn: Callable[[T], R], chunk: T, initializer: Callable[[], None] | None) -> R:  # pragma: no cover
    # Runs in a Ray worker (tested through RayBackend, in another process). Ray reuses a worker
    # for many tasks: the set-up runs once per process, as a pool initializer would.
    global _RAY_WORKER_READY
    if not _RAY_WORKER_READY:
        try:
            import cv2

            cv2.setNumThreads(1)  # Ray runs one task per CPU already
        except Exception:
            pass
        if initializer is not None:
            initializer()
        _RAY_WORKER_READY = True
    return fn(chunk)


class RayBackend:
    """The :class:`Backend` of a Ray cluster: one task per chunk, taken back in input order.

    Connects to ``address`` (``host:port`` of the head node), else to ``$RAY_ADDRESS``, else
    to a cluster started on this machine by ``ray start``, else starts Ray in this process; in a
    process where Ray is already initialised it uses that instance. Every node must have the
    same semgen installed (the same constraints): a task runs ``fn`` there.

    A worker (or node) that dies takes its task with it; Ray runs the task again, up to
    ``max_retries`` times, and since results are taken in input order the consumer sees each
    exactly once. An exception raised by ``fn`` is not retried: it is raised in the consumer.

    Examples
    --------
    >>> backend = RayBackend()  # doctest: +SKIP
    >>> list(map_items(abs, [-1, 2, -3], backend=backend))  # doctest: +SKIP
    [1, 2, 3]
    """

    #: tasks may run on other machines: ``fn`` must return its output, not write it locally
    remote = True

    def __init__(self, address: str | None = None, *, max_retries: int = RAY_MAX_RETRIES,
                 initializer: Callable[[], None] | None = None):
        _import_ray()  # without the extra, fail now, before any work
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.max_retries = int(max_retries)
        self.initializer = initializer
        self._started = False
        self._task = None

    def _connect(self):
        # on first use, so that a run's own checks (bad arguments) come before Ray's start-up
        ray = _import_ray()
        if not ray.is_initialized():
            import logging

            try:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError as e:  # a wrong --ray-address: no traceback for a user error
                raise SemgenError(f"cannot reach the Ray cluster at {self.address}: {e}") from None
            self._started = True
        if self._task is None:
            self._task = ray.remote(num_cpus=1, max_retries=self.max_retries)(_ray_task)
        return ray

    @property
    def workers(self) -> int:
        """CPUs of the cluster now (tasks in parallel); at least 1."""
        return max(1, int(self._connect().cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable[[T], R], chunks: Iterable[T], window: int) -> Iterator[R]:
        ray = self._connect()
        from ray.exceptions import RayTaskError

        it = iter(chunks)
        fn_ref = ray.put(fn)  # shipped to the object store once, not with every task
        pending = collections.deque(self._task.remote(fn_ref, c, self.initializer)
                                    for c in itertools.islice(it, max(1, window)))
        try:
            while pending:
                try:
                    res = ray.get(pending.popleft())
                except RayTaskError as e:  # fn raised: the worker's own exception, as in a pool
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, BaseException):
                        raise cause from None
                    raise
                except ray.exceptions.RayError as e:  # retries spent: a worker or node kept dying
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise RuntimeError(f"a Ray worker died {self.max_retries + 1} times on one task ({msg}); "
                                       "re-run the same command to resume") from None
                nxt = next(it, _END)
                if nxt is not _END:
                    pending.append(self._task.remote(fn_ref, nxt, self.initializer))
                yield res
        finally:
            for ref in pending:  # the consumer stopped early (an error, a closed generator)
                ray.cancel(ref)

    def close(self) -> None:
        """Disconnect (and stop Ray, if this backend started it in this process)."""
        if self._started:
            _import_ray().shutdown()
            self._started = False


def make_backend(executor: str = "local", *, address: str | None = None) -> Backend | None:
    """The backend ``--executor`` names: None for ``local`` (the callers' own pool), a :class:`RayBackend`.

    Parameters
    ----------
    executor : {"local", "ray"}
    address : str, optional
        Ray head node ``host:port`` (``--ray-address``); default ``$RAY_ADDRESS``.

    Examples
    --------
    >>> make_backend("local") is None
    True
    """
    if executor not in EXECUTORS:
        raise SemgenError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "local":
        if address:
            raise SemgenError("--ray-address needs --executor ray")
        return None
    return RayBackend(address)


def add_executor_args(parser) -> None:
    """``--executor local|ray`` and ``--ray-address`` on an argparse parser (see :func:`make_backend`)."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="where the work runs: local processes (--workers) or a Ray cluster "
                             "(the ray extra; output does not depend on it; default local)")
    parser.add_argument("--ray-address", metavar="HOST:PORT",
                        help="Ray head node to join (default $RAY_ADDRESS, else a cluster started on this "
                             "machine by `ray start`, else a new one here)")


@contextlib.contextmanager
def backend_from_args(args) -> Iterator[Backend | None]:
    """The backend of a command's ``--executor`` / ``--ray-address`` (:func:`add_executor_args`), closed after.

    Every command with the two flags runs its library call inside this, so that they all mean the
    same and a Ray instance started for the run is stopped when it ends, however it ends.

    Examples
    --------
    >>> import argparse
    >>> with backend_from_args(argparse.Namespace(executor="local", ray_address=None)) as b:
    ...     print(b)
    None
    """
    backend = make_backend(args.executor, address=args.ray_address)
    try:
        yield backend
    finally:
        if backend is not None:
            backend.close()


def is_remote(backend: Backend | None) -> bool:
    """Whether ``backend`` may run a task on another machine (then tasks take bytes, not local paths)."""
    return bool(getattr(backend, "remote", False))


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
              backend: Backend | None = None, prepare: Callable[[T], T] | None = None) -> Iterator[R]:
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
    prepare : callable, optional
        Run in this process on each item as its chunk is sent, the result going to ``fn``: where
        tasks run on other machines (:func:`is_remote`), the reading of a local file into bytes.
        Lazy like the rest, so at most ``window`` chunks of prepared items are held.
    """
    if backend is None and (workers <= 1 or len(items) < serial_below):
        yield from map(fn, items if prepare is None else map(prepare, items))
        return
    workers = max(1, min(workers, len(items)))
    cs = chunksize or max(1, min(max_chunk, len(items) // (workers * 8)))
    if prepare is None:
        chunks = (items[i:i + cs] for i in range(0, len(items), cs))
    else:
        chunks = ([prepare(x) for x in items[i:i + cs]] for i in range(0, len(items), cs))
    for res in ordered_map(functools.partial(_apply_all, fn), chunks, workers=workers, preload=preload,
                           backend=backend):
        yield from res


_END = object()


def map_fetched(fn: Callable[[T], R], items: Sequence[T], *, fetch: Callable[[T], object],
                fetched_fn: Callable[[object], R], workers: int = 1, backend: Backend | None = None,
                serial_below: int = 2, preload: Iterable[str] = ()) -> Iterator[R]:
    """``fn(item)`` for each item, in order, where ``fn`` reads local files: :func:`map_items` on any backend.

    A remote backend's tasks cannot open this machine's files. There ``fetch`` runs here on each
    item (reading its file, and whatever else needs this machine, such as a cache lookup) and
    ``fetched_fn`` runs in the task on what ``fetch`` returned, which is all that travels. So
    ``fn(item)`` must equal ``fetched_fn(fetch(item))``; local workers run ``fn`` and read the
    files themselves. ``preload`` as for :func:`ordered_map` (local pools only).

    Examples
    --------
    >>> list(map_fetched(len, ["ab", "c"], fetch=str.upper, fetched_fn=len))
    [2, 1]
    """
    if backend is None:
        return map_items(fn, items, workers=workers, serial_below=serial_below, preload=preload)
    workers = getattr(backend, "workers", workers)
    if is_remote(backend):
        return map_items(fetched_fn, items, workers=workers, backend=backend, prepare=fetch)
    return map_items(fn, items, workers=workers, backend=backend)
