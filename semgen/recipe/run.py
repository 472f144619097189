"""The product's recipe in one call: ImageNet, then semgen's procedural images with your real ones.

``semgen recipe --real DIR --out DIR`` runs, in order, the stages that docs/results.md measured
as semgen's best use of a small real pool. Each stage is a library call that already resumes or
skips finished work, so running the same command again continues where it stopped.

By default the recipe is *joint* pretraining (``pretrain_real_fraction=0.25, finetune=False``):
each seed's pretraining run draws a quarter of every batch from the real pool, and those runs are
the models, with no fine-tuning stage after them. Measured on ``dev_test`` (docs/results.md,
sessions 35-37, 3 seeds each): one joint run 0.661 on average, the sequential recipe's fine-tunes
0.606 (+0.064 [+0.014, +0.118] paired, seeds 0-1); as 3-seed ensembles 0.678 against 0.662. One
joint run matches the sequential recipe's 3-model ensemble with less compute (no fine-tuning stage).
``finetune=True, pretrain_real_fraction=0`` is the sequential recipe (procedural images only, then
fine-tuning on the real pool), the default before session 39. The stages:

1. ``pretrain``: :func:`semgen.pretrain.pretrain` from ``init`` (ImageNet) on ``images``
   streamed procedural samples with fine labels (``OUT/pretrain``); with ``pretrain_real_fraction``
   that share of each batch is real images of the pool, learnt through their class.
2. ``finetune``: :func:`semgen.classifier.train_classifier` on the real pool from that run, one
   run per seed (``OUT/finetune_s{seed}``): every image, the last epoch, one head-only epoch first.
3. ``baseline`` (``baseline=True``): the same fine-tuning from ``init`` alone
   (``OUT/baseline_s{seed}``): what a user would otherwise have, beside it.
4. ``ensemble``: the seeds as one model (``OUT/ensemble``, ``OUT/baseline_ensemble``).
5. ``student_pretrain`` (``student_images=N``): the student arch pretrained on ``N`` new
   streamed samples (seed ``seed + 1``), learning the ``pretrain`` run's softened predictions
   on each of them as well as their fine labels (``OUT/student_pretrain``).
6. ``transfer`` and ``student`` (``student=ARCH``): unlabelled procedural images
   (``OUT/transfer``) and a small model distilled from the ensemble on the real pool plus those
   images (``OUT/student``), for ``semgen export``.
7. ``edge`` (``qat=True``): quantisation-aware fine-tuning of the student with the same teacher
   (``OUT/student_qat``), exported with 8-bit activations: ``model.int8.onnx``, ``model_int8.h``
   and ``export.json`` (size, latency, INT8-vs-FP32 agreement).
8. ``evaluate`` (``test=``): every model above on each test set, with paired differences from the
   baseline, and the pretraining runs alone (no real image: their fine labels summed per class;
   with ``pretrain_real_fraction``, scored on the real pool's classes only);
   ``OUT/summary.md``.

With ``finetune=False`` (the default; it needs ``pretrain_real_fraction``) the pretraining runs
that mixed in the real pool are the recipe's models ("joint" pretraining): one per seed of
``seeds``, each with its own stream seed (``OUT/pretrain_s{seed}``), their ensemble
(``OUT/ensemble``) and no fine-tuning stage; each is scored, used and distilled from on the real
pool's classes.

``OUT/recipe.json`` holds the settings and each stage's outcome; an ``OUT`` made with other
settings is refused (one line naming what differs), so a resumed recipe is the same recipe. A
stage it was made without (the student, QAT, the baseline) can be added (``ADDABLE_STAGES``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

from pydantic import BeforeValidator, Field, model_validator

from ..configs import Config, Flag, Int, Number
from ..errors import SemgenError
from ..imageio import write_bytes_atomic

FORMAT = "semgen-recipe"
# The student's own pretraining, in samples, when a student is asked for (session 30: its INT8 file
# +0.074 macro-F1 on dev_test over the same student without it, paired, one seed; docs/results.md).
STUDENT_IMAGES = 38_400
# The student's distillation: 75 epochs on a transfer stream (session 34: +0.053 [+0.006, +0.099]
# macro-F1 on dev_test over 25 epochs, paired, one seed; 150 epochs added nothing, session 40).
STUDENT_EPOCHS = 75
# Settings added after recipe folders existed, at the value that means what such a folder did (the
# joint pair: folders made before session 35 fine-tuned after procedural-only pretraining).
LEGACY = {"student_images": 0, "pretrain_real_fraction": 0.0, "finetune": True}
# What a folder made with the sequential recipe, the default before session 39, needs on the command line.
SEQUENTIAL_FLAGS = "--finetune --pretrain-real-fraction 0"
# Former defaults: (the settings a folder then recorded, what it was, the flags that continue it). A
# folder whose recorded settings match one, refused for some of them only, is told those flags.
FORMER_DEFAULTS = (
    ({"finetune": True, "pretrain_real_fraction": 0.0}, "it is a sequential recipe, the default before session 39",
     SEQUENTIAL_FLAGS),
    ({"student_epochs": 20, "transfer_stream": False}, "its student is the recipe's before session 41",
     "--student-epochs 20 --no-transfer-stream"),
)
# Settings that only the QAT stage reads, and those only the student's stages read (QAT's
# included): a recipe without that stage ignores them (ADDABLE_STAGES below).
QAT_SETTINGS = ("qat", "qat_epochs", "qat_lr", "qat_weight_bits")
STUDENT_SETTINGS = ("student_init", "student_images", "student_pretrain_lr", "student_epochs", "student_lr",
                    "transfer", "transfer_weight", "transfer_stream", "teacher_tta") + QAT_SETTINGS
# Stages a folder made without them can add (its flag, and the settings only that stage and the ones
# after it read): what the folder recorded for those settings was never used. A finished recipe
# continued with --student (or --qat, --baseline) runs just the new stages, as the same command
# with that flag from the start would have.
ADDABLE_STAGES = {"student": ("student",) + STUDENT_SETTINGS, "qat": QAT_SETTINGS, "baseline": ("baseline",)}
RECIPE_FILE = "recipe.json"
#: figures of the last evaluation, keyed by model, weights, test images and TTA (run_recipe re-uses them)
EVALUATIONS_FILE = "evaluations.json"
#: macro-F1 of every model with its CI, one panel per test set (linked from summary.md)
SUMMARY_PLOT = "summary.png"


def _arch(v):
    if v is None:
        return v
    from ..classifier.registry import list_archs

    if v not in list_archs():
        raise ValueError(f"must be one of {', '.join(list_archs())}")
    return v


def _tta(v):
    from ..classifier.tta import check_tta

    return check_tta(v)


def _seeds(v):
    v = tuple(int(s) for s in v)
    if not v:
        raise ValueError("needs at least one seed")
    if len(set(v)) != len(v):
        raise ValueError("must be different seeds")
    if min(v) < 0:
        raise ValueError("must be seeds >= 0")
    return v


class RecipeConfig(Config):
    """The settings of a recipe: every field that changes a model it makes.

    The defaults are the best recipe of docs/results.md: EfficientNet-Lite0 from ImageNet, 76,800
    streamed samples at ``--lr 5e-4`` with a quarter of each batch from the real pool (sessions
    35-37), one such run per seed, 3 seeds as one ensemble. The fine-tuning settings (10 epochs at
    ``--lr 1e-3``, ``--val-fraction 0 --head-only-epochs 1``, session 26) serve the baseline, and
    the fine-tuning stage of the sequential recipe (``finetune=True``).

    Parameters
    ----------
    real : str
        The real training pool (ImageFolder tree or dataset dir), kept as an absolute path.
    arch, init : str
        The network and its starting weights (``imagenet`` needs the ``semgen[imagenet]`` extra).
    images : int
        Streamed samples of each pretraining run (76,800: about 55 min on 2 cores at 128 px).
    pretrain_lr : float
        Peak learning rate of the pretraining stage.
    pretrain_real_fraction : float
        Share of each pretraining batch drawn from the real pool (``semgen pretrain --data REAL
        --data-fraction F``), learnt through its class alongside the procedural fine labels
        (default 0.25); 0: procedural images only.
    finetune : bool
        Fine-tune the pretraining run on the real pool (the sequential recipe). ``False`` (the
        default) needs ``pretrain_real_fraction``: the pretraining runs themselves, one per seed
        of ``seeds`` (their stream seeds), are the models, scored on the real pool's classes.
    size : int
        Image side in pixels of the procedural stream, the student and its transfer images.
    finetune_size : int, optional
        Image side of the fine-tuning on the real pool and of the baseline (the real images are
        resized to it). Default: ``size``. ImageNet weights learnt their features at 224 px, where
        a 128 px image's structures are larger (docs/results.md, session 31).
    seed : int
        Seed of the procedural stream (with ``finetune``) and of the transfer images.
    seeds : tuple of int
        Fine-tuning seeds (without ``finetune``: pretraining seeds); two or more are also averaged
        as one ensemble.
    epochs, lr, head_only_epochs : int, float, int
        Fine-tuning on the real pool (every image, the last epoch kept).
    baseline : bool
        Also fine-tune from ``init`` alone with the same seeds, to see what semgen adds.
    student : str, optional
        A small arch distilled from the ensemble (or the one fine-tuned run) for the edge.
    student_init : str, optional
        The student's starting weights (of its first stage). Default: when the student is
        ``arch`` or takes its weights by weight selection (a narrower network of its family,
        e.g. ``efficientnet_lite0_035`` from ``efficientnet_lite0``), the first fine-tuned run,
        or the pretraining run when ``student_images`` is set; else ``semgen`` where a bundled
        backbone exists for its arch, else scratch.
    student_images : int, optional
        Streamed samples of the student's own pretraining, distilled from the pretraining run
        (0: none; the student starts from ``student_init`` on the real pool). Default:
        :data:`STUDENT_IMAGES` with a ``student``, else 0.
    student_pretrain_lr : float
        Its peak learning rate.
    student_epochs, student_lr : int, float
        Distillation epochs (:data:`STUDENT_EPOCHS`) and learning rate (2e-3, ``semgen train``'s
        default, as the edge model of docs/results.md session 24 was trained).
    transfer : int
        Unlabelled procedural images per generator in the student's transfer set.
    transfer_weight : float
        Transfer batches per labelled batch (``semgen train --transfer DIR=W``).
    transfer_stream : bool, optional
        The student's transfer images made on the fly instead (``semgen train --transfer
        stream:SEED+1=W``): each shown once however long the student trains, and no ``transfer/``
        folder (``transfer`` is then unused). Default: True with a ``student`` (the edge files of
        docs/results.md sessions 34-41 were 75-epoch students on the stream), else False.
    teacher_tta : {"none", "flips", "d4"}
        The student (and its QAT) learns the teacher's probabilities averaged over these views of
        each batch (:class:`~semgen.classifier.distill.DistillConfig`): its test-time-augmented
        prediction, one teacher pass per view.
    qat : bool
        Quantisation-aware fine-tuning of the student, then its INT8 export (the ``edge`` stage).
    qat_epochs, qat_lr, qat_weight_bits : int, float, int
        Its epochs, learning rate and weight bits (7: no int16 overflow in onnxruntime's
        8-bit kernels on CPUs without VNNI; docs/classifier.md).

    Examples
    --------
    >>> RecipeConfig(real="data/real", seeds=[0, 1]).seeds
    (0, 1)
    >>> RecipeConfig(real="data/real", seeds=[1, 1])
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: --seeds must be different seeds, got [1, 1] (RecipeConfig.seeds)
    """

    real: Annotated[str, BeforeValidator(lambda v: str(Path(v).resolve()))]
    arch: Annotated[str, BeforeValidator(_arch)] = "efficientnet_lite0"
    init: str = "imagenet"
    images: Annotated[Int, Field(ge=1, le=10**10)] = 76_800
    pretrain_lr: Annotated[Number, Field(gt=0, lt=1)] = 5e-4
    pretrain_real_fraction: Annotated[Number, Field(ge=0, lt=1)] = 0.25
    finetune: Flag = False
    size: Annotated[Int, Field(ge=32, le=512)] = 128
    finetune_size: Annotated[Optional[Int], Field(ge=32, le=512)] = None
    seed: Annotated[Int, Field(ge=0, lt=2**63)] = 0
    seeds: Annotated[tuple[int, ...], BeforeValidator(_seeds)] = (0, 1, 2)
    epochs: Annotated[Int, Field(ge=1, le=10_000)] = 10
    lr: Annotated[Number, Field(gt=0, lt=1)] = 1e-3
    head_only_epochs: Annotated[Int, Field(ge=0)] = 1
    baseline: Flag = False
    student: Annotated[Optional[str], BeforeValidator(_arch)] = None
    student_init: Optional[str] = None
    student_images: Annotated[Optional[Int], Field(ge=0, le=10**10)] = None
    student_pretrain_lr: Annotated[Number, Field(gt=0, lt=1)] = 1e-3
    student_epochs: Annotated[Int, Field(ge=1, le=10_000)] = STUDENT_EPOCHS
    student_lr: Annotated[Number, Field(gt=0, lt=1)] = 2e-3
    transfer: Annotated[Int, Field(ge=0, le=10**6)] = 200
    transfer_weight: Annotated[Number, Field(gt=0, le=100)] = 0.5
    transfer_stream: Optional[Flag] = None
    teacher_tta: Annotated[str, BeforeValidator(_tta)] = "none"
    qat: Flag = False
    qat_epochs: Annotated[Int, Field(ge=1, le=10_000)] = 5
    qat_lr: Annotated[Number, Field(gt=0, lt=1)] = 2e-4
    qat_weight_bits: Annotated[Int, Field(ge=7, le=8)] = 7

    @model_validator(mode="before")
    @classmethod
    def _student_images_default(cls, data):
        if isinstance(data, dict) and data.get("student_images") is None:  # resolved here: recipe.json keeps the number
            data = {**data, "student_images": STUDENT_IMAGES if data.get("student") else 0}
        if isinstance(data, dict) and data.get("transfer_stream") is None:  # likewise; --transfer 0: none at all
            data = {**data, "transfer_stream": bool(data.get("student")) and data.get("transfer", 1) != 0}
        if isinstance(data, dict) and data.get("finetune_size") is None:  # likewise: the number, not "as --size"
            data = {**data, "finetune_size": data.get("size", 128)}
        return data

    @model_validator(mode="after")
    def _qat_needs_student(self):
        if self.qat and not self.student:
            raise ValueError("--qat needs --student (the model it quantises)")
        if self.student_images and not self.student:
            raise ValueError("--student-images needs --student (the arch it pretrains)")
        if self.transfer_stream and not self.student:
            raise ValueError("--transfer-stream needs --student (the model it feeds)")
        if not self.finetune and not self.pretrain_real_fraction:
            raise ValueError("joint pretraining (--no-finetune, the default) needs --pretrain-real-fraction above 0: "
                             "without real images in its batches a pretraining run has not learnt your pool's "
                             f"classes (for the sequential recipe: {SEQUENTIAL_FLAGS})")
        return self


def _differences(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class Recipe:
    """A recipe folder: its settings, its stages' run dirs, and its ``recipe.json``."""

    def __init__(self, out, config: RecipeConfig):
        self.out, self.cfg = Path(out), config
        if self.out.exists() and not self.out.is_dir():
            raise SemgenError(f"--out {self.out} exists and is not a directory")
        f = self.out / RECIPE_FILE
        self.state: dict = {"format": FORMAT, "format_version": 1, "config": config.to_dict(), "stages": {}}
        if f.is_file():
            try:
                old = json.loads(f.read_text())
            except ValueError:
                raise SemgenError(f"{f} is not valid JSON; move it away to start this recipe anew") from None
            if old.get("format") != FORMAT:
                raise SemgenError(f"{f} is not a semgen recipe file")
            try:  # settings added since that folder was made count at what it did then, or their defaults
                before = RecipeConfig(**{**LEGACY, **old.get("config", {})}).to_dict()
            except (SemgenError, TypeError):
                before = old.get("config", {})
            diff = _differences(before, self.state["config"])
            for flag, settings in ADDABLE_STAGES.items():
                if not before.get(flag):
                    diff = [k for k in diff if k not in settings]
            if diff:
                hint = next((f" ({what}: add {flags})" for former, what, flags in FORMER_DEFAULTS
                             if set(diff) <= set(former) and all(before.get(k) == v for k, v in former.items())), "")
                raise SemgenError(f"{self.out} holds a recipe with other settings ({', '.join(diff)} differ){hint}; "
                                  "choose another --out, or run it with the settings in its recipe.json")
            self.state["stages"] = old.get("stages", {})

    # the run dirs, named once here
    @property
    def pretrain_dir(self) -> Path:
        """The (first) pretraining run: the init of the fine-tunes, the teacher of the student's pretraining."""
        return self.pretrain_dirs()[0]

    def pretrain_dirs(self) -> list[Path]:
        """The pretraining runs: one, or without ``finetune`` one per seed (the recipe's models)."""
        if self.cfg.finetune:
            return [self.out / "pretrain"]
        return [self.out / f"pretrain_s{s}" for s in self.cfg.seeds]

    def pretrain_seed(self, run: Path) -> int:
        """The stream seed of a pretraining run of :meth:`pretrain_dirs`."""
        return self.cfg.seed if self.cfg.finetune else self.cfg.seeds[self.pretrain_dirs().index(run)]

    def members(self, baseline: bool = False) -> list[Path]:
        """The runs of the seeds: the fine-tunes (or the baseline's), else the joint pretraining runs."""
        if baseline or self.cfg.finetune:
            return [self.finetune_dir(s, baseline) for s in self.cfg.seeds]
        return self.pretrain_dirs()

    def finetune_dir(self, seed: int, baseline: bool = False) -> Path:
        return self.out / f"{'baseline' if baseline else 'finetune'}_s{seed}"

    def ensemble_dir(self, baseline: bool = False) -> Path:
        return self.out / ("baseline_ensemble" if baseline else "ensemble")

    @property
    def student_pretrain_dir(self) -> Path:
        return self.out / "student_pretrain"

    @property
    def transfer_dir(self) -> Path:
        return self.out / "transfer"

    @property
    def student_dir(self) -> Path:
        return self.out / "student"

    @property
    def edge_dir(self) -> Path:
        return self.out / "student_qat"

    def teacher(self) -> Path:
        """The model the student learns from: the ensemble, or the one run of the seeds."""
        return self.ensemble_dir() if len(self.cfg.seeds) > 1 else self.members()[0]

    def member_names(self) -> list[str]:
        """The summary's names of :meth:`members`."""
        kind = "finetune" if self.cfg.finetune else "joint pretraining"
        return [f"{kind} seed {s}" for s in self.cfg.seeds]

    def models(self) -> dict[str, Path]:
        """``{name: run dir}`` of every model the recipe makes, in the order of the summary."""
        c = self.cfg
        m = dict(zip(self.member_names(), self.members()))
        if len(c.seeds) > 1:
            m["ensemble"] = self.ensemble_dir()
        if c.baseline:
            m.update({f"baseline seed {s}": self.finetune_dir(s, True) for s in c.seeds})
            if len(c.seeds) > 1:
                m["baseline ensemble"] = self.ensemble_dir(True)
        if c.student:
            m["student"] = self.student_dir
        if c.qat:
            m["student, QAT"] = self.edge_dir
            m["student, INT8 file"] = self.edge_dir / "model.int8.onnx"  # what a device runs
        return m

    def synthetic_only(self) -> dict[str, Path]:
        """``{name: run dir}`` of the pretraining runs: what the procedural images teach without a real
        image (their fine labels summed per class, :func:`semgen.classifier.evaluate.evaluate_run`)."""
        m = {}
        if self.cfg.finetune:  # else the pretraining runs are the models
            m["pretraining alone (no real image)" if not self.cfg.pretrain_real_fraction
              else "pretraining alone (the real pool mixed in)"] = self.pretrain_dir
        if self.cfg.student_images:
            m["student pretraining alone (no real image)"] = self.student_pretrain_dir
        return m

    def task_classes(self) -> dict[str, list[str]]:
        """``{run dir: classes}`` of the models scored and used on the real pool's classes only: the
        pretraining runs that mixed it in (and their ensemble), whose stream has other classes too
        (e.g. scratch). The classes come from the training pool, never a test set."""
        if not self.cfg.pretrain_real_fraction:
            return {}
        from ..manifests.sources import read_source

        pool = sorted({it.label for it in read_source(self.cfg.real, what="--real")})
        runs = self.pretrain_dirs() + ([] if self.cfg.finetune or len(self.cfg.seeds) < 2 else [self.ensemble_dir()])
        return {str(run): pool for run in runs}

    def record(self, stage: str | None = None, **info) -> None:
        """Write ``recipe.json`` (atomically), with ``stage``'s outcome when given."""
        if stage is not None:
            self.state["stages"][stage] = info
        self.out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.out / RECIPE_FILE, (json.dumps(self.state, indent=1) + "\n").encode())


