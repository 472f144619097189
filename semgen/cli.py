"""The ``semgen`` command: parses arguments, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import argparse
import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
