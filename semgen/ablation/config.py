"""The ablation configuration: a YAML file, a preset, and command-line overrides, checked.

```yaml
real: data/real/train               # the real training pool: dataset dir or ImageFolder
test: {dev_test: data/real/dev_test}  # one or more real test sets (a mapping, a list, or one path)
synthetic:                          # named synthetic sources, each with images per class
  procedural: {path: data/proc, amount: 200}
shots: [5, 10, 20, all]             # real images per class
seeds: 3                            # 3 -> [0, 1, 2], or an explicit list
arms: [real, "synthetic:procedural", "mix:procedural:0.5", "pretrain:procedural"]
inits: [scratch, imagenet]          # where every arm's first model starts (default [scratch])
classifier: {arch: mobilenetv3_small_100, size: 128, epochs: 30, batch_size: 64, lr: 0.002}
finetune: {epochs: 30, lr: 0.001, head_only_epochs: 2}   # the pretrain arm's fine-tune stage
bootstrap: {n: 2000, seed: 0}
tta: none                           # test-time augmentation of every evaluation: none | flips | d4
compare: [[scratch, imagenet]]      # report B minus A for each pair [A, B] of inits, paired (default none)
```
Precedence, lowest first: built-in defaults < the YAML < ``--preset`` < explicit flags.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Optional

import yaml
from pydantic import BeforeValidator, model_validator

from ..classifier.registry import IMAGENET_DEFAULT_ARCH, get_arch, imagenet_archs, imagenet_source
from ..classifier.tta import TTA_MODES
from ..configs import Config, Int, Number, PositiveInt
from ..errors import SemgenError

ARM_KINDS = ("real", "synthetic", "mix", "pretrain")

#: Classifier keywords the runner passes through to ``train_classifier``.
CLASSIFIER_KEYS = ("arch", "size", "epochs", "batch_size", "lr", "patience", "mixup", "label_smoothing",
                   "head_only_epochs", "num_threads", "min_epoch_images", "weight_decay", "val_fraction",
                   "warmup_epochs", "drop_rate")

DEFAULTS: dict = {
    "real": None,
    "test": {},
    "synthetic": {},
    "shots": [5, 10, 20, "all"],
    "seeds": 3,
    "arms": None,  # default: real + for each source: synthetic, mix 0.5, pretrain
    "inits": ["scratch"],  # the init axis; the default keeps the cells (and keys) of configs without it
    "compare": [],  # pairs [A, B] of init labels: B minus A in the report
    "classifier": {"arch": "mobilenetv3_small_100", "size": 128, "epochs": 30, "batch_size": 64, "lr": 2e-3},
    "finetune": {"lr": 1e-3, "head_only_epochs": 2},
    "val": None,
    "bootstrap": {"n": 2000, "seed": 0},
    "cache": None,
    "tta": "none",  # evaluation only: never in a cell key, so cached cells are re-evaluated, not retrained
}

#: Presets change the matrix and the training budget, never the data.
#: quick: 21 cells of >= 1024 training images at 64 px; measured 14.3 CPU-min with the 240-image real
#: pool and one source (about 7-8 min on two free cores; docs/ablation.md); full: the published matrix.
PRESETS: dict[str, dict] = {
    "quick": {
        "shots": [5, "all"],
        "seeds": 3,
        "synthetic_amount_max": 40,
        "classifier": {"size": 64, "epochs": 4, "batch_size": 32, "min_epoch_images": 256},
        "finetune": {"epochs": 4, "head_only_epochs": 1},
        "bootstrap": {"n": 1000},
        "max_sources": 1,
    },
    "full": {
        "shots": [5, 10, 20, "all"],
        "seeds": 3,
        "classifier": {"size": 128, "epochs": 30, "batch_size": 64},
        "finetune": {"epochs": 30, "head_only_epochs": 2},
        "bootstrap": {"n": 2000},
    },
}


class Source(Config):
    """A named synthetic source: its path and images per class (None = all)."""

    flags = {"amount": "synthetic amount"}

    name: str
    path: str
    amount: Optional[PositiveInt] = None


class Arm(Config):
    """One arm of the matrix: ``real``, ``synthetic[SRC]``, ``mix[SRC,RATIO]`` or ``pretrain[SRC]``."""

    flags = {"kind": "arm type"}

    kind: str
    source: Optional[str] = None
    ratio: Optional[Number] = None  # mix: fraction of training samples drawn from the synthetic source

    @model_validator(mode="after")
    def _shape(self):
        if self.kind not in ARM_KINDS:
            raise ValueError(f"unknown arm type {self.kind!r}; valid: {', '.join(ARM_KINDS)}")
        if self.kind == "real":
            if self.source is not None or self.ratio is not None:
                raise ValueError("the 'real' arm takes no synthetic source")
            return self
        if not self.source:
            raise ValueError(f"arm {self.kind!r} needs a synthetic source ({self.kind}:NAME)")
        if self.kind == "mix":
            if self.ratio is None:
                raise ValueError(f"arm mix:{self.source} needs a ratio (mix:{self.source}:0.5 = half the samples "
                                 "synthetic)")
            if not 0.0 < self.ratio < 1.0:
                raise ValueError("mix ratio must be strictly between 0 and 1 (fraction of synthetic samples), "
                                 f"got {self.ratio}")
        elif self.ratio is not None:
            raise ValueError(f"arm {self.kind}:{self.source} takes no ratio")
        return self

    @property
    def name(self) -> str:
        if self.kind == "real":
            return "real"
        if self.kind == "mix":
            return f"mix[{self.source},{self.ratio:g}]"
        return f"{self.kind}[{self.source}]"

    @property
    def uses_real(self) -> bool:
        return self.kind != "synthetic"


#: The named inits of :mod:`semgen.classifier.init` (anything else is a checkpoint path).
NAMED_INITS = ("scratch", "imagenet", "semgen")


class Init(Config):
    """One point of the init axis: where the first model of every arm starts.

    Attributes
    ----------
    name : str
        The label in the report (``scratch``, ``imagenet``, ``imagenet@ARCH``, a path as written,
        or the mapping's ``name``).
    init : str
        What ``train_classifier(init=...)`` gets: a named init or an absolute path.
    arch : str or None
        The architecture of this init's cells; None keeps ``classifier.arch``.
    """

    name: str
    init: str = "scratch"
    arch: Optional[str] = None

    @property
    def scratch(self) -> bool:
        return self.init == "scratch"


SCRATCH = Init("scratch")


def _classifier_keys(v):
    if not isinstance(v, dict):
        raise ValueError("must be a mapping")
    bad = sorted(set(v) - set(CLASSIFIER_KEYS))
    if bad:
        raise ValueError(f"has unknown option(s) {', '.join(bad)}; valid: {', '.join(CLASSIFIER_KEYS)}")
    return v


def _bootstrap(v):
    if not isinstance(v, dict) or set(v) != {"n", "seed"}:
        raise ValueError("must be {n: N, seed: S}")
    if v["n"] < 100:
        raise ValueError("n must be at least 100 for a 95 % interval")
    return v


def _tta(v):
    v = "none" if v is None else v
    if not isinstance(v, str) or v.lower() not in TTA_MODES:
        raise ValueError(f"must be one of {', '.join(TTA_MODES)}")
    return v.lower()


#: ``classifier:`` / ``finetune:``: ``train_classifier`` keywords, their values as given (they
#: enter the cell keys, so an int stays an int).
_Hyper = Annotated[dict, BeforeValidator(_classifier_keys)]


class AblationConfig(Config):
    """The checked matrix of ``semgen ablate`` (a :class:`~semgen.configs.Config`), made by
    :func:`build_config` from defaults, a YAML file, a preset and flags.

    :meth:`to_dict` is what the run records in ``config.json``; the cell and cache keys come from
    its values (``classifier``, ``finetune``, seeds, sources), kept as given.

    Examples
    --------
    >>> cfg = build_config({"real": "/d/real", "test": "/d/test", "synthetic": {"p": "/d/p"}})
    >>> [a.name for a in cfg.arms], cfg.seeds
    (['real', 'synthetic[p]', 'mix[p,0.5]', 'pretrain[p]'], [0, 1, 2])
    >>> AblationConfig.from_json(cfg.to_json()) == cfg
    True
    """

    flags = {"tests": "--test", "sources": "--synthetic", "classifier": "classifier", "finetune": "finetune",
             "bootstrap": "bootstrap", "inits": "inits", "preset": "--preset"}

    real: str
    tests: dict[str, str]
    sources: dict[str, Source]
    shots: list[Optional[PositiveInt]]  # None = all
    seeds: list[Int]
    arms: list[Arm]
    classifier: _Hyper
    finetune: _Hyper
    val: Optional[str] = None
    bootstrap: Annotated[dict, BeforeValidator(_bootstrap)] = {"n": 2000, "seed": 0}
    cache: Optional[str] = None
    preset: Optional[str] = None
    inits: list[Init] = [SCRATCH]
    #: test-time augmentation of every evaluation (:mod:`semgen.classifier.tta`); last, so that
    #: positional construction and the recorded field order stay as they were
    tta: Annotated[str, BeforeValidator(_tta)] = "none"
    #: pairs (A, B) of init labels whose difference B - A the report gives, paired over seeds and
    #: images (the real subset of a shots level and seed is the same for every init)
    compare: list[tuple[str, str]] = []

    @model_validator(mode="after")
    def _matrix(self):
        if not self.tests:
            raise ValueError("no real test set: set 'test:' in the config or pass --test DIR")
        if not self.real and not any(a.kind == "synthetic" for a in self.arms):
            raise ValueError("no real training pool: set 'real:' in the config or pass --real DIR")
        if not self.shots:
            raise ValueError("shots must list at least one count (or 'all')")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        if len(self.seeds) < 3:
            raise ValueError(f"at least 3 seeds are needed for a confidence interval over seeds, got {len(self.seeds)}")
        if not self.arms:
            raise ValueError("no arms to run")
        for arm in self.arms:
            if arm.source is not None and arm.source not in self.sources:
                raise ValueError(f"arm {arm.name} uses synthetic source {arm.source!r}, which is not defined; "
                                 f"defined: {', '.join(self.sources) or 'none'}")
            if arm.uses_real and not self.real:
                raise ValueError(f"arm {arm.name} needs the real pool: set 'real:' or --real")
        names = [i.name for i in self.inits]
        if not names:
            raise ValueError("inits must list at least one init (scratch)")
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"two inits are labelled {dup!r}; give them names ({{init: ..., name: ...}})")
        for a, b in self.compare:
            for x in (a, b):
                if x not in names:
                    raise ValueError(f"compare: {x!r} is not an init of this config; inits: {', '.join(names)}")
            if a == b:
                raise ValueError(f"compare: [{a}, {b}] compares an init with itself")
        return self

    def to_dict(self) -> dict:
        """What ``config.json`` records (the config as written: ``all`` for every image, arm names)."""
        return {
            "real": self.real, "test": dict(self.tests),
            "synthetic": {n: {"path": s.path, "amount": s.amount if s.amount is not None else "all"}
                          for n, s in self.sources.items()},
            "shots": [k if k is not None else "all" for k in self.shots], "seeds": list(self.seeds),
            "arms": [a.name for a in self.arms],
            "inits": [{"name": i.name, "init": i.init, "arch": i.arch} for i in self.inits],
            "classifier": dict(self.classifier),
            "finetune": dict(self.finetune), "val": self.val, "bootstrap": dict(self.bootstrap),
            "preset": self.preset,
            # only where it is set: the record of a run without TTA keeps its bytes
            **({"tta": self.tta} if self.tta != "none" else {}),
            **({"compare": [list(p) for p in self.compare]} if self.compare else {}),
        }


def parse_arm(spec) -> Arm:
    """``real`` | ``synthetic:SRC`` | ``mix:SRC:RATIO`` | ``pretrain:SRC``, or a mapping with the same fields."""
    if isinstance(spec, dict):
        kind, source, ratio = spec.get("type", spec.get("kind")), spec.get("source"), spec.get("ratio")
    elif isinstance(spec, str):
        parts = spec.split(":")
        kind = parts[0]
        source = parts[1] if len(parts) > 1 else None
        ratio = parts[2] if len(parts) > 2 else None
        if len(parts) > 3:
            raise SemgenError(f"arm {spec!r}: expected real | synthetic:SRC | mix:SRC:RATIO | pretrain:SRC")
    else:
        raise SemgenError(f"arm {spec!r} must be a string or a mapping")
    kind = str(kind).strip().lower() if kind else kind
    kind = {"real-only": "real", "real_only": "real", "syn": "synthetic", "synthetic-only": "synthetic",
            "mixed": "mix", "finetune": "pretrain", "pretrain-finetune": "pretrain"}.get(kind, kind)
    if ratio is not None:
        try:
            ratio = float(ratio)
        except (TypeError, ValueError):
            raise SemgenError(f"{kind} ratio {ratio!r} is not a number") from None
    return Arm(str(kind), None if source is None or source == "" else str(source), ratio)


def parse_init(spec, classifier_arch: str | None = None) -> Init:
    """``scratch`` | ``imagenet`` | ``semgen`` | a path, optionally ``@ARCH``; or a mapping
    ``{init: ..., arch: ..., name: ...}``.

    ``imagenet`` without an arch uses ``classifier_arch`` if that has ImageNet weights, else
    ``efficientnet_lite0``; the others keep the classifier's arch. Paths are taken as given (the
    YAML loader makes them relative to the config file).
    """
    name = None
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"init", "arch", "name"})
        if unknown:
            raise SemgenError(f"init {spec!r}: unknown key(s) {', '.join(unknown)}; valid: init, arch, name")
        init, arch, name = spec.get("init"), spec.get("arch"), spec.get("name")
    elif isinstance(spec, str):
        init, _, arch = spec.partition("@")
        arch = arch or None
    else:
        raise SemgenError(f"init {spec!r} must be a string or a mapping")
    init = str(init).strip() if init is not None else ""
    if not init:
        raise SemgenError(f"init {spec!r}: empty; use one of {', '.join(NAMED_INITS)} or a checkpoint path")
    if arch is not None:
        arch = str(arch)
        get_arch(arch)
    label = name or (init if arch is None else f"{init}@{arch}")
    if init == "imagenet":
        if arch is None:
            arch = classifier_arch if classifier_arch and imagenet_source(classifier_arch) else IMAGENET_DEFAULT_ARCH
        if not imagenet_source(arch):
            raise SemgenError(f"init imagenet: no ImageNet weights for '{arch}'; available for: "
                              f"{', '.join(imagenet_archs())}")
    return Init(str(label), init, arch)


def _amount(v, what: str) -> int | None:
    if v is None or (isinstance(v, str) and v.strip().lower() == "all"):
        return None
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise SemgenError(f"{what} must be a positive integer or 'all', got {v!r}") from None
    if n < 1 or str(n) != str(v).strip():
        raise SemgenError(f"{what} must be a positive integer or 'all', got {v!r}")
    return n


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_yaml(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SemgenError(f"config {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SemgenError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SemgenError(f"config {path} must be a mapping at the top level")
    base = p.resolve().parent
    # Relative data paths in the file are relative to the file, as a user reading it expects.
    for key in ("real", "val", "cache"):
        if isinstance(data.get(key), str):
            data[key] = str((base / data[key]).resolve()) if not Path(data[key]).is_absolute() else data[key]
    if isinstance(data.get("test"), (str, list, dict)):
        data["test"] = _rebase_tests(data["test"], base)
    if isinstance(data.get("inits"), list):  # a checkpoint path is relative to the file; its label stays as written
        data["inits"] = [_rebase_init(i, base) for i in data["inits"]]
    for name, src in (data.get("synthetic") or {}).items():
        if isinstance(src, str):
            src = {"path": src}
            data["synthetic"][name] = src
        if isinstance(src, dict) and isinstance(src.get("path"), str) and not Path(src["path"]).is_absolute():
            src["path"] = str((base / src["path"]).resolve())
    return data


def _rebase_init(spec, base: Path):
    if isinstance(spec, str):
        init, _, arch = spec.partition("@")
        spec = {"init": init, **({"arch": arch} if arch else {})}
        name = None
    elif isinstance(spec, dict):
        name = spec.get("name")
    else:
        return spec
    init = str(spec.get("init") or "")
    if init and init not in NAMED_INITS and not Path(init).is_absolute():
        label = name or (init if not spec.get("arch") else f"{init}@{spec['arch']}")
        return {**spec, "init": str((base / init).resolve()), "name": label}
    return spec


def _rebase_tests(t, base: Path):
    def fix(s):
        return str((base / s).resolve()) if not Path(s).is_absolute() else s
    if isinstance(t, str):
        return fix(t)
    if isinstance(t, list):
        return [fix(s) for s in t]
    return {k: fix(v) for k, v in t.items()}


KNOWN_KEYS = set(DEFAULTS) | {"synthetic_amount_max", "max_sources"}


def build_config(data: dict | None = None, *, preset: str | None = None, overrides: dict | None = None) -> AblationConfig:
    """Combine defaults, a parsed YAML mapping, a preset and overrides into a checked config."""
    data = dict(data or {})
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise SemgenError(f"unknown config key(s): {', '.join(unknown)}; valid: {', '.join(sorted(DEFAULTS))}")
    raw = _merge(DEFAULTS, data)
    if preset is not None:
        if preset not in PRESETS:
            raise SemgenError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        raw = _merge(raw, PRESETS[preset])
    raw = _merge(raw, {k: v for k, v in (overrides or {}).items() if v is not None})

    # The YAML's shorthands (a test path or list, a seed count, "all", arm strings) in the
    # config's own form; AblationConfig checks the whole.
    tests = raw.get("test") or {}
    if isinstance(tests, str):
        tests = [tests]
    if isinstance(tests, list):
        named = {}
        for t in tests:
            name = Path(t).name or str(t)
            if name in named:
                raise SemgenError(f"two test sets are named {name!r}; give them names (test: {{name: path}})")
            named[name] = t
        tests = named
    tests = {str(k): str(v) for k, v in tests.items()}

    sources: dict[str, Source] = {}
    cap = raw.get("synthetic_amount_max")
    for name, s in (raw.get("synthetic") or {}).items():
        if isinstance(s, str):
            s = {"path": s}
        if not isinstance(s, dict) or not s.get("path"):
            raise SemgenError(f"synthetic source {name!r} needs a path")
        amount = _amount(s.get("amount", "all"), f"synthetic source {name!r} amount")
        if cap is not None:
            amount = int(cap) if amount is None else min(amount, int(cap))
        sources[str(name)] = Source(str(name), str(s["path"]), amount)
    dropped: set[str] = set()
    if raw.get("max_sources") is not None and len(sources) > int(raw["max_sources"]):
        keep = list(sources)[: int(raw["max_sources"])]
        dropped = set(sources) - set(keep)
        sources = {k: sources[k] for k in keep}

    shots = raw.get("shots")
    if not isinstance(shots, list) or not shots:
        shots = [shots]
    shots_parsed: list[int | None] = []
    for k in shots:
        v = _amount(k, "shots")
        if v not in shots_parsed:
            shots_parsed.append(v)
    shots_parsed.sort(key=lambda v: float("inf") if v is None else v)

    seeds = raw.get("seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if not isinstance(seeds, list):
        raise SemgenError(f"seeds must be a count or a list of integers, got {seeds!r}")

    arms_spec = raw.get("arms")
    if arms_spec is None:
        arms_spec = ["real"] + [a for n in sources for a in (f"synthetic:{n}", f"mix:{n}:0.5", f"pretrain:{n}")]
    arms: list[Arm] = []
    for a in arms_spec:
        arm = parse_arm(a)
        if arm.source in dropped:
            continue  # the preset keeps fewer sources
        if arm not in arms:
            arms.append(arm)

    clf = dict(raw.get("classifier") or {})
    ft = dict(raw.get("finetune") or {})
    inits_spec = raw.get("inits")
    if inits_spec is None or inits_spec == []:
        inits_spec = ["scratch"]
    if not isinstance(inits_spec, list):
        inits_spec = [inits_spec]
    inits: list[Init] = []
    for i in inits_spec:
        it = parse_init(i, clf.get("arch"))
        if it not in inits:  # the same init twice is one; two under one label, AblationConfig refuses
            inits.append(it)
    compare = raw.get("compare") or []
    if not isinstance(compare, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in compare):
        raise SemgenError(f"compare must be a list of pairs [A, B] of init labels (B minus A), got {compare!r}")
    boot = dict(raw.get("bootstrap") or {})
    return AblationConfig(
        real=str(raw["real"]) if raw.get("real") else "", tests=tests, sources=sources, shots=shots_parsed,
        seeds=seeds, arms=arms, classifier=clf, finetune=ft,
        val=str(raw["val"]) if raw.get("val") else None,
        bootstrap={"n": int(boot.get("n", 2000)), "seed": int(boot.get("seed", 0))},
        cache=str(raw["cache"]) if raw.get("cache") else None, preset=preset, inits=inits, tta=raw.get("tta"),
        compare=[(str(a), str(b)) for a, b in compare],
    )


def load_config(path=None, *, preset: str | None = None, overrides: dict | None = None) -> AblationConfig:
    """Read a YAML config (optional) and build the checked :class:`AblationConfig`."""
    data = load_yaml(path) if path else {}
    return build_config(data, preset=preset, overrides=overrides)