def _student_init(r: Recipe) -> str | None:
    """The student's first weights: of its pretraining stage when there is one, else of its distillation."""
    from ..classifier.init import bundled_backbones, takes_weights_from

    cfg = r.cfg
    if cfg.student_init is not None:
        return None if cfg.student_init == "scratch" else cfg.student_init
    if takes_weights_from(cfg.student, cfg.arch):  # weight selection (session 23)
        return str(r.pretrain_dir if cfg.student_images else r.members()[0])
    return "semgen" if cfg.student in bundled_backbones() else None


def run_recipe(out, config: RecipeConfig, *, test=None, tta: str = "none", workers: int = 1,
               threads: int | None = None, stop_after: int | None = None, device: str = "auto",
               precision: str = "auto", progress: bool = True, log=None) -> dict:
    """Run (or continue) the recipe into folder ``out``.

    Parameters
    ----------
    out : path
        The recipe folder (created; resumed when it holds this recipe).
    config : RecipeConfig
    test : path or list of path, optional
        Real test sets to evaluate every model on (never read by any other stage).
    tta : {"none", "flips", "d4"}
        Test-time augmentation of the evaluation.
    workers, threads : int
        Generator processes of the pretraining and transfer stages; torch threads.
    stop_after : int, optional
        Stop the pretraining stage at this step (run again to continue, as ``semgen pretrain``).
    device, precision : str
        :mod:`semgen.devices`, for the pretraining and training stages.
    log : callable, optional
        Where stage lines go (default: stderr when ``progress``).

    Returns
    -------
    dict
        ``done`` (bool), ``stages`` (each stage's outcome, as in ``recipe.json``), ``models``
        (``{name: run dir}``) and, with ``test``, ``figures`` (``{test: {model: metrics}}``).
    """
    import sys

    from ..classifier.distill import DistillConfig
    from ..classifier.ensemble import make_ensemble
    from ..classifier.export import export_run
    from ..classifier.init import resolve_init
    from ..classifier.qat import QATConfig
    from ..classifier.train import train_classifier
    from ..generators.procedural.generation import generate
    from ..generators.procedural.registry import list_generators
    from ..pretrain.train import PretrainConfig, pretrain

    cfg = config
    tests = [test] if isinstance(test, (str, Path)) else list(test or [])
    for t in tests:
        if not Path(t).is_dir():
            raise SemgenError(f"--test {t} is not a folder")
    if not Path(cfg.real).is_dir():
        raise SemgenError(f"--real {cfg.real} is not a folder")
    say = log or ((lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None))
    # A bad setting of a later stage fails now, not after an hour of pretraining.
    base_init = None if cfg.init == "scratch" else cfg.init  # what the baseline and the pretraining start from
    mixed = dict(data=[cfg.real], data_fraction=cfg.pretrain_real_fraction) if cfg.pretrain_real_fraction else {}
    r = Recipe(out, cfg)  # refuses a folder of other settings; writes nothing yet
    pcfgs = [PretrainConfig.make(arch=cfg.arch, init=base_init, images=cfg.images, lr=cfg.pretrain_lr,
                                 size=cfg.size, seed=r.pretrain_seed(run), **mixed) for run in r.pretrain_dirs()]
    resolve_init(base_init, cfg.arch)
    sinit = _student_init(r) if cfg.student else None
    if cfg.student and sinit not in (str(r.members()[0]), str(r.pretrain_dir)):  # made later
        resolve_init(sinit, cfg.student)
    r.record()  # the settings first: a later run with other settings is refused
    n_stages = (1 + (cfg.finetune or cfg.baseline) + (len(cfg.seeds) > 1) + bool(cfg.student_images)
                + (1 if cfg.transfer_stream else 2) * bool(cfg.student) + cfg.qat + bool(tests))
    numbers = iter(range(1, n_stages + 1))

    def stage(text: str) -> None:
        say(f"recipe {next(numbers)}/{n_stages}: {text}")

    train = dict(size=cfg.size, lr=cfg.lr, epochs=cfg.epochs, val_fraction=0.0, num_threads=threads,
                 progress=progress, device=device, precision=precision)

    runs = r.pretrain_dirs()
    stage(f"pretrain {cfg.arch} from {cfg.init} on {cfg.images:,} procedural samples"
          + (f" ({cfg.pretrain_real_fraction:.0%} of each batch from {cfg.real})" if mixed else "")
          + (f", seeds {', '.join(map(str, cfg.seeds))}" if len(runs) > 1 else "")
          + f" -> {', '.join(map(str, runs))}")
    done: dict = {}
    for run, pcfg in zip(runs, pcfgs):  # one after the other: a stopped run is continued before the next starts
        res = pretrain(run, pcfg, workers=workers, threads=threads, stop_after=stop_after,
                       progress=progress, device=device, precision=precision)
        done[str(run)] = dict(step=res["step"], steps=res["steps"], done=bool(res["done"]))
        if cfg.finetune:
            r.record("pretrain", run=str(run), **done[str(run)])
        else:
            r.record("pretrain", runs=done, done=len(done) == len(runs) and all(d["done"] for d in done.values()))
        if not res["done"]:
            say(f"recipe: pretraining {run} stopped at step {res['step']} of {res['steps']}; run the same command "
                "again to continue")
            return {"done": False, "stages": r.state["stages"], "models": {}}

    kinds = ([False] if cfg.finetune else []) + ([True] if cfg.baseline else [])  # fine-tunes, the baseline's
    if kinds:
        what = [f"from {r.pretrain_dir}"] if cfg.finetune else []
        what += [f"from {cfg.init} alone (baseline)"] if cfg.baseline else []
        stage(f"fine-tune on {cfg.real} at {cfg.finetune_size} px, seeds {', '.join(map(str, cfg.seeds))}, "
              + " and ".join(what))
    for baseline in kinds:
        init = base_init if baseline else str(r.pretrain_dir)
        for s in cfg.seeds:
            train_classifier(cfg.real, out=r.finetune_dir(s, baseline), arch=cfg.arch, init=init, seed=s,
                             head_only_epochs=cfg.head_only_epochs if init else 0,
                             **{**train, "size": cfg.finetune_size})
        r.record("baseline" if baseline else "finetune", runs=[str(r.finetune_dir(s, baseline)) for s in cfg.seeds])

    if len(cfg.seeds) > 1:
        stage(f"the {len(cfg.seeds)} seeds as one model -> {r.ensemble_dir()}")
        for baseline in ((False, True) if cfg.baseline else (False,)):
            make_ensemble(r.members(baseline), r.ensemble_dir(baseline), overwrite=True)
        r.record("ensemble", run=str(r.ensemble_dir()))

    if cfg.student_images:
        # New scenes (seed + 1): the pretraining's teacher labels images it was not trained on. The
        # transfer images (seed + 1 too) are among the first of them, as in the measured run.
        spcfg = PretrainConfig.make(arch=cfg.student, init=sinit, images=cfg.student_images,
                                    lr=cfg.student_pretrain_lr, size=cfg.size, seed=cfg.seed + 1,
                                    teachers=[str(r.pretrain_dir)])
        stage(f"pretrain {cfg.student} (from {sinit or 'scratch'}) on {cfg.student_images:,} new procedural "
              f"samples, distilled from {r.pretrain_dir} -> {r.student_pretrain_dir}")
        res = pretrain(r.student_pretrain_dir, spcfg, workers=workers, threads=threads, progress=progress,
                       device=device, precision=precision)
        r.record("student_pretrain", run=str(r.student_pretrain_dir), step=res["step"], steps=res["steps"],
                 done=bool(res["done"]))
        if not res["done"]:
            return {"done": False, "stages": r.state["stages"], "models": {}}
        sinit = str(r.student_pretrain_dir)

    if cfg.student:
        if cfg.transfer_stream:  # made on the fly by the student's own run: the same seed + 1 scenes
            transfer = [f"stream:{cfg.seed + 1}={cfg.transfer_weight}"]
            r.record("transfer", stream=transfer[0])
        else:
            gens = list_generators()
            stage(f"{cfg.transfer} unlabelled images per generator ({len(gens)}) -> {r.transfer_dir}")
            for g in gens if cfg.transfer else ():  # --transfer 0: the student learns on the real pool alone
                generate(g, cfg.transfer, r.transfer_dir, seed=cfg.seed + 1, size=cfg.size, workers=max(1, workers),
                         progress=progress)
            r.record("transfer", dir=str(r.transfer_dir) if cfg.transfer else None, per_generator=cfg.transfer)
            transfer = [f"{r.transfer_dir}={cfg.transfer_weight}"] if cfg.transfer else []
        stage(f"distil {cfg.student} (from {sinit or 'scratch'}) from {r.teacher()} -> {r.student_dir}")
        distill = DistillConfig(teachers=[str(r.teacher())], transfer=transfer, teacher_tta=cfg.teacher_tta)
        train_classifier(cfg.real, out=r.student_dir, arch=cfg.student, init=sinit, seed=cfg.seeds[0],
                         distill=distill, **{**train, "epochs": cfg.student_epochs, "lr": cfg.student_lr})
        r.record("student", run=str(r.student_dir), teacher=str(r.teacher()), init=sinit)

    if cfg.qat:
        stage(f"quantisation-aware fine-tuning of the student ({cfg.qat_epochs} epochs, {cfg.qat_weight_bits}-bit "
              f"weights), then its INT8 export -> {r.edge_dir}")
        train_classifier(cfg.real, out=r.edge_dir, init=str(r.student_dir), seed=cfg.seeds[0], distill=distill,
                         qat=QATConfig(weight_bits=cfg.qat_weight_bits),
                         **{**train, "epochs": cfg.qat_epochs, "lr": cfg.qat_lr})
        if not (r.edge_dir / "export.json").is_file():  # an export is only written whole (atomic files)
            export_run(r.edge_dir, calib=cfg.real, data=tests or None, threads=1, progress=progress)
        ex = json.loads((r.edge_dir / "export.json").read_text())
        r.record("edge", run=str(r.edge_dir), int8_bytes=ex.get("int8", {}).get("bytes"))

    result = {"done": True, "stages": r.state["stages"], "models": {n: str(v) for n, v in r.models().items()}}
    if tests:
        stage(f"evaluate every model on {', '.join(map(str, tests))}")
        result["figures"] = evaluate_recipe(r, tests, tta=tta, threads=threads)
        plot_summary(result["figures"], r.out / SUMMARY_PLOT, tta)
        write_bytes_atomic(r.out / "summary.md", summary_markdown(r, result["figures"], tta).encode())
        r.record("evaluate", tests=[str(Path(t).resolve()) for t in tests], tta=tta, summary=str(r.out / "summary.md"))
        result["stages"] = r.state["stages"]
    return result


