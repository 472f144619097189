"""bench/bench_curation.py's ``steady``: the pool's rate from the difference of two counts, alone and beside an old checkout."""

from __future__ import annotations

import pytest
from bench_scripts import BENCH, load_bench


def test_steady_times_each_count_and_rates_the_last_two(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # its sibling _baseline, as when run as a script
    bench = load_bench("bench_curation")
    res = bench.steady((24, 4, 12), size=32, workers=1)  # any order: sorted before timing
    assert list(res["seconds"]) == [4, 12, 24]
    t12, t24 = res["seconds"][12], res["seconds"][24]
    if t24 > t12:
        assert res["steady_images_per_s"] == pytest.approx(12 / (t24 - t12))
    else:  # no rate rather than a division by zero
        assert res["steady_images_per_s"] is None
    out = capsys.readouterr().out
    assert "32x32, 24 PNGs" in out and "steady rate (12 -> 24 files)" in out


def test_steady_beside_a_baseline_runs_both_checkouts_on_the_same_files(capsys, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    bench = load_bench("bench_curation")
    monkeypatch.setattr(bench, "OUT", tmp_path / "bench")  # a fresh clone has no out/ yet
    # this checkout as its own baseline: both children must import semgen from it and time 2 counts
    res = bench.compare_steady(str(BENCH.parent), ns=(8, 4), size=32, workers=1, repeat=1)
    (old, new), = res["runs"]
    for side in (old, new):
        assert list(side["seconds"]) == ["4", "8"]  # through JSON
        assert side["end_to_end_images_per_s"] > 0
    assert "run 1: steady" in capsys.readouterr().out
