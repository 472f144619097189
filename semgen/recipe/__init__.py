"""``semgen recipe``: ImageNet, then semgen's procedural images, then the user's real ones, in one call."""

from .run import Recipe, RecipeConfig, run_recipe

__all__ = ["Recipe", "RecipeConfig", "run_recipe"]
