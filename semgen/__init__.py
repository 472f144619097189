"""semgen: synthetic SEM images of semiconductor defects, curated and measured on real ones."""

__version__ = "0.1.0"
