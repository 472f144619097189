"""``semgen import``: an ImageFolder tree (``ROOT/<class>/*.png``) -> a dataset dir with ``source: real``.

8-bit grayscale PNGs are hard-linked (copied where links fail) unchanged. Anything else (RGB,
RGBA, palette, JPEG, TIFF, ...) is converted to 8-bit grayscale and written as a new PNG; its
record keeps ``original_file``. Unreadable inputs are listed in ``rejected.jsonl`` with their
reason and never stop the run. Re-running resumes: images already in the manifest are skipped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from ..errors import ImageReadError, SemgenError, StrictFailure
from .analyze import error_detail
from ..imageio import MAX_PIXELS, encode_png, read_gray, sha256_bytes, sha256_file, write_bytes_atomic
from ..manifests import IMAGES_DIR, DatasetDir, current_command, dumps_record, lock_dir
from ..manifests.imagefolder import scan_imagefolder
from ..manifests.ops import link_or_copy

REJECTED_NAME = "rejected.jsonl"
CONFIG_KEY = "import"


@dataclass
class ImportResult:
    out: Path
    added: int
    skipped: int
    rejected: list      #: [(relative path, reason, detail)]
    converted: int
    linked: int


def parse_label_map(pairs) -> dict[str, str]:
    """``["raw=canonical", ...]`` -> dict; a malformed pair is an error."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise SemgenError(f"--label-map wants RAW=CLASS, got {p!r}")
        k, v = p.split("=", 1)
        if not k.strip() or not v.strip():
            raise SemgenError(f"--label-map wants RAW=CLASS, got {p!r}")
        out[k.strip()] = v.strip()
    return out


def _target_names(items: list[tuple[str, str]]) -> list[str]:
    """``images/<label>/<stem>.png`` for each input; a clash (a.png + a.jpg) keeps the suffix in the name."""
    names = []
    for rel, label in items:
        p = PurePosixPath(rel)
        names.append(f"{IMAGES_DIR}/{label}/{'/'.join(p.parts[1:-1] + (p.stem,))}.png")
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    for k, (rel, label) in enumerate(items):
        if counts[names[k]] > 1:
            p = PurePosixPath(rel)
            names[k] = f"{IMAGES_DIR}/{label}/{'/'.join(p.parts[1:-1] + (p.name.replace('.', '_'),))}.png"
    return names


def _is_plain_gray_png(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.mode == "L" and "transparency" not in im.info


def import_imagefolder(root, out, *, label_map: dict[str, str] | None = None, source: str = "real",
                       allow_16bit: bool = False, max_pixels: int = MAX_PIXELS, strict: bool = False,
                       progress: bool = True) -> ImportResult:
    """Import an ImageFolder tree into the dataset dir ``out`` (resumable; see module docstring).

    ``progress`` shows a bar on stderr when it is a terminal.
    """
    root = Path(root)
    items = scan_imagefolder(root, label_map)
    names = _target_names(items)
    ds = DatasetDir.create(out)
    with lock_dir(ds.root):  # one run per dir: two would add every image twice (issue 14)
        config = {"root": str(root.resolve()), "label_map": dict(sorted((label_map or {}).items())),
                  "source": source, "allow_16bit": allow_16bit}
        ds.check_config(CONFIG_KEY, config)
        done = ds.keys()
        added = skipped = converted = linked = 0
        rejected = []
        from tqdm import tqdm

        with ds.appender() as app:
            for (rel, label), name in tqdm(list(zip(items, names)), desc="import", unit="img",
                                           disable=not (progress and sys.stderr.isatty())):
                if name in done:
                    skipped += 1
                    continue
                src = root / rel
                try:
                    img = read_gray(src, allow_16bit=allow_16bit, max_pixels=max_pixels)
                    plain = _is_plain_gray_png(src)
                except ImageReadError as e:
                    rejected.append((rel, e.reason, error_detail(e)))
                    continue
                except OSError as e:
                    rejected.append((rel, "unreadable", str(e)))
                    continue
                dst = ds.path(name)
                rec = {"file_name": name, "label": label, "source": source, "width": int(img.shape[1]),
                       "height": int(img.shape[0]), "source_file": rel}
                if plain:
                    link_or_copy(src, dst)  # already what a dataset dir holds: the very bytes, not re-encoded
                    rec["sha256"] = sha256_file(dst)
                    linked += 1
                else:
                    data = encode_png(img)
                    write_bytes_atomic(dst, data)
                    rec["sha256"] = sha256_bytes(data)
                    rec["original_file"] = rel
                    with Image.open(src) as im:
                        rec["original_mode"] = im.mode
                    converted += 1
                app.append(rec)
                added += 1
        lines = [dumps_record({"source_file": rel, "reason": reason, "detail": detail,
                               "curation": {"status": "rejected", "reasons": [f"unreadable:{reason}"]}})
                 for rel, reason, detail in rejected]
        write_bytes_atomic(ds.root / REJECTED_NAME, "".join(line + "\n" for line in lines).encode())
        ds.write_info(command=current_command(), config_key=CONFIG_KEY, config=config,
                      extra={"import": {"rejected": len(rejected)}})
        result = ImportResult(ds.root, added, skipped, rejected, converted, linked)
        if strict and rejected:
            raise StrictFailure(f"{len(rejected)} unreadable image(s) in {root} (see {ds.root / REJECTED_NAME}); "
                                "--strict makes that an error", result)
        return result


__all__ = ["import_imagefolder", "parse_label_map", "ImportResult"]
