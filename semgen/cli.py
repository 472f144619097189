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
    "semgen.recipe.commands",
    "semgen.generators.diffusion.commands",
    "semgen.ablation.commands",
    "semgen.app.commands",
    "semgen.tune.commands",
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, set once here for every ``semgen`` command.

    A default is left out where it says nothing (a flag's, ``None``, an empty list) or where the
    help text already states it in words (``"(default: the bundled model)"``).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.nargs == 0 or "default" in text.lower()
                or action.default is None or action.default is argparse.SUPPRESS or action.default == []):
            return text
        return super()._get_help_string(action)


class SemgenParser(argparse.ArgumentParser):
    """The parser of ``semgen`` and of every sub-command (``add_subparsers`` makes its own kind).

    Errors are one line on stderr and exit code 2, not argparse's usage block.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"semgen: error: {message} (see: {self.prog} -h)\n")


def long_running(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Mark ``parser``'s command as long-running and give it ``--no-progress``.

    Its handler passes ``progress=not args.no_progress`` to the library, whose bars and progress
    lines go to stderr. ``tests/test_cli_conventions.py`` finds the marked commands by ``long_running``.

    Examples
    --------
    >>> p = long_running(argparse.ArgumentParser())
    >>> p.long_running, p.parse_args(["--no-progress"]).no_progress
    (True, True)
    """
    parser.long_running = True
    # a group of its own: listed after the command's options, not before them
    parser.add_argument_group("progress").add_argument(
        "--no-progress", action="store_true", help="no progress bar or progress lines on stderr")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = SemgenParser(
        prog="semgen",
        description="Synthetic SEM defect images: generate, curate, and measure them on real images.",
    )
    parser.add_argument("--version", action="version", version=f"semgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def one_line(message) -> str:
    r"""``message`` on one line: a multi-line error (a YAML parser's, say) must not read like a crash.

    Examples
    --------
    >>> one_line("bad config:\n  line 2, column 4\n")
    'bad config: line 2, column 4'
    """
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


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
        text = one_line(message)
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or an argparse error already printed: its exit code
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    except SemgenError as e:  # raised by an argument's type= function
        print(f"semgen: error: {one_line(e)}", file=sys.stderr)
        return 2
    with _one_line_warnings():
        return _run(args)


def _run(args) -> int:
    try:
        rc = args.func(args)
    except SemgenError as e:
        print(f"semgen: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semgen: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout left (`semgen evaluate ... | head -1`): stop quietly, as Unix tools do;
        # stdout goes to /dev/null so that flushing it at exit raises nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0  # what was asked for was printed as far as anyone reads it
    except OSError as e:
        if e.errno == 28:
            print(f"semgen: error: disk full ({e}); re-run the same command to resume", file=sys.stderr)
            return 2
        raise
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
