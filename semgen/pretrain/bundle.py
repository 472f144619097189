"""Turn a pretraining run into a bundled backbone folder (``--init semgen``).

The fine-label head is dropped (fine-tuning never loads it) and floating-point tensors are stored
as float16, which halves the size that ships in the package; ``apply_init`` copies them into the
float32 model. Run as ``python -m semgen.pretrain.bundle RUN_DIR FOLDER [--card CARD.md]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..errors import SemgenError
from ..imageio import write_bytes_atomic


def bundle_backbone(run_dir, folder, *, card: str | None = None, half: bool = True) -> Path:
    """Write the backbone of pretraining run ``run_dir`` to ``folder`` (the bundled layout).

    Parameters
    ----------
    run_dir : path
        A ``semgen pretrain`` run dir (its ``model.safetensors`` + ``config.json``).
    folder : path
        Output folder: ``model.safetensors``, ``config.json`` and ``README.md`` (``card``).
    card : str, optional
        The model card (Markdown); default a short one made from the run's config.
    half : bool
        Store floating-point tensors as float16.

    Returns
    -------
    Path
        ``folder``.
    """
    from safetensors.torch import load_file

    from ..classifier.checkpoint import FORMAT, write_safetensors
    from ..classifier.models import create_model

    run = Path(run_dir)
    if not (run / "model.safetensors").is_file() or not (run / "config.json").is_file():
        raise SemgenError(f"{run} is not a semgen pretrain run dir (no model.safetensors / config.json)")
    cfg = json.loads((run / "config.json").read_text())
    state = load_file(str(run / "model.safetensors"))
    arch = cfg["arch"]
    head = create_model(arch, 2).head_parameter_names()
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in state.items() if k not in head}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", state, {"format": FORMAT, "arch": arch})
    keep = {k: cfg[k] for k in ("arch", "size", "input", "pretrain", "step", "images_seen", "semgen_version",
                                "generators", "init") if k in cfg}
    if isinstance(keep.get("init"), dict) and "checkpoint_classes" in keep["init"]:
        # the init run's class list (hundreds of fine labels) says nothing of a headless backbone
        init = dict(keep["init"])
        init["checkpoint_classes"] = len(init["checkpoint_classes"])
        keep["init"] = init
    keep = _portable(keep, Path.cwd())
    keep.update({"format": "semgen-classifier", "head": "removed (fine-tuning trains its own)",
                 "dtype": "float16" if half else "float32", "fine_labels": len(cfg.get("classes", []))})
    write_bytes_atomic(folder / "config.json", (json.dumps(keep, indent=1) + "\n").encode())
    if card is None:
        card = (f"# semgen backbone: {arch}\n\nPretrained by `semgen pretrain` on "
                f"{keep.get('images_seen')} streamed procedural images. Settings: `config.json`.\n")
    write_bytes_atomic(folder / "README.md", card.encode())
    return folder


def _portable(value, root: Path):
    """``value`` with absolute paths made relative to ``root`` (else cut to their last two parts).

    A bundled config ships to every user: the machine it was made on says nothing to them, and the
    sha256 beside each file already identifies it.
    """
    if isinstance(value, dict):
        return {k: _portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        path = Path(value)
        try:
            return path.relative_to(root.resolve()).as_posix()
        except ValueError:
            return Path(*path.parts[-2:]).as_posix()
    return value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m semgen.pretrain.bundle", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("folder")
    ap.add_argument("--card", help="model card (Markdown file) to ship as README.md")
    ap.add_argument("--fp32", action="store_true", help="keep float32 tensors")
    a = ap.parse_args(argv)
    try:
        card = Path(a.card).read_text() if a.card else None
        out = bundle_backbone(a.run_dir, a.folder, card=card, half=not a.fp32)
    except (SemgenError, OSError) as e:
        print(f"semgen: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
