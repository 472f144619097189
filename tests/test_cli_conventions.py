"""The CLI's conventions (issue 15), checked on the real argparse tree of ``semgen``.

Every command is found by walking the parser (no list of commands here): every option has help
text and the one shared formatter; a command marked long-running (``semgen.cli.long_running``)
takes ``--no-progress`` and hands it to the library, and a command that hands ``progress=`` to the
library is marked; ``--no-progress`` silences the bar on a terminal; bad input is one line on
stderr, a non-zero exit code and nothing on stdout. Everything runs ``main`` in this process.
"""

from __future__ import annotations

import argparse
import inspect
import io
import re
from pathlib import Path

import numpy as np
import pytest

from semgen.cli import HelpFormatter, build_parser, main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _walk(parser: argparse.ArgumentParser, path: tuple = ("semgen",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + (name,))


PARSERS = list(_walk(build_parser()))
IDS = [" ".join(path) for path, _ in PARSERS]


def _is_leaf(parser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def _options(parser):
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def test_the_walk_finds_the_commands():
    leaves = [p for _, p in PARSERS if _is_leaf(p)]
    assert len(leaves) >= 10 and all(callable(p.get_default("func")) for p in leaves)
    assert any(len(path) == 3 for path, _ in PARSERS)  # nested ones too (semgen diffuse train)


@pytest.mark.parametrize("path,parser", PARSERS, ids=IDS)
def test_every_option_has_help_and_the_help_shows_defaults(path, parser):
    missing = [a.option_strings or [a.dest] for a in _options(parser) if not (a.help or "").strip()]
    assert not missing, f"{' '.join(path)}: no help text for {missing}"
    assert parser.formatter_class is HelpFormatter  # set once, in semgen/cli.py
    text = parser.format_help()  # a stray '%' in a help string raises here
    assert not re.search(r"\(default: (None|True|False|\[\])\)", text)
    for a in _options(parser):  # a default worth showing is shown, by the formatter or in the help's words
        if a.option_strings and a.nargs != 0 and a.default not in (None, [], argparse.SUPPRESS):
            assert "default" in parser._get_formatter()._expand_help(a).lower(), (path, a.dest)


def _handler_source(parser) -> str:
    return inspect.getsource(parser.get_default("func"))


@pytest.mark.parametrize("path,parser", [(p, q) for p, q in PARSERS if _is_leaf(q)],
                         ids=[i for i, (_, q) in zip(IDS, PARSERS) if _is_leaf(q)])
def test_long_running_commands_take_no_progress_and_pass_it_on(path, parser):
    flags = {s for a in parser._actions for s in a.option_strings}
    src = _handler_source(parser)
    passes_progress = "progress=" in src
    if getattr(parser, "long_running", False):
        assert "--no-progress" in flags, f"{' '.join(path)} is long-running but has no --no-progress"
        assert "progress=not args.no_progress" in src, f"{' '.join(path)}: --no-progress is not passed on"
    else:
        assert not passes_progress, f"{' '.join(path)} passes progress= but is not marked long_running"


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so progress bars draw."""

    def isatty(self) -> bool:
        return True


def _run(argv, monkeypatch, capsys, tty: bool = False) -> tuple[int, str, str]:
    capsys.readouterr()
    if tty:
        err = _Terminal()
        monkeypatch.setattr("sys.stderr", err)
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    if tty:
        monkeypatch.undo()
        return rc, cap.out, err.getvalue()
    return rc, cap.out, cap.err


def test_no_progress_silences_the_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    base = ["procedural", "--class", "clean", "--size", "64", "--seed", "3"]
    rc, out, err = _run(base + ["--n", "2", "--out", tmp_path / "a"], monkeypatch, capsys, tty=True)
    assert rc == 0 and "made 2" in out and "procedural clean" in err  # the bar, on stderr only
    rc, out, err = _run(base + ["--n", "2", "--out", tmp_path / "b", "--no-progress"], monkeypatch, capsys, tty=True)
    assert rc == 0 and "made 2" in out and err == ""

    from semgen.imageio import encode_png

    for cls in ("bridge", "open"):
        (tmp_path / "folder" / cls).mkdir(parents=True)
        (tmp_path / "folder" / cls / "x.png").write_bytes(encode_png(np.full((32, 32), 100, np.uint8)))
    rc, out, err = _run(["import", tmp_path / "folder", "--out", tmp_path / "i1"], monkeypatch, capsys, tty=True)
    assert rc == 0 and "imported 2 images" in out and "import" in err
    rc, out, err = _run(["import", tmp_path / "folder", "--out", tmp_path / "i2", "--no-progress"],
                        monkeypatch, capsys, tty=True)
    assert rc == 0 and "imported 2 images" in out and err == ""


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    from semgen.generators.procedural.generation import generate

    root = tmp_path_factory.mktemp("conventions")
    for cls in ("clean", "bridge"):
        generate(cls, 3, root / "ds", size=64, progress=False)
    return root / "ds"


# argv with {ds} / {tmp}, and a regex the one error line must match
BAD = [
    (["info", "{tmp}/missing"], r"dataset dir .*missing does not exist"),
    (["curate", "{tmp}/missing", "--out", "{tmp}/c", "--no-cache"], r"missing does not exist"),
    (["import", "{tmp}/missing", "--out", "{tmp}/i"], r"missing does not exist"),
    (["tune", "--reference", "{ds}", "--out", "{ds}/metadata.jsonl/p.yaml"],
     r"--out's work dir .*p.tune cannot be made: .*metadata.jsonl is not a directory"),
    (["train", "--data", "{tmp}/missing", "--out", "{tmp}/r"], r"missing"),
    (["procedural", "--class", "bridge", "--n", "1", "--out", "{tmp}/p", "--set", "nosuch=1"],
     r"--set nosuch: unknown parameter"),
    (["procedural", "--class", "bridge", "--n", "1", "--out", "{tmp}/p", "--set", "pitch_nm=abc"],
     r"--set pitch_nm=abc: not a valid"),
    (["procedural", "--class", "bridge", "--n", "1", "--out", "{tmp}/p", "--set", "pitch_nm"],
     r"--set 'pitch_nm': expected name=value"),
    (["train", "--data", "{ds}", "--out", "{tmp}/r", "--init", "{tmp}/nope", "--epochs", "1", "--size", "32"],
     r"--init .*nope: no such checkpoint or run dir"),
    (["train", "--data", "{ds}", "--out", "{tmp}/r", "--init", "bogus", "--epochs", "1", "--size", "32"],
     r"--init bogus: no such checkpoint or run dir"),
    # argparse's own errors: one line too, not the usage block
    (["procedural", "--n", "x"], r"argument --n: invalid int value: 'x'"),
    (["train", "--data", "{ds}", "--out", "{tmp}/r", "--arch", "nope"], r"argument --arch: invalid choice"),
    (["no-such-command"], r"invalid choice: 'no-such-command'"),
    (["diffuse"], r"required: ACTION"),
    (["evaluate", "{tmp}/r", "--data", "{ds}", "--reject-below", "x"], r"--reject-below must be a probability"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_bad_input_is_one_line_on_stderr(argv, message, ds, tmp_path, monkeypatch, capsys):
    rc, out, err = _run([a.format(ds=ds, tmp=tmp_path) for a in argv], monkeypatch, capsys)
    assert rc != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("semgen: error: ") and re.search(message, lines[0]), err[-2000:]


def test_a_multi_line_error_is_one_line(ds, tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.yaml").write_text("sanity: [1, 2\n")  # the YAML parser's message spans lines
    rc, out, err = _run(["curate", ds, "--out", tmp_path / "c", "--config", tmp_path / "bad.yaml", "--no-cache"],
                        monkeypatch, capsys)
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 1 and re.match(r"semgen: error: config .*bad.yaml does not parse: .*line 2", err)


def test_help_and_version_exit_zero_on_stdout(monkeypatch, capsys):
    rc, out, err = _run(["procedural", "--help"], monkeypatch, capsys)
    assert rc == 0 and err == "" and "--no-progress" in out and "(default: 256)" in out
    rc, out, err = _run(["--version"], monkeypatch, capsys)
    assert rc == 0 and out.startswith("semgen ")



def test_the_parser_imports_no_heavy_library():
    """``semgen --help`` and every command's start stay fast (0.4 s, not 2.9 s; ``python
    bench/bench_cli.py``): building the parser must not import torch, numba, SciPy and the rest,
    which a command imports when it runs. A fresh interpreter (this test process has imported them
    all already); OpenCV is allowed, the dataset-dir layer every command uses reads images with it."""
    from bench_scripts import load_bench

    res = load_bench("bench_cli").start(Path(__file__).resolve().parents[1])
    assert set(res["heavy"]) <= {"cv2"}, f"building semgen's parser imports {res['heavy']}"
