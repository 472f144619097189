"""bench/pretrain_finetune.py, the script behind docs/results.md's tables, runs end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_scripts import load_bench
from classifier_synth import make_dataset


def _bench():
    return load_bench("pretrain_finetune")


def test_seeds_and_their_ensemble_become_rows(tmp_path, capsys):
    make_dataset(tmp_path / "train", n_per_class=8, seed=0)
    make_dataset(tmp_path / "test", n_per_class=4, seed=1)
    argv = [str(a) for a in ("--real", tmp_path / "train", "--test", tmp_path / "test", "--out", tmp_path / "out",
                              "--init", "tiny=scratch@mobilenetv3_small_050", "--epochs", "1", "--size", "32",
                              "--threads", "1", "--val-fraction", "0", "--ensemble")]
    assert _bench().main(argv + ["--seeds", "0", "1"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1, "ens"] and {r["name"] for r in rows} == {"tiny"}
    ens = Path(rows[2]["run"])
    assert (ens / "ensemble.json").is_file() and (ens / "metrics.json").is_file()
    members = json.loads((ens / "ensemble.json").read_text())["members"]
    assert [Path(m["absolute"]).name for m in members] == ["tiny_all_s0", "tiny_all_s1"]
    assert " ens " in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an ensemble of one seed is refused by argparse
        _bench().main(argv + ["--seeds", "0"])
    assert "--ensemble needs 2 or more --seeds" in capsys.readouterr().err


def test_distilled_rows_name_their_teacher(tmp_path, capsys):
    make_dataset(tmp_path / "train", n_per_class=8, seed=0)
    make_dataset(tmp_path / "test", n_per_class=4, seed=1)
    make_dataset(tmp_path / "unlabelled", n_per_class=4, seed=2)
    common = [str(a) for a in ("--real", tmp_path / "train", "--test", tmp_path / "test", "--out", tmp_path / "out",
                                "--epochs", "1", "--size", "32", "--threads", "1", "--val-fraction", "0")]
    bench = _bench()
    assert bench.main(common + ["--init", "teacher=scratch@mobilenetv3_small_050"]) == 0
    teacher = tmp_path / "out" / "teacher_all_s0"
    argv = common + ["--init", "student=scratch@mobilenetv3_small_050", "--teacher", str(teacher),
                     "--transfer", f"{tmp_path / 'unlabelled'}=0.5"]
    assert bench.main(argv) == 0
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert "teachers" not in rows["teacher"]
    assert rows["student"]["teachers"] == [str(teacher)]
    req = json.loads((tmp_path / "out" / "student_all_s0" / "config.json").read_text())["request"]
    assert req["distill"]["teachers"][0]["path"].startswith(str(teacher.resolve()))
    log = [json.loads(x) for x in (tmp_path / "out" / "student_all_s0" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["transfer_images"] > 0 and log[-1]["soft_loss"] > 0
    capsys.readouterr()
    with pytest.raises(SystemExit):  # a transfer set needs a teacher to label it
        bench.main(common + ["--init", "x=scratch@mobilenetv3_small_050", "--transfer", str(tmp_path / "unlabelled")])
    assert "--transfer needs --teacher" in capsys.readouterr().err
