"""``semgen pretrain``: a backbone pretrained on streamed procedural images.

Labels and regression targets come from each image's generator parameters
(:mod:`semgen.pretrain.labels`); images come from worker processes (:mod:`semgen.pretrain.stream`);
:func:`pretrain` trains, checkpoints and resumes (:mod:`semgen.pretrain.train`).
"""

from .labels import TargetSpace, fine_label_name, label_factors  # noqa: F401
from .train import PretrainConfig, pretrain  # noqa: F401
