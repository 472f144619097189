"""Append-only JSONL: whole lines, flushed; a torn last line is skipped on read and repaired on append."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterator

from ..errors import ManifestError


class TornLineWarning(UserWarning):
    """A manifest line that could not be parsed (a crash mid-write leaves one at the end)."""


def dumps_record(rec: dict) -> str:
    """The canonical one-line JSON of a record (sorted keys, so identical records are identical bytes)."""
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def jsonl_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict | None, str, bool]]:
    r"""``(line number, object, error, torn)`` for every non-blank line of a JSONL file.

    The one parser of manifest lines: ``object`` is None where the line is not a JSON object, and
    then ``error`` says why; ``torn`` marks a last line without its newline (an interrupted write).
    Callers decide what a bad line means (skip with a warning, raise, or report it).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.jsonl")
    >>> _ = open(p, "w").write('{"a": 1}\n\nnot json\n{"b"')
    >>> [(n, obj, torn) for n, obj, _, torn in jsonl_lines(p)]
    [(1, {'a': 1}, False), (3, None, False), (4, None, True)]
    """
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    complete = data.endswith(b"\n")
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            yield i + 1, None, str(e), i == last and not complete
            continue
        yield i + 1, obj, "", False


def iter_jsonl(path: str | os.PathLike, *, strict: bool = False) -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file.

    A last line without its newline that does not parse is a torn write: skipped with a
    :class:`TornLineWarning`. Any other bad line is skipped with a warning too, unless ``strict``,
    where it raises :class:`ManifestError` naming the line.
    """
    for n, obj, err, torn in jsonl_lines(path):
        if obj is None:
            if strict and not torn:
                raise ManifestError(f"{path}:{n}: unreadable manifest line ({err})")
            what = "torn last line (an interrupted write)" if torn else f"unreadable line {n}"
            warnings.warn(f"{path}: skipping {what}", TornLineWarning, stacklevel=2)
            continue
        yield obj


def repair_tail(path: str | os.PathLike) -> bool:
    """Cut a torn last line (no trailing newline) off a JSONL file. Returns True if it cut."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        # walk back to the previous newline in blocks
        pos, block = size, 1 << 16
        cut = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            pos = start
        f.truncate(cut)
    warnings.warn(f"{path}: removed a torn last line left by an interrupted run", TornLineWarning, stacklevel=2)
    return True


class JsonlAppender:
    """Appends records as whole lines, one ``write`` each, flushed (and fsynced if ``fsync``).

    Opening repairs a torn tail first, so a crash never leaves two half-lines glued together.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, rec: dict) -> None:
        data = (dumps_record(rec) + "\n").encode("utf-8")
        n = os.write(self._fd, data)
        if n != len(data):  # a full disk can short-write: undo the partial line
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - n)
            raise OSError(28, f"short write to {self.path} (disk full?)")
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
