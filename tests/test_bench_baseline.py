"""bench/_baseline.py: a measurement in a fresh process that imports semgen from a given checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_scripts import load_bench


def _baseline():
    return load_bench("_baseline")


def _checkout(root: Path, version: str) -> Path:
    """A stand-in checkout: a ``semgen`` package that only knows its version."""
    (root / "semgen").mkdir(parents=True)
    (root / "semgen" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    return root


CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
import semgen
from _baseline import semgen_dir
print("noise before the result")
print(json.dumps({{"semgen": {report}, "version": semgen.__version__, "arg": sys.argv[1]}}))
"""


def test_each_side_runs_the_semgen_of_its_checkout(tmp_path):
    b = _baseline()
    bench = str(Path(b.__file__).parent)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(bench=bench, report="semgen_dir()"))
    old, new = _checkout(tmp_path / "old", "0.old"), _checkout(tmp_path / "new", "0.new")
    runs = b.alternated(2, lambda c: b.in_checkout(c, [script, "x"]), str(old), str(new))
    assert [(o["version"], n["version"]) for o, n in runs] == [("0.old", "0.new")] * 2
    assert runs[0][0]["arg"] == "x" and Path(runs[0][1]["semgen"]) == new / "semgen"
    lo, hi = b.best_of(3, lambda c: {"ms": 1.0 if c == str(old) else 2.0, "c": c}, str(old), str(new),
                       key=lambda r: r["ms"])
    assert (lo["c"], hi["c"]) == (str(old), str(new))


def test_a_child_that_timed_other_code_or_failed_is_an_error(tmp_path):
    b = _baseline()
    bench = str(Path(b.__file__).parent)
    old = _checkout(tmp_path / "old", "0.old")
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(bench=bench, report=repr(str(tmp_path / "elsewhere" / "semgen"))))
    with pytest.raises(SystemExit, match="imported semgen from"):
        b.in_checkout(old, [script, "x"])
    script.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(SystemExit, match="failed:(.|\\n)*boom"):
        b.in_checkout(old, [script])
    with pytest.raises(SystemExit, match="no semgen/ package there"):
        b.in_checkout(tmp_path, [script])
