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
    seed and the generators in order (``None``: the default set). Two runs with the same key see
    the same scenes for their common prefix, whatever their labels, heads or image size (the
    size rescales the rendering, not the scene).

    >>> stream_key({"seed": 0, "generators": None, "labels": "fine"}) == stream_key({"seed": 0, "labels": "coarse"})
    True
    """
    gens = pretrain_config.get("generators")
    return (pretrain_config.get("seed"), tuple(gens) if gens else None)


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
    """

    def __init__(self, space: TargetSpace, *, seed: int, size: int):
        self.space = space
        self.seed = int(seed)
        self.size = int(size)
        self._gens = None

    def __getstate__(self):
        return {"space": self.space.to_dict(), "seed": self.seed, "size": self.size}

    def __setstate__(self, d):
        self.space = TargetSpace.from_dict(d["space"])
        self.seed, self.size, self._gens = d["seed"], d["size"], None

    def generators(self):
        if self._gens is None:
            self._gens = [create_generator(n) for n in self.space.generators]
        return self._gens

    def sample(self, index: int):
        """``(generator, Sample)`` of stream sample ``index``."""
        gens = self.generators()
        k, j = stream_position(int(index), len(gens))
        gen = gens[k]
        return gen, generate_one(gen, image_seed(self.seed, gen.label, j), self.size)

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
