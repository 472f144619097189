"""A persistent cache of per-image analyses, keyed by the file's sha256 and the analysis version.

One SQLite file (WAL mode) holds them all. The default is
``$SEMGEN_CACHE_DIR/curation.sqlite``, else ``$XDG_CACHE_HOME/semgen/curation.sqlite``, else
``~/.cache/semgen/curation.sqlite``; ``semgen curate --cache FILE`` picks another, ``--no-cache``
none. Workers read it; only the main process writes. A corrupt cache file is an error that names
the file (delete it: it only holds values that can be computed again).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from ..errors import SemgenError
from .analyze import ANALYSIS_VERSION


def default_cache_path() -> Path:
    base = os.environ.get("SEMGEN_CACHE_DIR")
    if base:
        return Path(base) / "curation.sqlite"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "semgen" / "curation.sqlite"


class AnalysisCache:
    """sha256 -> analysis (metrics, hashes, thumbnail) for :data:`ANALYSIS_VERSION`."""

    def __init__(self, path, *, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.exists():
                    self.db = None
                    return
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=30)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("CREATE TABLE IF NOT EXISTS analysis (sha256 TEXT NOT NULL, version TEXT NOT NULL,"
                                " data TEXT NOT NULL, thumb BLOB NOT NULL, PRIMARY KEY (sha256, version))")
                self.db.commit()
        except (sqlite3.Error, OSError) as e:
            raise SemgenError(f"analysis cache {self.path} cannot be used ({e}); "
                              "delete it or pass --cache FILE / --no-cache") from None

    def get(self, sha: str) -> dict | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute("SELECT data, thumb FROM analysis WHERE sha256=? AND version=?",
                                  (sha, ANALYSIS_VERSION)).fetchone()
        except sqlite3.Error:
            return None  # e.g. the table does not exist yet
        if row is None:
            return None
        out = json.loads(row[0])
        out["thumb"] = bytes(row[1])
        return out

    def put_many(self, items) -> int:
        """Store ``(sha256, analysis)`` pairs; returns how many were written."""
        rows = [(sha, ANALYSIS_VERSION,
                 json.dumps({k: v for k, v in a.items() if k in ("metrics", "hashes", "width", "height")},
                            sort_keys=True),
                 a["thumb"]) for sha, a in items]
        if rows:
            try:
                with self.db:
                    self.db.executemany("INSERT OR REPLACE INTO analysis VALUES (?, ?, ?, ?)", rows)
            except sqlite3.Error as e:
                raise SemgenError(f"analysis cache {self.path} cannot be written ({e})") from None
        return len(rows)

    def __len__(self) -> int:
        if self.db is None:
            return 0
        return self.db.execute("SELECT COUNT(*) FROM analysis WHERE version=?", (ANALYSIS_VERSION,)).fetchone()[0]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
