"""``--executor ray``: the same bytes and records as a local run, and a killed worker's work redone once.

One local Ray instance (2 CPUs, no dashboard) serves the module and is shut down after it. Images
are 32 px and runs a dozen images, so the cost is Ray's start-up (about 15 s here), not the work.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from test_ablation_runner import data  # noqa: F401 - a fixture: the ablation's pools and test sets
from test_curation_curate import dataset  # noqa: F401 - a fixture: curate's inputs, bad files included

from semgen.cli import main
from semgen.errors import SemgenError
from semgen.generators.procedural.generation import generate
from semgen.imageio import sha256_file
from semgen.parallel import RayBackend, make_backend, map_items


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    # a small object store: the machine is shared, and the results are a few kB per chunk
    kw = dict(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
              logging_level="WARNING")
    for _ in range(2):
        try:
            ray.init(**kw)
            break
        except Exception as e:  # pragma: no cover - depends on the machine's load
            # Ray 2.60's raylet gives its dashboard agent a fixed 15 s to start, then exits: on a
            # machine whose CPUs other jobs keep busy that can fail every time (docs/scale.md).
            # An idle machine (CI) starts it in about 15 s; any other error fails the tests.
            ray.shutdown()
            if "timed out during startup" not in str(e):
                raise
    else:  # pragma: no cover
        pytest.skip("Ray did not start twice (its raylet timed out waiting for its agent): a loaded machine")
    # the workers cannot import this test module: ship its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def _records(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines() if line.strip()]


def _files(root: Path) -> dict[str, str]:
    """sha256 of every file but dataset.json (it holds the command line and timestamps)."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def test_ray_run_matches_local_run(tmp_path, ray_cluster, capsys):
    common = ["procedural", "--class", "bridge", "--n", "12", "--size", "32", "--seed", "3", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    assert main(common + ["--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert "made 12" in capsys.readouterr().out
    local, ray = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert [r["sha256"] for r in ray] == [r["sha256"] for r in local]
    assert len({r["sha256"] for r in ray}) == 12
    assert (tmp_path / "ray" / "metadata.jsonl").read_bytes() == (tmp_path / "local" / "metadata.jsonl").read_bytes()
    files = _files(tmp_path / "ray")
    assert files == _files(tmp_path / "local")
    assert any(k.startswith("masks/") for k in files)  # bridge images have masks: those bytes travel too

    # a resumed Ray run over a local prefix makes only the rest, with the same bytes
    assert main(common[:4] + ["20"] + common[5:] + ["--out", str(tmp_path / "local"), "--executor", "ray"]) == 0
    assert main(common[:4] + ["20"] + common[5:] + ["--out", str(tmp_path / "all"), "--workers", "1"]) == 0
    assert "made 8, already there 12" in capsys.readouterr().out
    assert _files(tmp_path / "local") == _files(tmp_path / "all")


def _crash_once_backend(inner: RayBackend, marker: Path, log: Path, at, key=list):
    """``inner`` with each task logged (as ``key(chunk)``), and the task holding ``at`` killing its worker once."""

    class CrashOnce:
        def __init__(self, fn):
            self.fn = fn

        def __call__(self, chunk):
            ids = key(chunk)
            with open(log, "a") as f:
                f.write(json.dumps(ids) + "\n")
            if at in ids:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass  # the retry: the marker says this task killed its worker already
                else:
                    os.close(fd)
                    os._exit(1)  # the worker dies mid-run, as on a lost node
            return self.fn(chunk)

    class Crashing:
        remote = True
        workers = 2

        def map(self, fn, chunks, window):
            return inner.map(CrashOnce(fn), chunks, window)

    return Crashing()


def test_killed_worker_is_redone_once(tmp_path, ray_cluster):
    marker, log = tmp_path / "crashed", tmp_path / "tasks.log"
    backend = _crash_once_backend(RayBackend(), marker, log, at=7)
    res = generate("bridge", 12, tmp_path / "ray", seed=3, size=32, progress=False, chunksize=2, backend=backend)
    assert marker.exists()
    tasks = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    assert tasks.count((6, 7)) == 2  # it ran, its worker died, Ray ran it again
    assert sorted(set(tasks)) == [(i, i + 1) for i in range(0, 12, 2)]
    assert res["made"] == 12
    ids = [r["id"] for r in _records(tmp_path / "ray")]
    assert ids == [f"bridge_{i:06d}" for i in range(12)]  # none lost, none twice, in order
    generate("bridge", 12, tmp_path / "local", seed=3, size=32, progress=False, workers=1)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert not [p for p in (tmp_path / "ray").rglob("*.tmp")]


def _always_dies(x):  # pragma: no cover - runs in a Ray worker
    os._exit(1)


def _fails(x):  # pragma: no cover - runs in a Ray worker
    raise ValueError(f"bad item {x}")


def test_errors_reach_the_caller(ray_cluster):
    backend = RayBackend(max_retries=1)
    assert list(map_items(abs, [-1, 2, -3], backend=backend)) == [1, 2, 3]
    with pytest.raises(ValueError, match="bad item"):  # fn's own error: raised as is, not retried
        list(map_items(_fails, [1, 2], backend=backend))
    with pytest.raises(RuntimeError, match="died 2 times on one task.*re-run the same command"):
        list(map_items(_always_dies, [1], backend=backend))


def test_executor_arguments(monkeypatch, tmp_path, capsys):
    assert make_backend("local") is None
    with pytest.raises(SemgenError, match="--executor must be one of local, ray"):
        make_backend("dask")
    with pytest.raises(SemgenError, match="--ray-address needs --executor ray"):
        make_backend("local", address="10.0.0.1:6379")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    rc = main(["procedural", "--class", "bridge", "--n", "2", "--size", "32", "--out", str(tmp_path / "d"),
               "--executor", "ray", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().count("\n") == 0 and "semgen[ray]" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()
    # procedural takes its backend through backend_from_args, as every other command does
    rc = main(["procedural", "--class", "bridge", "--n", "2", "--size", "32", "--out", str(tmp_path / "d"),
               "--ray-address", "10.0.0.1:6379", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--ray-address needs --executor ray" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "d").exists()


# -- curate and import: the driver reads the files, the tasks decode and measure ----------------------

def _cli(monkeypatch, argv: list[str], modules=("semgen.curation.commands",)) -> int:
    """``semgen ARGV`` with only the command modules it needs (each module's imports cost start-up)."""
    import semgen.cli

    monkeypatch.setattr(semgen.cli, "COMMAND_MODULES", modules)
    return main(argv)


def _bytes_of(root: Path, names=("metadata.jsonl", "rejected.jsonl")) -> dict[str, bytes]:
    return {n: (root / n).read_bytes() for n in names}


def test_curate_on_ray_matches_local(tmp_path, ray_cluster, dataset, capsys, monkeypatch):  # noqa: F811
    ds, test = dataset  # test_curation_curate's inputs: duplicates, a leak, every kind of bad file
    cache = tmp_path / "c.sqlite"
    common = ["curate", str(ds.root), "--against", str(test.root), "--no-progress"]
    assert _cli(monkeypatch, common + ["--out", str(tmp_path / "local"), "--workers", "2", "--cache", str(cache)]) == 0
    # every analysis computed on Ray (no cache), then every one a cache hit looked up by the driver
    assert _cli(monkeypatch, common + ["--out", str(tmp_path / "ray"), "--executor", "ray", "--no-cache"]) == 0
    assert _cli(monkeypatch, common + ["--out", str(tmp_path / "ray_cached"), "--executor", "ray", "--cache", str(cache)]) == 0
    counts = [tuple(map(int, m)) for m in re.findall(r"\((\d+) analysed, (\d+) from cache\)", capsys.readouterr().out)]
    assert counts[0] == counts[1] and counts[0][0] > 10 and counts[2] == (0, counts[0][0])
    local = _bytes_of(tmp_path / "local")
    assert b"unreadable:truncated" in local["rejected.jsonl"] and b"leak:" in local["rejected.jsonl"]
    assert _bytes_of(tmp_path / "ray") == local
    assert _bytes_of(tmp_path / "ray_cached") == local
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def _image_folder(root: Path) -> Path:
    """18 readable images (plain gray PNGs, RGB PNGs, JPEGs) and 3 bad files, in 2 classes."""
    from PIL import Image

    (root / "bridges").mkdir(parents=True)
    (root / "Normal").mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):  # plain gray PNGs (linked), RGB PNGs and JPEGs (converted)
        gray = rng.integers(0, 255, (24, 24), dtype=np.uint8)
        Image.fromarray(gray).save(root / "bridges" / f"g{k}.png")
        Image.fromarray(np.dstack([gray, gray // 2, 255 - gray])).save(root / "Normal" / f"c{k}.png")
        Image.fromarray(np.dstack([gray] * 3)).save(root / "Normal" / f"j{k}.jpg", quality=90)
    (root / "Normal" / "zero.png").write_bytes(b"")
    (root / "Normal" / "notes.png").write_bytes(b"not an image")
    png = (root / "bridges" / "g0.png").read_bytes()
    (root / "bridges" / "truncated.png").write_bytes(png[: len(png) // 2])
    return root


def test_import_on_ray_matches_local(tmp_path, ray_cluster, monkeypatch):
    root = _image_folder(tmp_path / "folder")
    assert _cli(monkeypatch, ["import", str(root), "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    assert _cli(monkeypatch, ["import", str(root), "--out", str(tmp_path / "ray"), "--executor", "ray", "--no-progress"]) == 0
    local = _bytes_of(tmp_path / "local")
    assert local["metadata.jsonl"].count(b"\n") == 18 and local["rejected.jsonl"].count(b"\n") == 3
    assert _bytes_of(tmp_path / "ray") == local
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    # a local run killed after 7 records, resumed on Ray: the rest is added once, the same bytes
    lines = local["metadata.jsonl"].splitlines(keepends=True)
    (tmp_path / "ray" / "metadata.jsonl").write_bytes(b"".join(lines[:7]))
    assert _cli(monkeypatch, ["import", str(root), "--out", str(tmp_path / "ray"), "--executor", "ray", "--no-progress"]) == 0
    assert _bytes_of(tmp_path / "ray") == local
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def test_import_worker_killed_is_redone_once(tmp_path, ray_cluster):
    from semgen.curation.importer import import_imagefolder

    root = _image_folder(tmp_path / "folder")
    marker, log = tmp_path / "crashed", tmp_path / "tasks.log"
    backend = _crash_once_backend(RayBackend(), marker, log, at="c3.png",
                                  key=lambda chunk: [Path(job[0]).name for job in chunk])
    res = import_imagefolder(root, tmp_path / "ray", progress=False, backend=backend)
    tasks = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    assert marker.exists() and sum("c3.png" in t for t in tasks) == 2  # it ran, its worker died, it ran again
    assert res.added == 18 and len(res.rejected) == 3
    import_imagefolder(root, tmp_path / "local", progress=False)
    assert _bytes_of(tmp_path / "ray") == _bytes_of(tmp_path / "local")  # none lost, none twice, in order
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


# -- diffuse sample / refine: one batch per task, each worker loading the model once ---------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """test_diffusion_pipeline's tiny 32 px model, trained for a few steps (the bytes, not the looks, matter)."""
    from test_diffusion_pipeline import _cfg, _make_dataset

    from semgen.generators.diffusion.train import train

    root = tmp_path_factory.mktemp("diff")
    inputs = _make_dataset(root / "data", n=6)
    train(_cfg(inputs, root / "model", 4))
    return inputs, root / "model"


def test_diffuse_sample_and_refine_on_ray_match_local(tmp_path, ray_cluster, tiny_model, monkeypatch):
    inputs, model = tiny_model
    mods = ("semgen.generators.diffusion.commands",)
    sample = ["diffuse", "sample", "--model", str(model), "--class", "bridge", "--n", "5", "--steps", "2",
              "--batch", "2", "--device", "cpu", "--no-progress"]
    refine = ["diffuse", "refine", "--model", str(model), "--input", str(inputs), "--strength", "0.5", "--steps", "4",
              "--batch", "4", "--negative", "simulated", "--device", "cpu", "--no-progress"]
    for name, argv in (("sample", sample), ("refine", refine)):
        assert _cli(monkeypatch, argv + ["--out", str(tmp_path / f"{name}_local")], mods) == 0
        assert _cli(monkeypatch, argv + ["--out", str(tmp_path / f"{name}_ray"), "--executor", "ray"], mods) == 0
        local = _records(tmp_path / f"{name}_local")
        assert len(local) == (5 if name == "sample" else 6) and len({r["sha256"] for r in local}) == len(local)
        assert _bytes_of(tmp_path / f"{name}_ray", ["metadata.jsonl"]) == \
            _bytes_of(tmp_path / f"{name}_local", ["metadata.jsonl"])
        assert _files(tmp_path / f"{name}_ray") == _files(tmp_path / f"{name}_local")
    assert any(r.get("mask_file_name") for r in _records(tmp_path / "refine_ray"))  # masks copied by the driver
    # a killed sample run (3 of 5 records) resumed on Ray: the other two, once
    lines = (tmp_path / "sample_local" / "metadata.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "sample_ray" / "metadata.jsonl").write_bytes(b"".join(lines[:3]))
    assert _cli(monkeypatch, sample + ["--out", str(tmp_path / "sample_ray"), "--executor", "ray"], mods) == 0
    assert _files(tmp_path / "sample_ray") == _files(tmp_path / "sample_local")


def test_a_model_missing_on_a_worker_is_one_clear_error(tmp_path, tiny_model):
    from semgen.generators.diffusion.batches import RemoteBatch

    _, model = tiny_model
    task = RemoteBatch("sample", str(tmp_path / "elsewhere"), "0" * 16, "cpu", "auto", "ddim",
                       {"prompt": "x", "steps": 1, "guidance": 1.0})
    with pytest.raises(SemgenError, match="does not exist.*every node needs the model folder at the same path"):
        task({"seeds": [1]})
    task = RemoteBatch("sample", str(model), "0" * 16, "cpu", "auto", "ddim", {"prompt": "x", "steps": 1, "guidance": 1.0})
    with pytest.raises(SemgenError, match="other weights than on the machine that runs semgen"):
        task({"seeds": [1]})


# -- ablation cells: one task per cell, a cell after its init cell; evaluation stays here ---------

def _portable(out: Path) -> list[dict]:
    """results.jsonl with this run's dir written as OUT and the timings (which differ run to run) left out."""
    text = (out / "results.jsonl").read_text().replace(str(out), "OUT")
    drop = ("train_s", "train_cpu_s", "load_avg")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in text.splitlines()]


def test_ablation_cells_on_ray_match_local(tmp_path, ray_cluster, data):  # noqa: F811
    import test_ablation_runner as tar

    from semgen.ablation import run_ablation

    ray_cluster.cloudpickle.register_pickle_by_value(tar)  # the workers run its classifier double
    cfg = tar._cfg(data)  # real, synthetic, mix and pretrain arms: pretrain cells start from synthetic ones
    fake = tar.FakeClassifier()
    run_ablation(cfg, tmp_path / "local", train_fn=fake.train, eval_fn=fake.evaluate, log=lambda m: None)
    msgs: list[str] = []
    r = run_ablation(cfg, tmp_path / "ray", train_fn=fake.train, eval_fn=fake.evaluate, log=msgs.append,
                     backend=RayBackend())
    assert r["trained"] == 21 and all("/local/" in c["out"] for c in fake.cell_calls)  # none trained here
    assert sum(m.startswith("send ") for m in msgs) == 21  # every cell a Ray task, none in this process
    local = _portable(tmp_path / "local")
    assert len(local) == 21 and any(x["init_cell"] for x in local)
    assert _portable(tmp_path / "ray") == local
    for p in sorted((tmp_path / "local" / "cache" / "cells").rglob("best.pt")):
        q = tmp_path / "ray" / p.relative_to(tmp_path / "local")
        assert q.read_text().replace(str(tmp_path / "ray"), "OUT") == p.read_text().replace(str(tmp_path / "local"), "OUT")
    assert _files(tmp_path / "ray" / "predictions") == _files(tmp_path / "local" / "predictions")
    # resumed: a second Ray run finds every cell done and trains none
    r = run_ablation(cfg, tmp_path / "ray", train_fn=fake.train, eval_fn=fake.evaluate, log=lambda m: None,
                     backend=RayBackend())
    assert r["trained"] == 0 and _portable(tmp_path / "ray") == local
