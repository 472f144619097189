"""Scene layouts (pure functions building :class:`~..scene.Scene` geometry)."""
