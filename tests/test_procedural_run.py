"""``semgen procedural`` runs: determinism across workers and shards, resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from semgen.cli import main
from semgen.generators.procedural.generation import generate, parse_shard, shard_range
from semgen.imageio import decode_png, sha256_file
from semgen.manifests import DatasetDir, merge, validate_dir

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (except dataset.json, which holds timestamps and commands) -> bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} \
        if root.exists() else {}


def test_same_bytes_for_one_and_two_workers(tmp_path):
    a = generate("bridge", 10, tmp_path / "w1", seed=5, size=64, workers=1, progress=False)
    b = generate("bridge", 10, tmp_path / "w2", seed=5, size=64, workers=2, progress=False, chunksize=2)
    assert a["made"] == b["made"] == 10
    ta, tb = _tree(tmp_path / "w1"), _tree(tmp_path / "w2")
    assert ta == tb
    recs = DatasetDir(tmp_path / "w1").records()
    assert [r["id"] for r in recs] == [f"bridge_{i:06d}" for i in range(10)]  # index order
    for r in recs:
        assert r["generator"]["name"] == "bridge" and isinstance(r["seed"], int)
        assert r["mask_file_name"] == f"masks/bridge/{r['id']}.png" and r["bboxes"]
        assert {"layout", "view"} <= set(r["meta"]) and "dose" in r["params"]
        mask = decode_png((tmp_path / "w1" / r["mask_file_name"]).read_bytes())
        assert mask.shape == (64, 64) and mask.max() == len(r["bboxes"])
    assert validate_dir(tmp_path / "w1") == []


def test_two_shards_merged_equal_one_run(tmp_path):
    generate("open", 9, tmp_path / "full", seed=2, size=64, progress=False)
    generate("open", 9, tmp_path / "s0", seed=2, size=64, shard="0/2", progress=False)
    generate("open", 9, tmp_path / "s1", seed=2, size=64, shard="1/2", progress=False)
    assert len(DatasetDir(tmp_path / "s0").records()) == 4 and len(DatasetDir(tmp_path / "s1").records()) == 5
    merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    assert _tree(tmp_path / "merged") == _tree(tmp_path / "full")
    assert (tmp_path / "merged" / "metadata.jsonl").read_bytes() == (tmp_path / "full" / "metadata.jsonl").read_bytes()


def test_shard_ranges_partition_the_indices():
    for n in (1, 7, 10, 101):
        for parts in (1, 2, 3, 8):
            got = [i for k in range(parts) for i in shard_range(n, (k, parts))]
            assert got == list(range(n))
    assert parse_shard("1/4") == (1, 4)


def test_resume_continues_and_rerun_is_a_no_op(tmp_path):
    out = tmp_path / "d"
    generate("clean", 4, out, seed=1, size=48, progress=False)
    res = generate("clean", 7, out, seed=1, size=48, progress=False)  # more images: extends
    assert (res["made"], res["skipped"]) == (3, 4)
    before = _tree(out)
    res = generate("clean", 7, out, seed=1, size=48, progress=False)
    assert res["made"] == 0 and _tree(out) == before
    generate("clean", 7, tmp_path / "one", seed=1, size=48, progress=False)
    assert _tree(tmp_path / "one") == before
    info = json.loads((out / "dataset.json").read_text())
    assert info["class_counts"] == {"clean": 7} and "procedural:clean" in info["configs"]


def test_killed_run_resumes_to_exactly_n_records(tmp_path):
    """A real ``python -m semgen procedural`` killed with SIGKILL mid-run, then re-run."""
    out = tmp_path / "killed"
    n = 400
    cmd = [sys.executable, "-m", "semgen", "procedural", "--class", "ler", "--n", str(n), "--size", "40",
           "--seed", "9", "--out", str(out), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "metadata.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 5:
            break
        if proc.poll() is not None:
            pytest.fail(f"generator exited early: {proc.stderr.read().decode()}")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    partial = DatasetDir(out).records()
    assert 5 <= len(partial) < n, "the run must be killed midway"
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    recs = DatasetDir(out).records(strict=True)
    ids = [x["id"] for x in recs]
    assert len(recs) == n and len(set(ids)) == n
    assert ids == [f"ler_{i:06d}" for i in range(n)]
    assert recs[: len(partial)] == partial
    assert subprocess.run([sys.executable, "-m", "semgen", "validate", str(out)], env=env,
                          capture_output=True).returncode == 0
    for x in recs[:: 97]:
        assert sha256_file(out / x["file_name"]) == x["sha256"]
    # no stray temporary files left by the kill after the resume
    assert not [p for p in out.rglob(".*.tmp")]


# -- bad input: one-line error, exit 2, nothing written ----------------------------------------------

def _run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("argv,needle", [
    (["--class", "brdge", "--n", "3"], "unknown class 'brdge'. Did you mean 'bridge'?"),
    (["--class", "bridge", "--n", "0"], "--n must be a positive integer"),
    (["--class", "bridge", "--n", "-4"], "--n must be a positive integer"),
    (["--class", "bridge", "--n", "3", "--set", "nope=1"], "--set nope: unknown parameter"),
    (["--class", "bridge", "--n", "3", "--set", "dose=0.01"], "--set dose=0.01: out of range"),
    (["--class", "bridge", "--n", "3", "--set", "bridge_type=huge"], "not one of full, micro, footing"),
    (["--class", "bridge", "--n", "3", "--set", "dose"], "expected name=value"),
    (["--class", "bridge", "--n", "3", "--size", "8"], "--size must be an integer"),
    (["--class", "bridge", "--n", "3", "--shard", "2/2"], "--shard 2/2"),
    (["--class", "bridge", "--n", "3", "--workers", "0"], "--workers must be a positive integer"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    rc, err = _run_cli(capsys, "procedural", *argv, "--out", str(out))
    assert rc == 2
    assert err.startswith("semgen: error: ") and needle in err and "\n" not in err
    assert not out.exists()


def test_other_schema_and_other_config_are_refused_untouched(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset.json").write_text(json.dumps({"schema_version": 99}))
    snap = _snapshot(other)
    rc, err = _run_cli(capsys, "procedural", "--class", "open", "--n", "2", "--out", str(other))
    assert rc == 2 and "schema" in err and _snapshot(other) == snap

    d = tmp_path / "d"
    assert _run_cli(capsys, "procedural", "--class", "open", "--n", "2", "--size", "48", "--out", str(d))[0] == 0
    snap = _snapshot(d)
    for extra in (["--seed", "1"], ["--size", "64"], ["--set", "dose=30"]):
        rc, err = _run_cli(capsys, "procedural", "--class", "open", "--n", "2", "--size", "48", "--out", str(d),
                           *[a for a in extra if extra[0] != "--size"] if extra[0] != "--size" else
                           ["--size", "64"])
        assert rc == 2 and "different configuration" in err, err
        assert _snapshot(d) == snap
    # same arguments: resume (nothing to do), another class: shares the dir
    assert _run_cli(capsys, "procedural", "--class", "open", "--n", "2", "--size", "48", "--out", str(d))[0] == 0
    assert _run_cli(capsys, "procedural", "--class", "clean", "--n", "1", "--size", "48", "--out", str(d))[0] == 0
    assert json.loads((d / "dataset.json").read_text())["class_counts"] == {"clean": 1, "open": 2}


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = _run_cli(capsys, "procedural", "--class", "clean", "--n", "1", "--out", str(blocker / "sub"))
    assert rc == 2 and "cannot write" in err
    rc, err = _run_cli(capsys, "procedural", "--class", "clean", "--n", "1", "--out", str(blocker))
    assert rc == 2 and "not a directory" in err
    assert blocker.read_text() == "x" and len(list(tmp_path.iterdir())) == 1


def test_cli_exit_code_in_a_real_process(tmp_path):
    r = subprocess.run([sys.executable, "-m", "semgen", "procedural", "--class", "nonsense", "--n", "2",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("semgen: error:")
    assert not (tmp_path / "o").exists()


# -- listing and sheets -----------------------------------------------------------------------------

def test_list_shows_classes_parameters_defaults_and_ranges(capsys):
    assert main(["procedural", "--list"]) == 0
    out = capsys.readouterr().out
    for c in ("clean", "ler", "bridge", "open"):
        assert f"\n{c}  (class {c}" in "\n" + out
    from semgen.generators.procedural.registry import create_generator
    width = create_generator("bridge").params["bridge_width"]
    assert "bridge_type" in out and "imaging parameters" in out and "e/px" in out
    assert any(ln.split()[:2] == ["bridge_width", str(width.default)] and width.describe_range() in ln
               for ln in out.splitlines())
    assert main(["procedural", "--list", "--class", "open"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("open  (class open") and "bridge_type" not in out and "open_type" in out
    assert main(["procedural", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"clean", "ler", "bridge", "open"}


def test_sheet_from_dataset_dir_beside_imagefolder(tmp_path, capsys):
    d = tmp_path / "gen"
    generate("bridge", 3, d, size=48, progress=False)
    generate("clean", 2, d, size=48, progress=False, overrides={"layout": "lines"})
    real = tmp_path / "real"
    for c in ("bridge", "open"):
        (real / c).mkdir(parents=True)
        for i in range(2):
            from semgen.imageio import encode_png
            (real / c / f"{i}.png").write_bytes(encode_png(np.full((30, 40), 60 * i, np.uint8)))
    out = tmp_path / "sheet.png"
    assert main(["sheet", str(d), "--beside", str(real), "--per-class", "4", "--cell", "32", "-o", str(out)]) == 0
    img = decode_png(out.read_bytes())
    assert img.ndim == 2 and img.shape[0] > 2 * 32 and img.shape[1] > 2 * 4 * 32
    rc = main(["sheet", str(tmp_path / "missing"), "-o", str(tmp_path / "s2.png")])
    assert rc == 2 and not (tmp_path / "s2.png").exists()


def test_list_into_closed_pipe_ends_quietly():
    # `semgen procedural --list | head`: the reader closes the pipe early. The JSON listing is
    # ~200 KB, more than a pipe buffer, so the writer really meets the closed pipe.
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "semgen", "procedural", "--list", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"["
    p.stdout.close()
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_package_names_are_the_functions_in_any_import_order():
    # the writer module imported first (as above) once shadowed the package's lazy ``generate``
    import semgen.generators.procedural as proc
    from semgen.generators.procedural import generate as g, generate_one as g1
    from semgen.generators.procedural.generation import generate as g0

    assert g is g0 and proc.generate is g0 and callable(g1) and g.__name__ == "generate"


@pytest.mark.parametrize("n, cores, workers", [(199, 2, 1), (200, 2, 2), (5000, 8, 2), (5000, 1, 1)])
def test_the_default_workers_follow_the_run_size_and_the_cores(n, cores, workers, tmp_path, monkeypatch):
    import semgen.generators.procedural.generation as generation
    import semgen.parallel

    seen = {}

    def fake_generate(label, n, out, **kw):
        seen.update(kw)
        return {"out": str(out), "label": label, "generator": label, "made": 0, "skipped": 0, "total": n}

    monkeypatch.setattr(generation, "generate", fake_generate)
    monkeypatch.setattr(semgen.parallel, "start_pool_early", lambda preload: seen.setdefault("early", list(preload)))
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert main(["procedural", "--class", "ler", "--n", str(n), "--out", str(tmp_path / "d")]) == 0
    assert seen["workers"] == workers
    assert ("early" in seen) == (workers > 1)  # a pool's fork server is started first only for a pool
    seen.clear()
    assert main(["procedural", "--class", "ler", "--n", str(n), "--out", str(tmp_path / "d"), "--workers", "3"]) == 0
    assert seen["workers"] == 3  # an explicit --workers is kept as given
