"""bench/shift_probe.py: shifted copies of a test set, the same pixels for every model, one row each."""

from __future__ import annotations

import numpy as np
import pytest

from bench_scripts import load_bench
from classifier_synth import make_dataset
from semgen.imageio import read_gray


def test_shifts_are_fixed_transforms_in_range():
    b = load_bench("shift_probe")
    im = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    for s in b.SHIFTS:
        a = b.shift_image(im, s, seed=3)
        assert a.dtype == np.uint8 and a.shape == im.shape
        assert np.array_equal(a, b.shift_image(im, s, seed=3))  # seeded: the same bytes again
    assert not np.array_equal(b.shift_image(im, "noise12", 3), b.shift_image(im, "noise12", 4))
    assert b.shift_image(im, "contrast0.5", 0).std() < 0.6 * im.std()  # half the contrast
    assert b.shift_image(im, "blur", 0).std() < im.std()


def test_shift_probe_scores_each_model_on_each_shift(tmp_path, capsys):
    from semgen.classifier import train_classifier

    b = load_bench("shift_probe")
    make_dataset(tmp_path / "train", n_per_class=6, seed=0, side=32)
    make_dataset(tmp_path / "test", n_per_class=3, seed=1, side=32)
    train_classifier(tmp_path / "train", out=tmp_path / "run", arch="mobilenetv3_small_050", size=32, epochs=1,
                     val_fraction=0.0, num_threads=1, progress=False)
    work = tmp_path / "shifted"
    assert b.main(["--test", str(tmp_path / "test"), "--work", str(work), "--models", f"tiny={tmp_path / 'run'}",
                   "--shifts", "noise12", "lowres", "--threads", "1"]) == 0
    rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines() if r.startswith("| tiny")]
    assert len(rows) == 1 and len(rows[0]) == 6  # name, none, 2 shifts, mean, drop
    assert all(0 <= float(v.strip(" |")) <= 1 for v in rows[0][1:5])
    # the copies: class folders, one image per test image, made once
    copies = sorted((work / "noise12").rglob("*.png"))
    assert len(copies) == 3 * len({p.parent.name for p in copies}) and (work / "noise12" / ".complete").is_file()
    first = read_gray(copies[0])
    assert b.main(["--test", str(tmp_path / "test"), "--work", str(work), "--models", f"tiny={tmp_path / 'run'}",
                   "--shifts", "noise12", "--threads", "1"]) == 0
    assert np.array_equal(read_gray(copies[0]), first)
    with pytest.raises(SystemExit):
        b.main(["--test", str(tmp_path / "test"), "--work", str(work), "--models", "x=y", "--shifts", "nope"])