def _model_fingerprint(run: Path) -> str:
    """sha256 over what decides a model's predictions: an ONNX file, else the run's weights and
    temperature, or an ensemble's ``ensemble.json`` (its members' sha256 and temperatures)."""
    import hashlib

    from ..imageio import sha256_file

    files = [run] if run.suffix == ".onnx" else [run / n for n in ("model.safetensors", "calibration.json",
                                                                 "ensemble.json") if (run / n).is_file()]
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name} {sha256_file(f)}\n".encode())
    return h.hexdigest()


def evaluate_recipe(r: Recipe, tests, *, tta: str = "none", threads: int | None = None) -> dict:
    """``{test: {model: figures}}``: macro-F1 with its 95 % CI and accuracy of every model, and
    paired differences (semgen's fine-tunes minus the baseline's, seed by seed, and the two ensembles).

    A model is evaluated again only when its weights, the test images or ``tta`` changed since the
    last call (``evaluations.json`` in the recipe folder keeps the figures and predictions), so
    running a finished recipe again costs seconds, not an evaluation of every model.
    """
    from ..ablation.stats import paired_difference
    from ..ablation.subsets import load_pool
    from ..classifier.evaluate import evaluate_run
    from ..classifier.tta import metrics_name

    cache_file = r.out / EVALUATIONS_FILE
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    kept: dict = {}
    figures: dict = {}
    models = {**r.models(), **r.synthetic_only()}
    prints = {name: _model_fingerprint(Path(run)) for name, run in models.items()}  # once, not per test set
    # a pretraining run that mixed the real pool in is scored as a model of the pool's classes (the
    # stream's other classes, e.g. scratch, dropped), chosen from the training pool, not the test set
    task = r.task_classes()
    for t in tests:
        rows, preds = {}, {}
        test_key = load_pool(t, what="--test").key
        for name, run in models.items():
            key = f"{name}|{prints[name]}|{test_key}|{tta}"
            e = cache.get(key)
            if e is None:
                m = evaluate_run(run, t, num_threads=threads, tta=tta, out_name=metrics_name(tta),
                                 classes=task.get(str(run)))
                e = {"macro_f1": m["macro_f1"], "macro_f1_ci": m["ci"]["macro_f1"], "accuracy": m["accuracy"],
                     "y_true": [m["classes"][i] for i in m["y_true"]], "y_pred": [m["classes"][i] for i in m["y_pred"]]}
            kept[key] = e
            rows[name] = {"run": str(run), "macro_f1": e["macro_f1"], "macro_f1_ci": e["macro_f1_ci"],
                          "accuracy": e["accuracy"]}
            preds[name] = (e["y_true"], e["y_pred"])
        if r.cfg.baseline:
            ours = r.member_names()
            y = preds[ours[0]][0]
            pairs = [(f"{ours[0].rsplit(' seed', 1)[0]} seeds", [f"baseline seed {s}" for s in r.cfg.seeds], ours)]
            if len(r.cfg.seeds) > 1:
                pairs.append(("ensemble", ["baseline ensemble"], ["ensemble"]))
            for label, a, b in pairs:
                d = paired_difference(y, [preds[x][1] for x in a], [preds[x][1] for x in b])["macro_f1"]
                rows[f"{label} minus baseline"] = {"difference": d["mean"], "ci": [d["lo"], d["hi"]]}
        figures[str(t)] = rows
    # the current models' figures on other test sets or with another TTA stay too (switching back is free)
    current = {f"{name}|{fp}" for name, fp in prints.items()}
    kept.update({k: v for k, v in cache.items() if k.rsplit("|", 2)[0] in current and k not in kept})
    write_bytes_atomic(cache_file, (json.dumps(kept) + "\n").encode())
    return figures


