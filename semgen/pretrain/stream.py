"""An endless, reproducible stream of procedural images with their pretraining targets.

Sample ``i`` of a stream with master seed ``s`` over generators ``g_0 .. g_{K-1}`` is image number
``i // K`` of generator ``g_{i % K}``, made with the same per-image seed as
``semgen procedural --class g --seed s`` would give it. So the stream is a pure function of
``(s, i)``: any range of it can be made by any worker, a resumed run continues exactly where it
stopped, and every streamed image can be written out (and checked) with ``semgen procedural``.

Examples
--------
>>> from semgen.pretrain.labels import TargetSpace
>>> from semgen.pretrain.stream import StreamJob
>>> job = StreamJob(TargetSpace.build(["ler", "clean"]), seed=0, size=32)
>>> batch = job((0, 4))
>>> batch["images"].shape, batch["images"].dtype
((4, 32, 32), dtype('uint8'))
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ..generators.procedural.generation import generate_one
from ..generators.procedural.registry import create_generator
from ..seeding import image_seed
from .labels import TargetSpace


def stream_position(index: int, n_generators: int) -> tuple[int, int]:
    """``(generator number, image number within that generator)`` of stream sample ``index``."""
    return index % n_generators, index // n_generators


def stream_key(pretrain_config: dict) -> tuple:
    """What decides a stream's scenes, from a run's recorded ``pretrain`` settings: the master
    seed, the generators in order (``None``: the default set) and the profile's ranges (``None``:
    the generators' own). Two runs with the same key see the same scenes for their common
    prefix, whatever their labels, heads or image size (the size rescales the rendering, not the
    scene).

    >>> stream_key({"seed": 0, "generators": None, "labels": "fine"}) == stream_key({"seed": 0, "labels": "coarse"})
    True
    """
    gens = pretrain_config.get("generators")
    prof = pretrain_config.get("profile")
    key = (pretrain_config.get("seed"), tuple(gens) if gens else None)
    return key + (hashlib.sha256(prof.encode()).hexdigest(),) if prof else key


class StreamJob:
    """Picklable worker state: makes the samples ``[start, start + n)`` of the stream.

    Parameters
    ----------
    space : TargetSpace
        Generators (in stream order) and targets.
    seed : int
        Master seed.
    size : int
        Image side in pixels.
    profile : str, optional
        Canonical JSON of a profile's ``{"version", "classes"}`` (:class:`~.train.PretrainConfig`):
        each generator samples from its ranges and pins, as ``semgen procedural --profile`` does.
        The targets stay those of the generators' own ranges, so they mean the same in every run.
    """

    def __init__(self, space: TargetSpace, *, seed: int, size: int, profile: str | None = None):
        self.space = space
        self.seed = int(seed)
        self.size = int(size)
        self.profile = profile
        self._gens = self._made = None

    def __getstate__(self):
        return {"space": self.space.to_dict(), "seed": self.seed, "size": self.size, "profile": self.profile}

    def __setstate__(self, d):
        self.space = TargetSpace.from_dict(d["space"])
        self.seed, self.size, self.profile = d["seed"], d["size"], d.get("profile")
        self._gens = self._made = None

    def generators(self):
        """The generators, with their own ranges (their names, versions and targets)."""
        if self._gens is None:
            self._gens = [create_generator(n) for n in self.space.generators]
        return self._gens

    def _makers(self):
        """``(generator with the profile's ranges, pins)`` per generator."""
        if self._made is None:
            from ..generators.procedural.profile import class_overrides, split_overrides

            prof = json.loads(self.profile) if self.profile else None
            self._made = []
            for g in self.generators():
                pins, ranges = split_overrides(class_overrides(prof, g))
                self._made.append((g.with_ranges(ranges) if ranges else g, pins))
        return self._made

    def sample(self, index: int):
        """``(generator, Sample)`` of stream sample ``index`` (the generator with its own ranges)."""
        gens = self.generators()
        k, j = stream_position(int(index), len(gens))
        maker, pins = self._makers()[k]
        return gens[k], generate_one(maker, image_seed(self.seed, gens[k].label, j), self.size, pins or None)

    def __call__(self, span: tuple[int, int]) -> dict:
        """Arrays for samples ``[start, start + n)``: images uint8 [n, S, S], fine int64 [n],
        reg float32 [n, T], reg_mask bool [n, T], index int64 [n]."""
        start, n = span
        t = len(self.space.reg_names)
        out = {"images": np.empty((n, self.size, self.size), np.uint8), "fine": np.empty(n, np.int64),
               "reg": np.empty((n, t), np.float32), "reg_mask": np.empty((n, t), bool),
               "index": np.arange(start, start + n, dtype=np.int64)}
        for i in range(n):
            gen, s = self.sample(start + i)
            out["images"][i] = s.image
            out["fine"][i], out["reg"][i], out["reg_mask"][i] = self.space.targets(gen, s.params)
        return out
