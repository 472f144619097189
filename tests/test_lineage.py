"""semgen.classifier.lineage and `semgen info RUN`: the --init chain behind a model, and its
synthetic budget (samples seen against distinct scenes)."""

from __future__ import annotations

import json
import shutil

import pytest

from semgen.cli import main
from semgen.errors import SemgenError
from semgen.classifier.lineage import describe, lineage, synthetic_budget
from semgen.pretrain import PretrainConfig, pretrain

TINY = dict(arch="mobilenetv3_small_050", generators=["ler", "bridge"], size=32, batch_size=8, images=8, seed=3)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """scratch -> pretrain seed 3 -> pretrain seed 3 again -> pretrain seed 4 -> train on a tiny set
    (ft); and a second fine-tuning straight from the first pretraining run (ft2)."""
    from classifier_synth import make_dataset

    from semgen.classifier.train import train_classifier

    root = tmp_path_factory.mktemp("lineage")
    pretrain(root / "a", PretrainConfig(**TINY), workers=0, threads=1, progress=False)
    with pytest.warns(UserWarning, match="same scenes again"):
        pretrain(root / "b", PretrainConfig(**{**TINY, "init": str(root / "a")}), workers=0, threads=1,
                 progress=False)
    pretrain(root / "c", PretrainConfig(**{**TINY, "images": 16, "seed": 4, "init": str(root / "b")}),
             workers=0, threads=1, progress=False)
    data = make_dataset(root / "d", n_per_class=3, classes=("ler", "bridge"), side=32)
    for name, init, seed in (("ft", root / "c", 2), ("ft2", root / "a", 5)):
        train_classifier(data.root, root / name, init=init, size=32, epochs=1, batch_size=8,
                         min_epoch_images=8, progress=False, num_threads=1, seed=seed, val_fraction=0)
    return root


def test_the_chain_is_read_oldest_first_with_the_budget(chain):
    st = lineage(chain / "ft")
    assert [s["kind"] for s in st] == ["scratch", "pretrain", "pretrain", "pretrain", "train"]
    assert [s.get("seed") for s in st[1:]] == [3, 3, 4, 2]
    assert [s["images"] for s in st[1:4]] == [8, 8, 16] and st[4]["images"] == 6
    # the second seed-3 cycle repeats the first one's scenes; seed 4 is new
    assert synthetic_budget(st) == {"seen": 32, "distinct": 24, "cycles": 3}
    text = "\n".join(describe(st))
    assert text.count("the same scenes as an earlier cycle") == 1
    assert "32 seen, 24 distinct scenes, 3 pretraining cycles" in text


def test_a_retrained_init_is_flagged_and_a_deleted_one_ends_the_chain(chain, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(chain, root)
    # the copies still point at the module's runs by absolute path: repoint ft at the copy of c
    cfg = json.loads((root / "ft" / "config.json").read_text())
    cfg["init"]["checkpoint"] = cfg["init"]["file"] = str(root / "c" / "model.safetensors")
    (root / "ft" / "config.json").write_text(json.dumps(cfg))
    assert not any(s.get("init_changed") for s in lineage(root / "ft"))
    shutil.copy(root / "a" / "model.safetensors", root / "c" / "model.safetensors")  # "retrained in place"
    st = lineage(root / "ft")
    assert st[-1]["init_changed"] and "changed since it was trained" in describe(st)[-2]
    shutil.rmtree(root / "c")
    st = lineage(root / "ft")
    assert [s["kind"] for s in st] == ["missing", "train"] and st[0]["file"].endswith("model.safetensors")


def test_a_loop_and_a_non_run_are_one_line_errors(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for me, parent in ((a, b), (b, a)):
        me.mkdir()
        (me / "config.json").write_text(json.dumps(
            {"pretrain": {"seed": 0}, "images_seen": 8,
             "init": {"kind": "checkpoint", "file": str(parent / "model.safetensors")}}))
    with pytest.raises(SemgenError, match="chain loops"):
        lineage(a)
    with pytest.raises(SemgenError, match="not a semgen run dir"):
        lineage(tmp_path)


def test_mixed_in_dataset_dirs_count_only_the_streamed_share(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"pretrain": {"seed": 0, "data": ["d=1"], "data_fraction": 0.25, "batch_size": 64}, "images_seen": 6400,
         "init": {"kind": "imagenet"}}))
    st = lineage(tmp_path)
    assert [s["kind"] for s in st] == ["imagenet", "pretrain"]
    assert synthetic_budget(st) == {"seen": 4800, "distinct": 4800, "cycles": 1}


