"""``python -m semgen.launch ARGS``: ``accelerate launch ARGS`` with semgen's torchvision step first.

The ``accelerate`` console script imports timm (for its ``estimate-memory`` command) and so
torchvision before any user code runs; where torchvision is a CUDA build against the CPU torch
wheel that import fails (see :mod:`semgen.compat`). This entry point registers the missing op
schemas, then hands the arguments to accelerate's own ``launch`` command unchanged::

    python -m semgen.launch --num_processes 2 --mixed_precision bf16 -m semgen.cli diffuse train ...
"""

from __future__ import annotations

import sys

from .compat import ensure_torchvision


def main(argv: list[str] | None = None) -> None:
    ensure_torchvision()
    from accelerate.commands.launch import launch_command, launch_command_parser

    parser = launch_command_parser()
    parser.prog = "python -m semgen.launch"
    launch_command(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
