"""The dataset dir: ``metadata.jsonl`` + ``dataset.json`` + ``images/`` (+ ``masks/``)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

from .. import __version__
from ..errors import ManifestError, SemgenError
from ..imageio import write_bytes_atomic
from .jsonl import JsonlAppender, iter_jsonl
from .lock import LOCK_FILES
from .schema import INFO_NAME, MANIFEST_NAME, SCHEMA_VERSION, check_relpath, record_key, validate_record


def current_command() -> str:
    """The command line that is running, for ``dataset.json``."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("semgen", "cli.py", "__main__.py")):
        argv[0] = "semgen"
    return shlex.join(argv)


class DatasetDir:
    """A dataset dir on disk.

    Parameters
    ----------
    root : path
        The folder. Nothing is created until :meth:`create` (or a write) is called.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def info_path(self) -> Path:
        return self.root / INFO_NAME

    def path(self, file_name: str) -> Path:
        """Absolute path of a record's ``file_name`` (checked to stay inside the dir)."""
        return self.root / check_relpath(file_name)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike) -> "DatasetDir":
        """Open an existing dataset dir; a clear :class:`SemgenError` if it is not one."""
        ds = cls(root)
        if not ds.root.exists():
            raise SemgenError(f"dataset dir {ds.root} does not exist")
        if not ds.root.is_dir():
            raise SemgenError(f"{ds.root} is not a directory")
        if not ds.manifest_path.exists() and not ds.info_path.exists():
            raise SemgenError(f"{ds.root} is not a dataset dir (no {MANIFEST_NAME})")
        ds.read_info()  # schema check
        return ds

    @classmethod
    def create(cls, root: str | os.PathLike) -> "DatasetDir":
        """Open a dataset dir for writing, making it if needed.

        Raises :class:`SemgenError` if the folder cannot be written or holds another schema.
        """
        ds = cls(root)
        if ds.root.exists() and not ds.root.is_dir():
            raise SemgenError(f"output {ds.root} exists and is not a directory")
        # the lock files of a run killed before its first record do not make the dir "not empty"
        if (ds.root.exists() and any(p.name not in LOCK_FILES for p in ds.root.iterdir())
                and not (ds.manifest_path.exists() or ds.info_path.exists())):
            raise SemgenError(f"output dir {ds.root} is not empty and is not a dataset dir; choose another --out")
        ds.read_info()  # raises on another schema
        try:
            ds.root.mkdir(parents=True, exist_ok=True)
            probe = ds.root / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise SemgenError(f"cannot write to {ds.root}: {e.strerror or e}") from None
        return ds

    # -- dataset.json --------------------------------------------------------------------------
    def read_info(self) -> dict:
        """The parsed ``dataset.json`` ({} if absent). Raises on another schema version."""
        if not self.info_path.exists():
            return {}
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError) as e:
            raise ManifestError(f"{self.info_path} is unreadable: {e}") from None
        version = info.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"{self.root} holds dataset schema {version!r}; this semgen reads schema {SCHEMA_VERSION}"
            )
        return info

    def check_config(self, key: str, config: dict) -> None:
        """Raise if this dir already holds a run under ``key`` made with a different ``config``."""
        old = self.read_info().get("configs", {}).get(key)
        if old is not None and old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise SemgenError(
                f"{self.root} already holds '{key}' made with a different configuration "
                f"(differs in: {', '.join(diff)}); use another --out or the same arguments to resume"
            )

    def write_info(self, *, command: str | None = None, config_key: str | None = None,
                   config: dict | None = None, records: list[dict] | None = None, extra: dict | None = None) -> dict:
        """Rewrite ``dataset.json`` (atomically) with counts recomputed from the manifest."""
        info = self.read_info() or {"schema_version": SCHEMA_VERSION, "created": _now()}
        info["schema_version"] = SCHEMA_VERSION
        info["semgen_version"] = __version__
        info["updated"] = _now()
        if command:
            cmds = info.setdefault("commands", [])
            if not cmds or cmds[-1] != command:
                cmds.append(command)
        if config_key is not None:
            info.setdefault("configs", {})[config_key] = config
        if extra:
            info.update(extra)
        recs = self.records() if records is None else records
        info["num_records"] = len(recs)
        info["class_counts"] = dict(sorted(Counter(r["label"] for r in recs).items()))
        info["sources"] = dict(sorted(Counter(r["source"] for r in recs).items()))
        gens = Counter(
            f"{r['generator']['name']}@{r['generator'].get('version', '?')}" if isinstance(r.get("generator"), dict)
            else str(r["generator"]) for r in recs if r.get("generator")
        )
        info["generators"] = dict(sorted(gens.items()))
        write_bytes_atomic(self.info_path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
        return info

    # -- records -------------------------------------------------------------------------------
    def iter_records(self, *, strict: bool = False) -> Iterable[dict]:
        """Yield validated records; a torn last line is skipped with a warning."""
        if not self.manifest_path.exists():
            return
        for rec in iter_jsonl(self.manifest_path, strict=strict):
            yield validate_record(rec)

    def records(self, *, strict: bool = False) -> list[dict]:
        return list(self.iter_records(strict=strict))

    def keys(self) -> set[str]:
        return {record_key(r) for r in self.iter_records()}

    def appender(self, *, fsync: bool = False) -> JsonlAppender:
        """An appender for the manifest (repairs a torn tail first)."""
        return JsonlAppender(self.manifest_path, fsync=fsync)

    def write_file(self, file_name: str, data: bytes) -> Path:
        """Write a file of the dataset atomically (temporary file + rename)."""
        p = self.path(file_name)
        write_bytes_atomic(p, data)
        return p

    def __repr__(self) -> str:
        return f"DatasetDir({str(self.root)!r})"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