def test_semgen_info_prints_a_run_and_each_ensemble_member(chain, tmp_path, capsys):
    assert main(["info", str(chain / "c")]) == 0
    out = capsys.readouterr().out
    assert "3. pretrain" in out and "32 seen, 24 distinct scenes, 3 pretraining cycles" in out
    assert main(["info", str(chain / "ft"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc.values())[0]["synthetic"] == {"seen": 32, "distinct": 24, "cycles": 3}
    assert main(["ensemble", str(chain / "ft"), str(chain / "ft2"), "--out", str(tmp_path / "ens")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "ens")]) == 0
    out = capsys.readouterr().out
    assert out.count("synthetic samples:") == 2 and "8 seen, 8 distinct scenes, 1 pretraining cycle\n" in out


def test_the_scaling_bench_places_each_run_by_its_lineage(chain, tmp_path, capsys):
    from bench_scripts import load_bench

    mod = load_bench("scaling_curve")
    png = tmp_path / "curve.png"
    assert mod.main(["--test", str(chain / "d"), "--runs", str(chain / "ft"), str(chain / "ft2"),
                     "--n-boot", "50", "--plot", str(png)]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert [r.split(" | ")[:3] for r in rows] == [["| 8", "8", "1"], ["| 32", "24", "1"]]
    assert png.stat().st_size > 5000
    # the pretraining runs themselves, with no real image, beside the fine-tuned runs of their budget
    assert mod.main(["--test", str(chain / "d"), "--runs", str(chain / "ft"), "--synthetic-only", str(chain / "a"),
                     str(chain / "c"), "--n-boot", "50", "--plot", str(png)]) == 0
    rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert [r[:3] for r in rows] == [["| 8", "8", "0"], ["| 32", "24", "1"]]
    assert rows[0][3] == "-" and all(r[6].strip(" |")[0].isdigit() for r in rows)
    assert [(r[7], r[8].strip(" |")) for r in rows] == [("1", "a"), ("3", "c")]
    # two pretraining runs of one budget (8 samples, 1 cycle, new scenes) stay two rows, each with its own runs
    pretrain(tmp_path / "e", PretrainConfig(**{**TINY, "seed": 7}), workers=0, threads=1, progress=False)
    assert mod.main(["--test", str(chain / "d"), "--runs", str(chain / "ft2"), "--synthetic-only", str(chain / "a"),
                     str(tmp_path / "e"), "--n-boot", "50", "--plot", str(png)]) == 0
    rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert sorted((r[0], r[2], r[8].strip(" |")) for r in rows) == [("| 8", "0", "e"), ("| 8", "1", "a")]
    # joint runs (each seed its own pretraining, the runs the models): the seeds of a budget are one
    # point of their own series, with their ensemble
    from semgen.classifier.ensemble import make_ensemble

    make_ensemble([chain / "a", tmp_path / "e"], tmp_path / "ens_ae")
    assert mod.main(["--test", str(chain / "d"), "--runs", str(chain / "ft2"), "--joint", str(chain / "a"),
                     str(tmp_path / "e"), "--joint-ensembles", str(tmp_path / "ens_ae"), "--n-boot", "50",
                     "--plot", str(png)]) == 0
    rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and r[2].isdigit()]
    joint = [r for r in rows if r[8].strip(" |").startswith("joint")]
    assert len(joint) == 1 and joint[0][2] == "2" and joint[0][8].strip(" |") == "joint: a, e"
    assert joint[0][5].strip()[0].isdigit() and len(rows) == 2  # the ensemble's figure; the fine-tune's row
