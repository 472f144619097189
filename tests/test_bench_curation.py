"""bench/bench_curation.py's ``steady``: the pool's rate from the difference of two counts."""

from __future__ import annotations

from bench_scripts import BENCH, load_bench


def test_steady_times_each_count_and_rates_the_last_two(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # its sibling _baseline, as when run as a script
    bench = load_bench("bench_curation")
    res = bench.steady((24, 4, 12), size=32, workers=1)  # any order: sorted before timing
    assert list(res["seconds"]) == [4, 12, 24]
    t12, t24 = res["seconds"][12], res["seconds"][24]
    if t24 > t12:
        assert res["steady_images_per_s"] == round(12 / (t24 - t12), 1)
    else:  # both under the 10 ms rounding: no rate rather than a division by zero
        assert res["steady_images_per_s"] is None
    out = capsys.readouterr().out
    assert "32x32, 24 PNGs" in out and "steady rate (12 -> 24 files)" in out
