"""One semgen process per output dir: an exclusive lock, with the holder's pid in the error.

Two runs writing one dataset dir (or run dir) at once interleave their records and files and leave
duplicates and checksum mismatches that no command can repair (issue 14). Every command that
writes a dir takes :func:`lock_dir` on it first.

The lock is an OS file lock (``flock`` through the ``filelock`` package) on ``DIR/.semgen.lock``:
the kernel drops it when the holder exits, however it exits, so a lock left by a killed process
is simply taken over; nothing stale needs cleaning. A clean release removes the lock files. The holder writes its pid to
``DIR/.semgen.lock.pid`` (a separate file: some ``filelock`` versions truncate the lock file when a
contender opens it) so that the error can say who holds the dir. A process that already holds a
dir may take it again (nested calls); only the outermost release unlocks it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import SemgenError

LOCK_NAME = ".semgen.lock"
PID_NAME = ".semgen.lock.pid"
#: Names of the lock files, which commands that inspect a dir's contents must ignore.
LOCK_FILES = (LOCK_NAME, PID_NAME)

_held: dict[str, list] = {}  # realpath -> [FileLock, depth], this process's locks
_guard = threading.Lock()


class DirInUseError(SemgenError):
    """Another live process holds the dir's lock."""


def _holder_pid(pid_path: Path, wait_s: float = 1.0) -> int | None:
    """The pid the holder wrote; it may be a moment behind its lock, so wait up to ``wait_s``."""
    end = time.monotonic() + wait_s
    while True:
        try:
            return int(pid_path.read_text().strip())
        except (OSError, ValueError):
            if time.monotonic() >= end:
                return None
            time.sleep(0.05)


def _holds_linked_file(lock, path: Path) -> bool:
    """Whether ``lock`` holds the file that ``path`` names now, not one unlinked by its last holder.

    (filelock 3.12.3+ checks this itself; this keeps older versions safe too.)
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    return fd is None or os.path.samestat(os.fstat(fd), st)


class DirLock:
    """Context manager: hold ``DIR/.semgen.lock`` exclusively for this process.

    Parameters
    ----------
    directory : path
        The output dir; created (with its parents) if missing.
    wait : float
        Seconds to wait for another process to let go (``math.inf``: until it does); 0, the
        default, fails at once. For work two runs may share, such as one cell of a shared
        ablation cache: the second waits for the first, then finds the work done.
    on_wait : callable, optional
        Called once, with the holder's pid (or None), when the lock is taken and this one waits.

    Raises
    ------
    DirInUseError
        On entry, when another live process holds the dir (after ``wait`` seconds):
        ``DIR is in use by another semgen process (pid N)``.
    SemgenError
        When the lock file cannot be created (a read-only or missing parent, a file in the way).
    """

    #: Seconds between two tries while waiting.
    POLL_S = 0.2

    def __init__(self, directory: str | os.PathLike, *, wait: float = 0.0,
                 on_wait: Callable[[int | None], None] | None = None):
        self.dir = Path(directory)
        self.wait = float(wait)
        self.on_wait = on_wait
        self.key: str | None = None

    def __enter__(self) -> "DirLock":
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise SemgenError(f"{self.dir} exists and is not a directory") from None
        except OSError as e:
            raise SemgenError(f"cannot create {self.dir}: {e.strerror or e}") from None
        key = os.path.realpath(self.dir)
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            with _guard:  # never held while waiting: other threads' locks go on
                if self._try(key):
                    return self
            if time.monotonic() >= deadline:
                pid = _holder_pid(Path(key) / PID_NAME)
                who = f"pid {pid}" if pid else "pid unknown"
                raise DirInUseError(f"{self.dir} is in use by another semgen process ({who}); "
                                    "wait for it to finish or use another output dir")
            if self.on_wait is not None and not told:
                self.on_wait(_holder_pid(Path(key) / PID_NAME))
                told = True
            time.sleep(min(self.POLL_S, max(0.0, deadline - time.monotonic())))

    def _try(self, key: str) -> bool:
        """Take the lock now if it is free (or already this process's); False if another holds it."""
        from filelock import FileLock, Timeout

        if key in _held:  # this process already holds it: a nested call
            _held[key][1] += 1
            self.key = key
            return True
        path = Path(key) / LOCK_NAME
        try:
            for _ in range(3):
                lock = FileLock(str(path), timeout=0)
                lock.acquire(timeout=0)
                if _holds_linked_file(lock, path):
                    break
                lock.release()  # we locked a file its last holder had just removed: try again
            else:
                return False
        except Timeout:
            return False
        except OSError as e:
            raise SemgenError(f"cannot lock {self.dir}: {e.strerror or e}") from None
        try:
            # written after the lock is ours: a dead holder's stale pid is overwritten here
            tmp = Path(key) / f".{PID_NAME}.{os.getpid()}.tmp"
            tmp.write_text(f"{os.getpid()}\n")
            os.replace(tmp, Path(key) / PID_NAME)
        except OSError:
            pass  # the lock holds without it; only the error message loses the pid
        _held[key] = [lock, 1]
        self.key = key
        return True

    def __exit__(self, *exc) -> None:
        with _guard:
            entry = _held.get(self.key) if self.key else None
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[self.key]
            # Remove both files while still holding the lock, so a finished run leaves its dir as it
            # would be without locking. Safe: a contender that opened the old lock file before the
            # unlink and gets its flock after the release holds a file that is no longer in the dir,
            # sees so (_holds_linked_file) and lets go, so it never shares the lock with a newer holder.
            for name in (PID_NAME, LOCK_NAME):
                try:
                    os.unlink(Path(self.key) / name)
                except OSError:
                    pass
            entry[0].release()


def lock_dir(directory: str | os.PathLike, *, wait: float = 0.0,
             on_wait: Callable[[int | None], None] | None = None) -> DirLock:
    """``with lock_dir(out): ...``: see :class:`DirLock`.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with lock_dir(d):
    ...     with lock_dir(d):  # the same process may take it again
    ...         pass
    """
    return DirLock(directory, wait=wait, on_wait=on_wait)
