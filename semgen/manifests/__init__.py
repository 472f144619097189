"""Dataset dirs and their JSONL manifests: schema, append-only writing, reading, merging."""

from .dataset import DatasetDir, current_command
from .jsonl import JsonlAppender, TornLineWarning, dumps_record, iter_jsonl, repair_tail
from .lock import DirInUseError, lock_dir
from .ops import merge, split, summarize, validate_dir
from .schema import (
    IMAGES_DIR, INFO_NAME, MANIFEST_NAME, MASKS_DIR, REQUIRED_FIELDS, SCHEMA_VERSION,
    check_relpath, record_key, validate_record,
)
from .sources import DataSource, SourceItem, iter_source, parse_source, read_source

__all__ = [
    "DatasetDir", "JsonlAppender", "TornLineWarning", "dumps_record", "iter_jsonl", "repair_tail",
    "merge", "split", "summarize", "validate_dir", "current_command", "check_relpath", "record_key",
    "validate_record", "IMAGES_DIR", "INFO_NAME", "MANIFEST_NAME", "MASKS_DIR", "REQUIRED_FIELDS",
    "SCHEMA_VERSION", "DirInUseError", "lock_dir", "DataSource", "SourceItem", "iter_source", "parse_source",
    "read_source",
]
