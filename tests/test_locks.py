"""One semgen process per output dir (issue 14, item 3): a second one stops with the holder's pid,
a dead holder's lock is taken over, and two real runs at once leave a valid dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from semgen.errors import SemgenError
from semgen.manifests import DatasetDir, DirInUseError, lock_dir

HOLD = r"""
import sys, time
from semgen.manifests.lock import lock_dir
lock_dir(sys.argv[1]).__enter__()
print("locked", flush=True)
time.sleep(120)
"""


def _env():
    return dict(os.environ, OMP_WAIT_POLICY="PASSIVE",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def holder():
    """Start a process that holds the lock of a dir; yields a function dir -> Popen."""
    procs = []

    def start(d):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True, env=_env())
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _in_use(d, pid):
    return pytest.raises(DirInUseError, match=rf"^{d} is in use by another semgen process \(pid {pid}\)")


def test_every_writing_command_refuses_a_held_dir(tmp_path, holder):
    from semgen.classifier.train import train_classifier
    from semgen.curation.importer import import_imagefolder
    from semgen.generators.diffusion.refine import refine
    from semgen.generators.procedural.generation import generate

    data = tmp_path / "data"
    generate("clean", 2, data, size=32, progress=False)
    generate("bridge", 2, data, size=32, progress=False)
    folder = tmp_path / "folder" / "bridge"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes((data / "images" / "bridge" / "bridge_000000.png").read_bytes())

    held = tmp_path / "held"
    p = holder(held)
    before = sorted(os.listdir(held))
    with _in_use(held, p.pid):
        generate("clean", 2, held, size=32, progress=False)
    with _in_use(held, p.pid):
        import_imagefolder(tmp_path / "folder", held)
    with _in_use(held, p.pid):
        refine(input=data, out=held, pipe=object(), progress=False)
    with _in_use(held, p.pid):
        train_classifier(str(data), held, epochs=1, progress=False)
    from test_diffusion_pipeline import _cfg

    from semgen.curation.curate import curate
    from semgen.generators.diffusion.sample import sample
    from semgen.generators.diffusion.train import train
    with _in_use(held, p.pid):
        train(_cfg(data, held, 1))
    with _in_use(held, p.pid):
        sample(out=held, n=1, label="bridge", pipe=object(), progress=False)
    with _in_use(held, p.pid):
        curate(data, held, cache=False)
    assert sorted(os.listdir(held)) == before  # nothing written by the refused runs


def test_a_dead_holders_lock_is_taken_over(tmp_path, holder):
    from semgen.generators.procedural.generation import generate

    d = tmp_path / "out"
    p = holder(d)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert json.loads((d / ".semgen.lock.pid").read_text()) == p.pid  # left behind by the killed holder
    res = generate("clean", 3, d, size=32, progress=False)
    assert res["made"] == 3
    assert not (d / ".semgen.lock.pid").exists() and not (d / ".semgen.lock").exists()  # released cleanly
    with lock_dir(d), lock_dir(d):  # nested in one process: allowed
        pass


def test_lock_errors_are_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SemgenError, match="exists and is not a directory") as ei:
        with lock_dir(f):
            pass
    assert "\n" not in str(ei.value)


def test_two_procedural_runs_at_once_leave_a_valid_dir(tmp_path):
    d = tmp_path / "out"
    cmd = [sys.executable, "-m", "semgen.cli", "procedural", "--class", "clean", "--n", "40", "--size", "64",
           "--out", str(d), "--no-progress"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path) for _ in range(2)]
    time.sleep(0.01)
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for rc, err in results:
        # the loser stops at once with the holder's pid; a run that starts after the first ended resumes
        assert rc == 0 or (rc == 2 and "is in use by another semgen process (pid " in err
                           and len(err.strip().splitlines()) == 1), (rc, err)
    recs = DatasetDir.open(d).records()
    assert len(recs) == 40 and len({r["id"] for r in recs}) == 40
    r = subprocess.run([sys.executable, "-m", "semgen.cli", "validate", str(d)], capture_output=True, text=True,
                       env=_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_lock_dir_can_wait_for_the_holder(tmp_path, holder):
    """``wait=``: told once who holds the dir, gives up after the wait, takes it once the holder is gone."""
    d = tmp_path / "cell"
    p = holder(d)
    told = []
    with _in_use(d, p.pid):
        with lock_dir(d, wait=0.5, on_wait=told.append):
            pass
    assert told == [p.pid]
    p.kill()
    p.wait()
    with lock_dir(d, wait=30, on_wait=told.append):
        assert (d / ".semgen.lock").exists()
    assert told == [p.pid] and not (d / ".semgen.lock").exists()