def _kind(name: str) -> str:
    """The colour group of a summary row: joint pretraining runs are the recipe's own models.

    >>> _kind("joint pretraining seed 0"), _kind("student pretraining alone (no real image)"), _kind("pretraining alone (no real image)")
    ('semgen', 'student', 'pretraining alone')
    """
    return next((k for k in ("baseline", "student", "pretraining alone") if k in name), "semgen")


def plot_summary(figures: dict, path: Path, tta: str = "none") -> Path:
    """Macro-F1 [95 % CI] of every model as horizontal bars, one panel per test set, coloured by kind
    (semgen's fine-tunes, the baseline, the student, the pretraining alone); written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colour = {"semgen": "#1f77b4", "baseline": "#7f7f7f", "student": "#2ca02c", "pretraining alone": "#ff7f0e"}
    tests = list(figures)
    n = max(len([k for k, f in figures[t].items() if "difference" not in f]) for t in tests)
    fig, axes = plt.subplots(1, len(tests), figsize=(6.5 * len(tests), 0.42 * n + 1.3), squeeze=False,
                             constrained_layout=True)
    for ax, t in zip(axes[0], tests):
        rows = [(k, f) for k, f in figures[t].items() if "difference" not in f][::-1]  # first model on top
        ys = range(len(rows))
        m = [f["macro_f1"] for _, f in rows]
        err = [[f["macro_f1"] - f["macro_f1_ci"][0] for _, f in rows], [f["macro_f1_ci"][1] - f["macro_f1"] for _, f in rows]]
        ax.barh(ys, m, xerr=err, color=[colour[_kind(k)] for k, _ in rows], capsize=2, height=0.7)
        for y, v in zip(ys, m):
            ax.text(0.01, y, f"{v:.3f}", va="center", ha="left", color="white", fontsize=8)
        ax.set_yticks(list(ys), [k for k, _ in rows], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("macro-F1 [95% CI]")
        ax.set_title(f"{Path(t).name}" + (f", TTA {tta}" if tta != "none" else ""), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def summary_markdown(r: Recipe, figures: dict, tta: str) -> str:
    """The recipe's figures as Markdown: one table per test set."""
    c = r.cfg
    seeds = ", ".join(map(str, c.seeds))
    L = ["# semgen recipe", "",
         (f"{c.arch} from {c.init}, then {c.images:,} streamed procedural samples at {c.size} px, then the real "
          f"pool `{c.real}` at {c.finetune_size} px ({c.epochs} epochs, seeds {seeds})" if c.finetune else
          f"{c.arch} from {c.init}, then {c.images:,} streamed samples at {c.size} px, "
          f"{c.pretrain_real_fraction:.0%} of each batch from the real pool `{c.real}` (seeds {seeds}; no fine-tuning)")
         + (f"; {c.student} distilled from {r.teacher().name}" if c.student else "")
         + (f", pretrained first on {c.student_images:,} samples distilled from the pretraining"
            if c.student_images else "") + "."
         + (f" Test-time augmentation: `{tta}`." if tta != "none" else ""), "",
         f"![macro-F1 of every model]({SUMMARY_PLOT})", ""]
    for t, rows in figures.items():
        L += [f"## `{t}`", "", "| model | macro-F1 [95% CI] | accuracy | run |", "|---|---|---|---|"]
        for name, f in rows.items():
            if "difference" in f:
                continue
            lo, hi = f["macro_f1_ci"]
            L.append(f"| {name} | {f['macro_f1']:.3f} [{lo:.3f}, {hi:.3f}] | {f['accuracy']:.3f} | `{f['run']}` |")
        teacher = rows.get(next(n for n, run in r.models().items() if run == r.teacher()))
        for name in ("student", "student, QAT", "student, INT8 file"):
            if name in rows and teacher and teacher["macro_f1"] > 0:
                L.append(f"\n{name}: {rows[name]['macro_f1'] / teacher['macro_f1']:.0%} of its teacher's macro-F1.")
        diffs = [(n, f) for n, f in rows.items() if "difference" in f]
        if diffs:
            L += ["", "Paired differences (bootstrap over seeds and images):", ""]
            L += [f"- {n}: {f['difference']:+.3f} [{f['ci'][0]:+.3f}, {f['ci'][1]:+.3f}]" for n, f in diffs]
        L.append("")
    ex = r.edge_dir / "export.json"
    if c.qat and ex.is_file():
        e = json.loads(ex.read_text())
        i8 = next((f for f in e.get("files", []) if f.get("file") == "model.int8.onnx"), {})
        acts = e.get("quantization", {}).get("activations", "?")
        L += [f"Edge model `{r.edge_dir / 'model.int8.onnx'}` (the table's INT8 file): {i8.get('bytes', 0) / 1e6:.3f} "
              f"MB, activations {acts}, {i8.get('latency_ms_1_thread', float('nan')):.2f} ms per image on 1 thread, "
              f"top-1 agreement with its float graph {i8.get('agreement_with_fp32', float('nan')):.3f} "
              f"(`export.json`; `model_int8.h` for firmware).", ""]
    task = r.task_classes().get(str(r.teacher()))  # the best model: the ensemble, or the one run of the seeds
    L += ["Use:", "", "```bash", f"semgen predict {r.teacher()} IMAGE ..." + (f" --classes {','.join(task)}" if task else ""),
          *([f"semgen export {r.student_dir} --calib {c.real}"] if c.student and not c.qat else []),
          *([f"semgen predict {r.edge_dir / 'model.int8.onnx'} IMAGE ..."] if c.qat else []), "```", ""]
    return "\n".join(L)


