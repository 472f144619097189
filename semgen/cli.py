"""The ``semgen`` command: parses arguments, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from . import __version__
from .errors import SemgenError

#: Modules that each add their sub-commands with ``register(subparsers)``.
COMMAND_MODULES = (
    "semgen.manifests.commands",
    "semgen.generators.procedural.commands",
    "semgen.curation.commands",
    "semgen.classifier.commands",
    "semgen.pretrain.commands",
    "semgen.generators.diffusion.commands",
    "semgen.ablation.commands",
    "semgen.app.commands",
    "semgen.tune.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semgen",
        description="Synthetic SEM defect images: generate, curate, and measure them on real images.",
    )
    parser.add_argument("--version", action="version", version=f"semgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_semgen_warning(category: type, filename: str) -> bool:
    """A warning semgen raised: its class is semgen's, or it is a UserWarning issued from semgen's code.

    Other libraries' warnings keep Python's format, so they still say where they come from.
    """
    if getattr(category, "__module__", "").split(".")[0] == "semgen":
        return True
    return issubclass(category, UserWarning) and os.path.abspath(filename).startswith(_PACKAGE_DIR)


@contextlib.contextmanager
def _one_line_warnings():
    """Print semgen's warnings as ``semgen: warning: ...`` on one line, while the command runs.

    Python's default shows two raw lines (``file:line: Category: message`` and the source line),
    which reads like a crash to a user (issue 14). Installed by :func:`main` only and undone after,
    so importing semgen as a library changes nothing.
    """
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not _is_semgen_warning(category, filename):
            return previous(message, category, filename, lineno, file, line)
        text = " ".join(str(message).split("\n")).strip()
        try:
            print(f"semgen: warning: {text}", file=file if file is not None else sys.stderr)
        except OSError:  # stderr gone (a closed pipe): a warning must never become the error
            pass

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with _one_line_warnings():
        return _run(args)


def _run(args) -> int:
    try:
        rc = args.func(args)
    except SemgenError as e:
        print(f"semgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semgen: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno == 28:
            print(f"semgen: error: disk full ({e}); re-run the same command to resume", file=sys.stderr)
            return 2
        raise
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
