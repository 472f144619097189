"""``semgen import``: an ImageFolder tree (``ROOT/<class>/*.png``) -> a dataset dir with ``source: real``.

8-bit grayscale PNGs are hard-linked (copied where links fail) unchanged. Anything else (RGB,
RGBA, palette, JPEG, TIFF, ...) is converted to 8-bit grayscale and written as a new PNG; its
record keeps ``original_file``. Unreadable inputs are listed in ``rejected.jsonl`` with their
reason and never stop the run. Re-running resumes: images already in the manifest are skipped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from ..errors import ImageReadError, SemgenError, StrictFailure
from .analyze import error_detail
from ..imageio import MAX_PIXELS, encode_png, read_gray, sha256_bytes, sha256_file, write_bytes_atomic
from ..manifests import IMAGES_DIR, DatasetDir, current_command, dumps_record, lock_dir
from ..manifests.imagefolder import scan_imagefolder
from ..manifests.ops import link_or_copy
from ..parallel import Backend, map_fetched

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


def examine(job: tuple) -> dict:
    """What ``semgen import`` makes of one file; ``job`` = (path, content or None, allow_16bit, max_pixels).

    Returns ``{"rejected": (reason, detail)}``, or the image's ``width``, ``height`` and ``plain``
    (an 8-bit grayscale PNG, taken as it is) and, if not plain, the ``png`` it becomes and its
    ``original_mode``. With the content given the file is not opened (a remote backend's task:
    see :func:`fetch`), and the result is the same.
    """
    path, data, allow_16bit, max_pixels = job
    try:
        img = read_gray(path, allow_16bit=allow_16bit, max_pixels=max_pixels, data=data)
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            plain = im.format == "PNG" and im.mode == "L" and "transparency" not in im.info
            mode = im.mode
    except ImageReadError as e:
        return {"rejected": (e.reason, error_detail(e))}
    except OSError as e:
        return {"rejected": ("unreadable", str(e))}
    out = {"width": int(img.shape[1]), "height": int(img.shape[0]), "plain": plain}
    if not plain:
        out.update(png=encode_png(img), original_mode=mode)
    return out


def fetch(job: tuple) -> tuple | dict:
    """``job`` with the file's content read here, for :func:`examined` on another machine."""
    path, _, allow_16bit, max_pixels = job
    try:
        with open(path, "rb") as f:
            return (path, f.read(), allow_16bit, max_pixels)
    except OSError:
        return examine(job)  # the error as a local run reports it (missing, unreadable)


def examined(fetched: tuple | dict) -> dict:
    """:func:`examine` of what :func:`fetch` returned: ``examine(job) == examined(fetch(job))``."""
    return fetched if isinstance(fetched, dict) else examine(fetched)


def import_imagefolder(root, out, *, label_map: dict[str, str] | None = None, source: str = "real",
                       allow_16bit: bool = False, max_pixels: int = MAX_PIXELS, strict: bool = False,
                       progress: bool = True, backend: Backend | None = None) -> ImportResult:
    """Import an ImageFolder tree into the dataset dir ``out`` (resumable; see module docstring).

    ``progress`` shows a bar on stderr when it is a terminal. ``backend``
    (:func:`semgen.parallel.make_backend`) decodes and converts the images there (a Ray cluster,
    say) instead of in this process; this process still reads the files and writes the output.
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
        todo = [(rel, label, name) for (rel, label), name in zip(items, names) if name not in done]
        skipped = len(items) - len(todo)
        added = converted = linked = 0
        rejected = []
        from ..progress import progress_bar

        jobs = [(str(root / rel), None, allow_16bit, max_pixels) for rel, _, _ in todo]
        results = map_fetched(examine, jobs, backend=backend, fetch=fetch, fetched_fn=examined)
        bar = progress_bar(total=len(items), initial=skipped, desc="import", unit="img", enabled=progress)
        # one writer, in input order, whatever ran the examinations: a resumed or a Ray run appends
        # each record once, and the same records
        with ds.appender() as app:
            for (rel, label, name), res in zip(todo, results):
                bar.update(1)
                if "rejected" in res:
                    rejected.append((rel, *res["rejected"]))
                    continue
                dst = ds.path(name)
                rec = {"file_name": name, "label": label, "source": source, "width": res["width"],
                       "height": res["height"], "source_file": rel}
                if res["plain"]:
                    link_or_copy(root / rel, dst)  # already what a dataset dir holds: the very bytes, not re-encoded
                    rec["sha256"] = sha256_file(dst)
                    linked += 1
                else:
                    write_bytes_atomic(dst, res["png"])
                    rec["sha256"] = sha256_bytes(res["png"])
                    rec["original_file"] = rel
                    rec["original_mode"] = res["original_mode"]
                    converted += 1
                app.append(rec)
                added += 1
        bar.close()
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
