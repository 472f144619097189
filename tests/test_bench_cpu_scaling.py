"""bench/cpu_scaling.py: the same job in 1 and in N processes, and their ratio."""

from __future__ import annotations

import subprocess
import sys

from bench_scripts import BENCH, load_bench


def test_each_job_reports_a_positive_rate():
    bench = load_bench("cpu_scaling")
    assert bench._python_job(0.02) > 0 and bench._numpy_job(0.02) > 0 and bench._numpy_job(0.02, side=64) > 0


def test_prints_one_ratio_per_job():
    res = subprocess.run([sys.executable, str(BENCH / "cpu_scaling.py"), "--procs", "2", "--seconds", "0.05"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-1000:]
    lines = [ln for ln in res.stdout.splitlines() if "ratio" in ln]
    assert len(lines) == 3 and all("(ideal 2)" in ln for ln in lines)
