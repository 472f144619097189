"""Procedural generator classes: every module here registers itself with @register on import."""
