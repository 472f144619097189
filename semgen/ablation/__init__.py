"""Ablation: what synthetic data contributes to a classifier's accuracy on real test images.

``run_ablation(load_config("ablate.yaml"), "runs/ablate")`` trains every cell of the matrix (arms x
real shots x seeds), caches each by its full configuration, evaluates on the real test sets and
writes ``results.jsonl``, ``summary.md`` and plots. See ``docs/ablation.md``.
"""

from .config import PRESETS, AblationConfig, Arm, build_config, load_config, parse_arm
from .matrix import Cell, CellSpec, expand, plan
from .report import aggregate, write_report
from .runner import estimate_seconds, run_ablation
from .stats import bootstrap, paired_difference, point_metrics, replicates
from .subsets import Pool, content_key, load_pool, materialize, per_class_subset

__all__ = [
    "PRESETS", "AblationConfig", "Arm", "build_config", "load_config", "parse_arm", "Cell", "CellSpec",
    "expand", "plan", "aggregate", "write_report", "estimate_seconds", "run_ablation", "bootstrap",
    "paired_difference", "point_metrics", "replicates", "Pool", "content_key", "load_pool", "materialize",
    "per_class_subset",
]
