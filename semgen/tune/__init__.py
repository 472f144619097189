"""``semgen tune``: fit the procedural generators' sampling ranges to a real reference pool.

See :func:`semgen.tune.search.tune` and ``docs/tune.md``.
"""

from .objective import Reference, discriminator_auc, features, reference_sha256
from .search import tune, tuned_params, work_dir

__all__ = ["Reference", "discriminator_auc", "features", "reference_sha256", "tune", "tuned_params", "work_dir"]
