"""Progress of long work: tqdm on a terminal, timed plain lines in a log, nothing with --no-progress."""

import io

import pytest

from semgen import progress
from semgen.cli import main
from semgen.progress import LogProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_carry_count_eta_rate_and_postfix():
    f = io.StringIO()
    bar = LogProgress(total=10, initial=2, desc="train lite0", unit="epoch", every=0, file=f)
    bar.update(3)
    bar.set_postfix(loss="2.345", f1=0.5)
    bar.update(1)
    bar.close()
    lines = f.getvalue().splitlines()
    assert len(lines) == 2, lines  # one per update; close adds nothing new
    assert lines[0].startswith("train lite0:  50% 5/10 [") and "<" in lines[0]  # elapsed<ETA
    assert lines[1].startswith("train lite0:  60% 6/10") and lines[1].endswith("loss=2.345, f1=0.5]")


def test_close_writes_the_last_state_once():
    f = io.StringIO()
    bar = LogProgress(total=4, desc="gen", unit="img", every=0, file=f)
    bar.update(1)
    bar.every = 3600  # the next updates fall between two lines
    bar.update(3)
    bar.close()
    bar.close()
    lines = f.getvalue().splitlines()
    assert [ln.split("[")[0].strip() for ln in lines] == ["gen:  25% 1/4", "gen: 100% 4/4"]


def test_short_work_in_a_log_prints_nothing():
    f = io.StringIO()
    with LogProgress(range(5), desc="x", every=60, file=f) as bar:
        assert list(bar) == [0, 1, 2, 3, 4]
    assert f.getvalue() == ""


def test_iterating_counts_each_item_and_takes_len_as_total():
    f = io.StringIO()
    bar = LogProgress(range(3), desc="d", unit="img", every=0, file=f)
    assert list(bar) == [0, 1, 2] and bar.total == 3 and bar.n == 3
    assert f.getvalue().splitlines()[-1].startswith("d: 100% 3/3")


def test_progress_bar_picks_by_terminal_and_flag(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress_bar(total=3, desc="x"), LogProgress)
    off = progress_bar(total=3, desc="x", enabled=False)
    assert isinstance(off, tqdm) and off.disable
    monkeypatch.setattr("sys.stderr", _Terminal())
    on = progress_bar(total=3, desc="x")
    assert isinstance(on, tqdm) and not on.disable
    on.close()


@pytest.mark.parametrize("extra,expect", [([], True), (["--no-progress"], False)])
def test_a_logged_command_reports_progress_in_lines(tmp_path, monkeypatch, capsys, extra, expect):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # every update is a line
    rc = main(["procedural", "--class", "clean", "--size", "32", "--n", "3", "--seed", "1",
               "--out", str(tmp_path / "d"), *extra])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("procedural clean:")]
    assert bool(lines) == expect, err
    if expect:
        assert lines[-1].startswith("procedural clean: 100% 3/3") and "\r" not in err
