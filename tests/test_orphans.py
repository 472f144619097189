"""After kill -9 of a pooled command's main process, its workers, forkserver and resource tracker
exit within seconds instead of idling forever with their memory (issue 14, item 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list child processes")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _descendants(pid: int) -> set[int]:
    kids, out, todo = _children(), set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    main = subprocess.Popen([sys.executable, "-m", "semgen.cli", "procedural", "--class", "clean", "--n", "100000",
                             "--size", "64", "--workers", "2", "--out", str(out), "--no-progress"],
                            cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    procs: set[int] = set()
    try:
        manifest = out / "metadata.jsonl"
        end = time.monotonic() + 90
        while time.monotonic() < end and not (manifest.exists() and manifest.stat().st_size > 2000):
            assert main.poll() is None, "semgen procedural exited early"
            time.sleep(0.2)
        procs = _descendants(main.pid)
        assert len(procs) >= 3, f"expected a forkserver and 2 workers under pid {main.pid}, found {procs}"
        main.send_signal(signal.SIGKILL)
        main.wait()
        end = time.monotonic() + 8
        while time.monotonic() < end and any(_alive(p) for p in procs):
            time.sleep(0.2)
        left = sorted(p for p in procs if _alive(p))
        assert not left, f"still running 8 s after kill -9 of their main process: {left}"
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
        for p in procs:  # only the processes this test started
            if _alive(p):
                os.kill(p, signal.SIGKILL)
