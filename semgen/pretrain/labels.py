"""Pretraining targets derived from a procedural image's generator parameters.

Two kinds, both pure functions of ``(generator, params)``, so a record in a dataset dir and an image
streamed by :mod:`semgen.pretrain.stream` get the same targets:

- a **fine label**: the defect class crossed with the scene's layout, its line orientation and the
  class's own defect subtype (``bridge/lines/vertical/micro``). The choice parameters that make it
  are the generator's ``layout`` and ``orientation`` and every choice parameter named after its class
  (``bridge_type``, ``via_defect_xs``, ``particle_shape``, ...). The vocabulary is the product of their
  choices, enumerated from the parameter specs (never from samples), so it is the same in every run;
- **regression targets**: every numeric parameter of every generator (pitch, duty/CD, roughness
  sigma, dose, beam blur, tilt, ...) as its position ``u`` in ``[0, 1]`` in its sampling range (the
  uniform it was drawn from; log-scaled where sampled log-uniformly). Parameters an image does not
  have (inactive, or of another class) are masked.

Examples
--------
>>> from semgen.pretrain.labels import TargetSpace
>>> ts = TargetSpace.build(["ler"], labels="fine")
>>> ts.fine_names[:2]
['ler/lines/vertical', 'ler/lines/horizontal']
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import SemgenError
from ..generators.procedural.params import ParamSpec
from ..generators.procedural.registry import create_generator, list_generators

#: Shared choice parameters that make a fine label (besides each class's own subtype choices).
SHARED_FACTORS = ("layout", "orientation")
LABEL_KINDS = ("fine", "coarse")
#: Separator of the parts of a fine label.
SEP = "/"


def label_factors(gen) -> list[str]:
    """Names of the choice parameters of ``gen`` whose values make its fine label (in order)."""
    own = [s.name for s in gen.params if s.kind == "choice"]
    return [n for n in own if n in SHARED_FACTORS or n.startswith(f"{gen.label}_")]


def _factor_values(spec: ParamSpec) -> list:
    vals = list(spec.choices)
    return vals + [None] if spec.when else vals  # None: the parameter is inactive for this layout


def _fine_name(label: str, values) -> str:
    return SEP.join([label] + [str(v) for v in values if v is not None])


def fine_label_name(gen, params: dict, *, labels: str = "fine") -> str:
    """The fine label of an image of ``gen`` with sampled ``params`` (``labels="coarse"``: the class)."""
    if labels == "coarse":
        return gen.label
    return _fine_name(gen.label, [params.get(n) for n in label_factors(gen)])


def _target_u(spec: ParamSpec, value) -> float | None:
    """Where ``value`` lies in ``spec``'s sampling range, in [0, 1]; None if it has no range."""
    if spec.kind not in ("float", "int") or spec.low is None or spec.low == spec.high or value is None:
        return None
    lo, hi, v = float(spec.low), float(spec.high), float(value)
    if spec.log:
        lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, 1e-30))
    return float(min(1.0, max(0.0, (v - lo) / (hi - lo))))