def is_recipe(folder) -> bool:
    """Whether ``folder`` is a recipe folder (it holds ``recipe.json``)."""
    return (Path(folder) / RECIPE_FILE).is_file()


def describe_recipe(folder) -> list[str]:
    """Lines for ``semgen info``: a recipe folder's settings, what each stage has done, what is left.

    Examples
    --------
    >>> describe_recipe("no/such/folder")
    Traceback (most recent call last):
    ...
    semgen.errors.SemgenError: no/such/folder is not a recipe folder (no recipe.json)
    """
    f = Path(folder) / RECIPE_FILE
    if not f.is_file():
        raise SemgenError(f"{folder} is not a recipe folder (no {RECIPE_FILE})")
    try:
        state = json.loads(f.read_text())
        cfg = RecipeConfig(**{**LEGACY, **state["config"]})
    except (ValueError, KeyError, TypeError, SemgenError) as e:
        raise SemgenError(f"{f} is not a readable recipe file ({e})") from None
    r = Recipe(folder, cfg)  # its own settings: the folder's names and stages
    st = r.state["stages"]
    sizes = f"{cfg.size} px" + (f", fine-tuned at {cfg.finetune_size} px" if cfg.finetune_size != cfg.size else "")
    L = [f"{folder}: semgen recipe, {cfg.arch} from {cfg.init}, {cfg.images:,} procedural samples ({sizes}), "
         f"real pool {cfg.real}, seeds {', '.join(map(str, cfg.seeds))}" + (f", student {cfg.student}" if cfg.student else "")]
    for stage in ("pretrain", "student_pretrain") if cfg.student_images else ("pretrain",):
        p = st.get(stage) or {}
        for run, q in (p.get("runs") or {stage: p}).items():  # the joint runs of each seed, else the one
            L.append(f"  {stage if run == stage else run}: {'done' if q.get('done') else 'not done'}"
                     + (f" (step {q['step']} of {q['steps']})" if "step" in q else ""))
    for name, run in r.models().items():
        if run in r.pretrain_dirs():  # a joint pretraining run: listed above with its step
            continue
        done = run.is_file() if run.suffix == ".onnx" else ((run / "summary.json").is_file()
                                                            or (run / "ensemble.json").is_file())
        L.append(f"  {name}: {'done' if done else 'not done'} ({run})")
    ev = st.get("evaluate")
    L.append(f"  evaluate: {'see ' + ev['summary'] if ev else 'not done'}")
    return L
