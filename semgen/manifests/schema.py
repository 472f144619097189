"""The manifest record schema (see DESIGN.md, "The dataset dir")."""

from __future__ import annotations

import posixpath
from typing import Any

from ..errors import ManifestError
from ..taxonomy import CLASSES

SCHEMA_VERSION = 1
MANIFEST_NAME = "metadata.jsonl"
INFO_NAME = "dataset.json"
IMAGES_DIR = "images"
MASKS_DIR = "masks"

#: Fields every record has.
REQUIRED_FIELDS: tuple[str, ...] = ("file_name", "label", "source", "sha256", "width", "height")
#: Known sources; others are allowed (DESIGN.md says "...") but must be non-empty strings.
SOURCES: tuple[str, ...] = ("procedural", "diffusion", "refined", "real")


def check_relpath(name: Any, field: str = "file_name") -> str:
    """Return ``name`` if it is a safe POSIX path relative to the dataset dir, else raise.

    Absolute paths, drive letters, backslashes, empty parts and ``..`` are rejected.
    """
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{field} must be a non-empty string, got {name!r}")
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ManifestError(f"{field} must be relative to the dataset dir, got {name!r}")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or posixpath.normpath(name) != name:
        raise ManifestError(f"{field} must not contain '..', '.' or empty parts, got {name!r}")
    return name


def validate_record(rec: Any) -> dict:
    """Check one record against the schema; return it unchanged or raise :class:`ManifestError`."""
    if not isinstance(rec, dict):
        raise ManifestError(f"a record must be a JSON object, got {type(rec).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in rec]
    if missing:
        raise ManifestError(f"record {rec.get('file_name', '?')!r} lacks {', '.join(missing)}")
    check_relpath(rec["file_name"])
    if rec.get("mask_file_name") is not None:
        check_relpath(rec["mask_file_name"], "mask_file_name")
    if rec["label"] not in CLASSES:
        raise ManifestError(f"record {rec['file_name']!r}: label {rec['label']!r} is not canonical")
    if not isinstance(rec["source"], str) or not rec["source"]:
        raise ManifestError(f"record {rec['file_name']!r}: source must be a non-empty string")
    sha = rec["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ManifestError(f"record {rec['file_name']!r}: sha256 must be 64 lowercase hex digits")
    for k in ("width", "height"):
        if not isinstance(rec[k], int) or rec[k] <= 0:
            raise ManifestError(f"record {rec['file_name']!r}: {k} must be a positive integer")
    return rec


def record_key(rec: dict) -> str:
    """The identity of a record within a dataset dir: its ``id`` if present, else its file name."""
    return str(rec.get("id") or rec["file_name"])
