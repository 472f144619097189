"""A dataset dir names the platform its generated images were made on (semgen.provenance): the CPU
class and library versions that, besides the seed, fix their bytes (docs/procedural.md, Runs)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from semgen import provenance
from semgen.generators.procedural.generation import PlatformWarning, generate
from semgen.manifests.ops import merge_dirs, summarize


def test_the_platform_line_names_the_cpu_class_and_the_libraries():
    import numpy

    words = provenance.byte_platform().split()
    assert words[0] == provenance.cpu_class() and words[2:4] == ["numpy", numpy.__version__]
    assert [w for w in words[2::2]] == ["numpy", "opencv", "scipy", "numba"]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 CPU classes")
def test_every_x86_64_cpu_is_one_class():
    """NumPy told to leave AVX2 unused (as a CPU without it) is the same class as this machine:
    bench/bench_determinism.py --cpus x86-64-v2 measured the same bytes (tests/test_procedural_kernels.py
    checks it)."""
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR")
    out = subprocess.run([sys.executable, "-c", "from semgen.provenance import cpu_class; print(cpu_class())"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == provenance.cpu_class() == "x86-64"


def test_a_run_records_its_platform_and_a_resume_elsewhere_warns(tmp_path, monkeypatch, recwarn):
    out = tmp_path / "ds"
    generate("ler", 2, out, size=32, progress=False)
    here = provenance.byte_platform()
    info = json.loads((out / "dataset.json").read_text())
    assert info["platforms"] == [here] and summarize(out)["platforms"] == [here]
    assert not [w for w in recwarn if issubclass(w.category, PlatformWarning)]

    generate("ler", 2, out, size=32, progress=False)  # nothing to make: nothing to say
    monkeypatch.setattr(provenance, "byte_platform", lambda: "arm64 darwin numpy 9 opencv 9 scipy 9 numba 9")
    generate("ler", 2, out, size=32, progress=False)  # still nothing new: no warning, no new line
    assert json.loads((out / "dataset.json").read_text())["platforms"] == [here]
    with pytest.warns(PlatformWarning, match=r"made on x86|made on .*; this machine is arm64 darwin"):
        generate("ler", 3, out, size=32, progress=False)
    assert json.loads((out / "dataset.json").read_text())["platforms"] == sorted(
        [here, "arm64 darwin numpy 9 opencv 9 scipy 9 numba 9"])


def test_merging_dirs_from_two_platforms_warns_and_keeps_both(tmp_path, monkeypatch, capsys):
    generate("ler", 2, tmp_path / "a", size=32, progress=False, shard="0/2")
    monkeypatch.setattr(provenance, "byte_platform", lambda: "arm64 darwin numpy 9 opencv 9 scipy 9 numba 9")
    generate("ler", 2, tmp_path / "b", size=32, progress=False, shard="1/2")
    with pytest.warns(UserWarning, match="made on 2 platforms"):
        res = merge_dirs([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert res.records == 2
    assert len(json.loads((tmp_path / "m" / "dataset.json").read_text())["platforms"]) == 2

    from semgen.cli import main

    assert main(["info", str(tmp_path / "m")]) == 0
    assert "made on:\n  arm64 darwin numpy 9" in capsys.readouterr().out
