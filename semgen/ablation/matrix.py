"""Expanding a config into cells (one trained model each) and keying every cell by its content.

Cells per seed: ``real`` and ``mix`` at every shot count, ``synthetic`` once (it uses no real
image), ``pretrain`` at every shot count, fine-tuned from that seed's ``synthetic`` model, which is
therefore trained once and shared by both arms. A cell's key is the sha256 of everything that
determines its model: the training images (sha256 + label of each, through the subset keys) and
their weights, the init cell's key, the seed, the classifier hyper-parameters and the semgen
version. The arm's *name* is not in it: two arms that train the same thing share one model.

The init axis (``inits:``) repeats all of that per init: a cell whose first model starts from
other weights than scratch also has ``init_weights`` (``KIND:SHA256`` of the weights file) and the
init's arch in its key; a scratch cell's key has neither, so it is the key it always was.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .config import SCRATCH, AblationConfig, Arm, Init
from .subsets import Item, Pool, content_key, materialize, per_class_subset


@dataclass(frozen=True)
class CellSpec:
    """One point of the matrix before any data is touched."""

    arm: Arm
    shots: int | None  # real images per class; None = all (meaningless for the synthetic arm)
    seed: int
    init: Init = SCRATCH  # where the arm's first model starts

    @property
    def shots_label(self) -> str:
        if self.arm.kind == "synthetic":
            return "-"
        return "all" if self.shots is None else str(self.shots)


def expand(cfg: AblationConfig) -> list[CellSpec]:
    """The matrix, in run order: per init, synthetic-only first (pretrain depends on it), then by
    shots, seed."""
    specs: list[CellSpec] = []
    for init in cfg.inits:
        for arm in cfg.arms:
            if arm.kind == "synthetic":
                specs += [CellSpec(arm, None, s, init) for s in cfg.seeds]
        for k in cfg.shots:
            for s in cfg.seeds:
                for arm in cfg.arms:
                    if arm.kind != "synthetic":
                        specs.append(CellSpec(arm, k, s, init))
    return specs


@dataclass
class TrainPart:
    """One training source of a cell: a materialised dataset dir and its sampling weight."""

    role: str  # "real" | "synthetic"
    name: str  # "real" or the synthetic source's name
    dir: str
    key: str
    weight: float
    n_images: int
    class_counts: dict


@dataclass
class Cell:
    spec: CellSpec
    parts: list[TrainPart]
    hyper: dict
    init: "Cell | None" = None
    key: str = ""
    config: dict = field(default_factory=dict)
    val: str | None = None  # a separate validation set for early stopping (else the classifier's split)

    @property
    def n_train(self) -> int:
        return sum(p.n_images for p in self.parts)

    @property
    def epochs(self) -> int:
        return int(self.hyper.get("epochs", 30))

    @property
    def work(self) -> float:
        """Training images drawn over the whole run: the classifier draws at least
        ``min_epoch_images`` per epoch, so tiny subsets cost as much as a 1024-image one."""
        return float(self.epochs * max(self.n_train, int(self.hyper.get("min_epoch_images", _min_epoch_images()))))

    def label(self) -> str:
        s = self.spec
        init = "" if s.init.scratch and s.init.arch is None else f"init={s.init.name} "
        return f"{init}{s.arm.name} shots={s.shots_label} seed={s.seed}"


def _min_epoch_images() -> int:
    try:
        from ..classifier.train import MIN_EPOCH_IMAGES
    except ImportError:
        return 1024
    return int(MIN_EPOCH_IMAGES)


def cell_key(parts: list[TrainPart], hyper: dict, seed: int, init_key: str | None, val_key: str | None,
             init_weights: str | None = None) -> tuple[str, dict]:
    """sha256 of what determines a cell's model, and that content.

    ``init_key`` is the key of the cell whose model this one fine-tunes; ``init_weights``
    (``KIND:SHA256``) the weights a first-stage cell starts from, None for scratch (and then absent
    from the content, so scratch keys are those of a config without ``inits:``).
    """
    cfg = {
        "data": [[p.key, round(float(p.weight), 6)] for p in parts],
        "init": init_key,
        "seed": int(seed),
        "classifier": {k: hyper[k] for k in sorted(hyper)},
        "val": val_key,
        "semgen": __version__,
    }
    if init_weights is not None:
        cfg["init_weights"] = init_weights
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest(), cfg


def _part(role: str, name: str, items: list[Item], weight: float, cache: Path, tag: str) -> TrainPart:
    counts: dict[str, int] = {}
    for it in items:
        counts[it.label] = counts.get(it.label, 0) + 1
    d = materialize(items, cache, tag=tag)
    return TrainPart(role, name, str(d), content_key(items), weight, len(items), counts)


def resolve_cell_init(init: Init, classifier_arch: str | None) -> tuple[str | None, str | None]:
    """The arch and the ``KIND:SHA256`` weights key of an init's cells.

    Scratch: ``(init.arch, None)``, so the config's arch stays unless the init names one. Otherwise
    the arch is the init's own (``imagenet`` picks it in the config; a checkpoint path without
    ``@ARCH`` uses the checkpoint's; ``semgen`` the classifier's), resolved through the
    classifier's init API: a missing ``semgen[imagenet]`` extra or bundled backbone is its
    one-line error, raised before anything trains.
    """
    if init.scratch:
        return init.arch, None
    from ..classifier.init import INIT_CHOICES, resolve_init
    from ..classifier.pretrained import sha256_file

    arch = init.arch or (classifier_arch if init.init in INIT_CHOICES else None)
    spec = resolve_init(init.init, arch)
    return spec["arch"], f"{spec['kind']}:{spec.get('sha256') or sha256_file(spec['file'])}"


def plan(cfg: AblationConfig, real: Pool | None, sources: dict[str, Pool], cache: Path,
         val_key: str | None = None) -> list[Cell]:
    """Materialise every subset the matrix needs and return its cells (deduplicated by key)."""
    cells = _plan(cfg, real, sources, Path(cache), val_key)
    for c in cells:
        c.val = cfg.val
    return cells


def _plan(cfg, real, sources, cache, val_key):
    # Per init: its arch (if it has one) for both stages; scratch keeps the config's hyper as is.
    hypers, weights = {}, {}
    for it in cfg.inits:
        arch, weights[it.name] = resolve_cell_init(it, cfg.classifier.get("arch"))
        extra = {"arch": arch} if arch is not None else {}
        hypers[it.name] = ({**cfg.classifier, **extra}, {**cfg.classifier, **cfg.finetune, **extra})
    real_parts: dict[tuple, TrainPart] = {}
    syn_parts: dict[tuple, TrainPart] = {}

    def real_part(k, seed, weight=1.0):
        key = (k, seed, weight)
        if key not in real_parts:
            items = per_class_subset(real, k, seed)
            real_parts[key] = _part("real", "real", items, weight, cache, f"real shots={k or 'all'} seed={seed}")
        return real_parts[key]

    def syn_part(name, seed, weight=1.0):
        key = (name, seed, weight)
        if key not in syn_parts:
            src = cfg.sources[name]
            items = per_class_subset(sources[name], src.amount, seed)
            syn_parts[key] = _part("synthetic", name, items, weight, cache,
                                   f"{name} amount={src.amount or 'all'} seed={seed}")
        return syn_parts[key]

    cells: list[Cell] = []
    syn_cells: dict[tuple, Cell] = {}
    for spec in expand(cfg):
        arm, k, s, it = spec.arm, spec.shots, spec.seed, spec.init
        hyper, ft_hyper = hypers[it.name]
        w = weights[it.name]
        init = None
        if arm.kind == "real":
            parts, hp = [real_part(k, s)], hyper
        elif arm.kind == "synthetic":
            parts, hp = [syn_part(arm.source, s)], hyper
        elif arm.kind == "mix":
            parts = [real_part(k, s, 1.0 - arm.ratio), syn_part(arm.source, s, arm.ratio)]
            hp = hyper
        else:  # pretrain: this seed's synthetic-only model, fine-tuned on the real subset
            init = syn_cells.get((arm.source, s, it.name))
            if init is None:  # no synthetic arm for this source in the matrix: add its cell
                pre_spec = CellSpec(Arm("synthetic", arm.source), None, s, it)
                init = _finish(Cell(pre_spec, [syn_part(arm.source, s)], hyper), val_key, w)
                # not asked for as an arm, but trained anyway: it is evaluated and reported too, as
                # every trained model is (results.jsonl has one line per model)
                init.config["implied"] = True
                syn_cells[(arm.source, s, it.name)] = init
                cells.append(init)
            parts, hp = [real_part(k, s)], ft_hyper
        # the fine-tune stage inherits the init through its init cell's key
        cell = _finish(Cell(spec, parts, dict(hp), init), val_key, None if init is not None else w)
        if arm.kind == "synthetic":
            syn_cells[(arm.source, s, it.name)] = cell
        cells.append(cell)
    return cells


def _finish(cell: Cell, val_key: str | None, init_weights: str | None = None) -> Cell:
    cell.key, cfg = cell_key(cell.parts, cell.hyper, cell.spec.seed, cell.init.key if cell.init else None, val_key,
                             init_weights)
    cell.config = {**cfg, **cell.config}
    return cell