def fold_to_classes(probs, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Class probabilities of a fine-label model: each class's fine labels' probabilities summed.

    A model pretrained with ``labels="fine"`` predicts ``bridge/lines/vertical/micro``; a test set
    is labelled ``bridge``. Summing is exact for a softmax over the fine labels, so the class
    prediction needs no real image (the synthetic-only figure).

    Parameters
    ----------
    probs : float array (N, K)
        Probabilities over ``names`` (rows sum to 1).
    names : list of str
        Fine labels (``class/part/...``) or plain classes; a plain class folds onto itself.

    Returns
    -------
    (float64 array (N, C), list of str)
        The summed probabilities and the classes, in order of first appearance in ``names``.

    Examples
    --------
    >>> p, c = fold_to_classes([[0.2, 0.3, 0.5]], ["ler/lines", "ler/contacts", "via/array"])
    >>> c, p.round(2).tolist()
    (['ler', 'via'], [[0.5, 0.5]])
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(names):
        raise SemgenError(f"probabilities of shape {probs.shape} do not match {len(names)} labels")
    fold, classes = fold_matrix(names)
    return probs @ fold, classes


def fold_matrix(names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Which class each fine label belongs to, as a 0/1 matrix: ``probs @ fold`` sums them per class.

    Returns
    -------
    (float64 array (K, C), list of str)
        ``fold[k, c] = 1`` where label ``k`` is of class ``c``; the classes in order of first
        appearance in ``names``.

    Examples
    --------
    >>> m, c = fold_matrix(["ler/lines", "via/array", "ler/contacts"])
    >>> c, m.astype(int).tolist()
    (['ler', 'via'], [[1, 0], [0, 1], [1, 0]])
    """
    classes = classes_of(names)
    fold = np.zeros((len(names), len(classes)))
    fold[np.arange(len(names)), [classes.index(n.split(SEP, 1)[0]) for n in names]] = 1.0
    return fold, classes


def restrict_to_classes(probs, classes: list[str], task) -> tuple[np.ndarray, list[str]]:
    """Class probabilities of a model that knows more classes than the task: the task's only.

    The probabilities of the other classes are dropped and each row renormalised: the model then
    predicts among ``task`` only, e.g. a pretraining run that mixed a real pool into its batches,
    whose stream also has classes that the pool lacks.

    Parameters
    ----------
    probs : float array (N, K)
        Probabilities over ``classes``.
    classes : list of str
        The model's classes (fine labels already folded, :func:`fold_to_classes`).
    task : iterable of str
        Distinct classes, each one of ``classes``.

    Returns
    -------
    (float64 array (N, T), list of str)
        The renormalised probabilities and the task's classes, in the model's order.

    Examples
    --------
    >>> p, c = restrict_to_classes([[0.2, 0.3, 0.5]], ["ler", "scratch", "via"], ["via", "ler"])
    >>> c, p.round(3).tolist()
    (['ler', 'via'], [[0.286, 0.714]])
    """
    kept = task_classes(classes, task)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise SemgenError(f"probabilities of shape {probs.shape} do not match {len(classes)} classes")
    out = probs[:, [classes.index(c) for c in kept]]
    out /= np.maximum(out.sum(1, keepdims=True), 1e-300)
    return out, kept


def task_classes(classes: list[str], task) -> list[str]:
    """``task`` checked against a model's ``classes`` (distinct, each one of them), in the model's order.

    >>> task_classes(["ler", "scratch", "via"], ["via", "ler"])
    ['ler', 'via']
    """
    task = list(task)
    if not task or len(set(task)) != len(task) or any(c not in classes for c in task):
        raise SemgenError(f"--classes must be distinct classes of the model ({', '.join(classes)}); "
                          f"got {', '.join(task) or 'none'}")
    return [c for c in classes if c in task]


#: ``--classes all``: every class of the model, not the task classes its run records.
ALL_CLASSES = "all"


def chosen_task(classes, recorded) -> list[str] | None:
    """The classes a model predicts among: ``classes`` as asked, else the ones its run records.

    A ``semgen pretrain`` run that mixed a real pool into its batches (``--data``) records that
    pool's classes (``task_classes`` in its config, and in an ensemble of such runs): its stream
    also knows classes the pool lacks (e.g. ``scratch``), and the task is the pool's. ``None``
    means every class of the model.

    Parameters
    ----------
    classes : list of str, or None
        What the user asked (``--classes``); ``["all"]`` (or ``"all"``): every class of the model.
    recorded : list of str, or None
        The run's ``task_classes``.

    Examples
    --------
    >>> chosen_task(None, ["ler", "via"]), chosen_task(["via"], ["ler", "via"]), chosen_task(["all"], ["via"])
    (['ler', 'via'], ['via'], None)
    """
    if classes is None:
        return list(recorded) if recorded else None
    if classes == ALL_CLASSES or list(classes) == [ALL_CLASSES]:
        return None
    return list(classes)


def classes_of(names) -> list[str]:
    """The classes of fine labels (their first parts), in order of first appearance."""
    return list(dict.fromkeys(n.split(SEP, 1)[0] for n in names))


def is_fine(names) -> bool:
    """Whether ``names`` are fine labels (some carry a ``class/...`` path)."""
    return any(SEP in n for n in names)


@dataclass
class TargetSpace:
    """The fine-label vocabulary and regression target names of a set of generators.

    Attributes
    ----------
    generators : list of str
        Generator names, in stream order.
    labels : {"fine", "coarse"}
    fine_names : list of str
        The classifier's classes: fine labels (``labels="fine"``) or the generators' classes.
    reg_names : list of str
        Regression targets (numeric parameter names, sorted).
    """

    generators: list[str]
    labels: str
    fine_names: list[str]
    reg_names: list[str]

    def __post_init__(self):
        self._index = {n: i for i, n in enumerate(self.fine_names)}

    @classmethod
    def build(cls, generators=None, *, labels: str = "fine") -> "TargetSpace":
        """Enumerate targets for ``generators`` (names or labels; default all registered)."""
        if labels not in LABEL_KINDS:
            raise SemgenError(f"--labels must be one of {', '.join(LABEL_KINDS)}, got {labels!r}")
        names = list(generators) if generators else list_generators()
        gens = [create_generator(n) for n in names]
        if len({g.name for g in gens}) != len(gens):
            raise SemgenError(f"a generator is listed twice in {names}")
        fine: list[str] = []
        reg: set[str] = set()
        for g in gens:
            if labels == "coarse":
                combos = [g.label]
            else:
                specs = [g.params[n] for n in label_factors(g)]
                combos = [_fine_name(g.label, vals) for vals in itertools.product(*map(_factor_values, specs))]
            for c in combos:
                if c not in fine:
                    fine.append(c)
            reg.update(s.name for s in g.space if _target_u(s, s.low) is not None)
        return cls([g.name for g in gens], labels, fine, sorted(reg))

    def coarse_of(self) -> list[str]:
        """The class (first part) of each fine label."""
        return [n.split(SEP, 1)[0] for n in self.fine_names]

    def targets(self, gen, params: dict) -> tuple[int, np.ndarray, np.ndarray]:
        """``(fine_id, reg [T] float32, reg_mask [T] bool)`` of one image."""
        name = fine_label_name(gen, params, labels=self.labels)
        fid = self._index.get(name, -1)
        if fid < 0:
            raise SemgenError(f"fine label {name!r} of generator {gen.name} is not in the vocabulary "
                              "(was the checkpoint made with other generators?)")
        reg = np.zeros(len(self.reg_names), np.float32)
        mask = np.zeros(len(self.reg_names), bool)
        space = gen.space
        for j, n in enumerate(self.reg_names):
            if n in params and n in space:
                u = _target_u(space[n], params[n])
                if u is not None:
                    reg[j], mask[j] = u, True
        return fid, reg, mask

    def to_dict(self) -> dict:
        return {"generators": self.generators, "labels": self.labels, "fine_names": self.fine_names,
                "reg_names": self.reg_names}

    @classmethod
    def from_dict(cls, d: dict) -> "TargetSpace":
        return cls(list(d["generators"]), d["labels"], list(d["fine_names"]), list(d["reg_names"]))
