"""semgen recipe: pretrain, fine-tune seeds, ensemble, baseline, student, evaluate; resumed, refused, stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from classifier_synth import make_dataset
from semgen.errors import SemgenError
from semgen.generators.procedural.registry import list_generators
from semgen.recipe import RecipeConfig, run_recipe
from semgen.recipe.run import describe_recipe

# the sequential recipe (procedural-only pretraining, then fine-tuning), at a tiny scale; the joint
# default is SEQUENTIAL's opposite pair, tested in test_joint_*
SEQUENTIAL = dict(pretrain_real_fraction=0.0, finetune=True)
TINY = dict(arch="mobilenetv3_small_050", init="scratch", images=16, size=32, seeds=[0, 1], epochs=2,
            head_only_epochs=1, baseline=True, student="mobilenetv3_small_050", student_init="scratch",
            student_epochs=1, student_images=0, transfer=2, transfer_stream=False, qat=True, qat_epochs=1,
            **SEQUENTIAL)


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    make_dataset(root / "train", n_per_class=6, seed=0, side=32)
    make_dataset(root / "test", n_per_class=4, seed=1, side=32)
    return root


def _mtimes(folder):
    return {p: os.stat(p).st_mtime_ns for p in sorted(folder.rglob("model.safetensors"))}


def test_the_whole_recipe_stops_resumes_and_reports(pools, tmp_path, monkeypatch):
    cfg = RecipeConfig(real=pools / "train", **TINY)
    out = tmp_path / "r"
    kw = dict(workers=0, threads=1, progress=False)
    first = run_recipe(out, cfg, stop_after=1, **kw)  # 16 images at batch 64: one step, so this is its end...
    assert first["stages"]["pretrain"]["steps"] == 1
    cfg2 = RecipeConfig(real=pools / "train", **{**TINY, "images": 256})
    out2 = tmp_path / "r2"
    stopped = run_recipe(out2, cfg2, stop_after=1, **kw)  # ...here 4 steps: stopped after the first
    assert stopped["done"] is False and stopped["stages"]["pretrain"] == {
        "run": str(out2 / "pretrain"), "step": 1, "steps": 4, "done": False}
    assert not (out2 / "finetune_s0").exists()

    res = run_recipe(out, cfg, test=pools / "test", **kw)
    assert res["done"] and set(res["stages"]) == {"pretrain", "finetune", "baseline", "ensemble", "transfer",
                                                  "student", "edge", "evaluate"}
    assert list(res["models"]) == ["finetune seed 0", "finetune seed 1", "ensemble", "baseline seed 0",
                                   "baseline seed 1", "baseline ensemble", "student", "student, QAT",
                                   "student, INT8 file"]
    # the fine-tunes start from the pretraining run, the baseline from the init alone
    req = json.loads((out / "finetune_s1" / "config.json").read_text())["request"]
    assert req["init"].startswith(str((out / "pretrain").resolve())) and req["seed"] == 1 and req["val_fraction"] == 0
    assert json.loads((out / "baseline_s0" / "config.json").read_text())["request"]["init"] is None
    members = json.loads((out / "ensemble" / "ensemble.json").read_text())["members"]
    assert [m["path"] for m in members] == ["../finetune_s0", "../finetune_s1"]
    # the student learned from the ensemble, on the real pool and the transfer images
    sreq = json.loads((out / "student" / "config.json").read_text())["request"]
    assert sreq["distill"]["teachers"][0]["path"] == str((out / "ensemble" / "ensemble.json").resolve())
    assert sreq["distill"]["transfer"] == [f"{out / 'transfer'}=0.5"]
    records = (out / "transfer" / "metadata.jsonl").read_text().splitlines()
    assert len(records) == 2 * len(list_generators())
    log = [json.loads(x) for x in (out / "student" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["transfer_images"] > 0
    # the student's arch is the recipe's: it starts from the first fine-tuned run (--student-init scratch
    # is given here, so scratch); then QAT with the same teacher, exported with 8-bit activations
    assert sreq["init"] is None
    qreq = json.loads((out / "student_qat" / "config.json").read_text())["request"]
    assert qreq["init"].startswith(str((out / "student").resolve())) and qreq["qat"]["weight_bits"] == 7
    assert qreq["distill"] == sreq["distill"]
    ex = json.loads((out / "student_qat" / "export.json").read_text())
    assert ex["quantization"]["activations"].startswith("uint8") and (out / "student_qat" / "model.int8.onnx").is_file()
    # figures of every model, and the paired differences from the baseline
    fig = res["figures"][str(pools / "test")]
    for name in res["models"]:
        assert 0 <= fig[name]["macro_f1"] <= 1 and fig[name]["macro_f1_ci"][0] <= fig[name]["macro_f1_ci"][1]
    d = fig["ensemble minus baseline"]
    assert d["ci"][0] <= d["difference"] <= d["ci"][1]
    text = (out / "summary.md").read_text()
    assert "| ensemble |" in text and "finetune seeds minus baseline" in text and "Edge model" in text and "of its teacher's macro-F1" in text
    assert "| pretraining alone (no real image) |" in text  # what the procedural images teach by themselves
    assert "| student, INT8 file |" in text and (out / "student_qat" / "metrics_model.int8.json").is_file()
    assert "![macro-F1 of every model](summary.png)" in text
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # semgen info: what each stage has done
    info = subprocess.run([sys.executable, "-m", "semgen.cli", "info", str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert info.returncode == 0 and "pretrain: done (step 1 of 1)" in info.stdout
    assert "student: done" in info.stdout and "not done" not in info.stdout
    stopped_info = describe_recipe(out2)
    assert "  pretrain: not done (step 1 of 4)" in stopped_info and "  ensemble: not done" in "\n".join(stopped_info)

    # run again: every stage is found finished, nothing is trained or evaluated anew
    import semgen.classifier.evaluate as ev

    calls = []
    evaluate_run = ev.evaluate_run
    monkeypatch.setattr(ev, "evaluate_run", lambda run, *a, **k: calls.append(str(run)) or evaluate_run(run, *a, **k))
    before = _mtimes(out)
    again = run_recipe(out, cfg, test=pools / "test", **kw)
    assert _mtimes(out) == before and again["figures"] == res["figures"] and calls == []
    # another TTA is another evaluation of every model (the pretraining run too)
    run_recipe(out, cfg, test=pools / "test", tta="flips", **kw)
    assert len(calls) == len(res["models"]) + 1
    assert run_recipe(out, cfg, test=pools / "test", **kw)["figures"] == res["figures"]  # and back: kept
    assert len(calls) == len(res["models"]) + 1


def test_a_folder_of_another_recipe_is_refused(pools, tmp_path):
    out = tmp_path / "r"
    cfg = RecipeConfig(real=pools / "train", **{**TINY, "student": None, "qat": False, "baseline": False, "seeds": [0]})
    run_recipe(out, cfg, workers=0, threads=1, progress=False)
    assert not (out / "ensemble").exists() and not (out / "student").exists()
    other = RecipeConfig(real=pools / "train", **{**TINY, "student": None, "qat": False, "baseline": False, "seeds": [0],
                                                   "epochs": 3})
    with pytest.raises(SemgenError, match=r"other settings \(epochs differ\)"):
        run_recipe(out, other, workers=0, threads=1, progress=False)
    (out / "recipe.json").write_text("{not json")
    with pytest.raises(SemgenError, match="not valid JSON"):
        run_recipe(out, cfg, workers=0, threads=1, progress=False)


def test_a_finished_recipe_adds_a_student_without_redoing_its_runs(pools, tmp_path):
    """The same command with --student --qat --baseline on a recipe made without them runs only those
    stages; the runs it had are not touched. A folder with a student still refuses another one, or
    other student settings; and removing a stage it has is refused."""
    from semgen.recipe.run import Recipe

    out = tmp_path / "r"
    bare = {**TINY, "student": None, "qat": False, "baseline": False, "seeds": [0, 1]}
    run_recipe(out, RecipeConfig(real=pools / "train", **bare), workers=0, threads=1, progress=False)
    before = _mtimes(out)
    assert before and not (out / "student").exists()
    full = RecipeConfig(real=pools / "train", **TINY)
    res = run_recipe(out, full, workers=0, threads=1, progress=False)
    assert res["done"] and (out / "student_qat" / "model.int8.onnx").is_file() and (out / "baseline_s1").is_dir()
    after = _mtimes(out)
    assert {p: after[p] for p in before} == before  # pretraining, fine-tunes: the same files
    assert json.loads((out / "recipe.json").read_text())["config"]["student"] == TINY["student"]
    with pytest.raises(SemgenError, match=r"other settings \(student differ\)"):
        Recipe(out, RecipeConfig(real=pools / "train", **{**TINY, "student": "mobilenetv3_small_075"}))
    with pytest.raises(SemgenError, match=r"other settings \(student_epochs differ\)"):
        Recipe(out, RecipeConfig(real=pools / "train", **{**TINY, "student_epochs": 2}))
    with pytest.raises(SemgenError, match=r"other settings \(baseline differ\)"):
        Recipe(out, RecipeConfig(real=pools / "train", **{**TINY, "baseline": False}))


def test_bad_settings_fail_in_one_line_before_any_work(pools, tmp_path):
    with pytest.raises(SemgenError, match="--seeds must be different seeds, got"):
        RecipeConfig(real=pools / "train", seeds=[1, 1])
    with pytest.raises(SemgenError, match="--student must be one of"):
        RecipeConfig(real=pools / "train", student="resnet9000")
    with pytest.raises(SemgenError, match="--real .* is not a folder"):
        run_recipe(tmp_path / "r", RecipeConfig(real=tmp_path / "missing", **TINY), progress=False)
    with pytest.raises(SemgenError, match="--test .* is not a folder"):
        run_recipe(tmp_path / "r", RecipeConfig(real=pools / "train", **TINY), test=tmp_path / "nope", progress=False)
    assert not (tmp_path / "r").exists()  # nothing written
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    p = subprocess.run([sys.executable, "-m", "semgen.cli", "recipe", "--real", str(pools / "train"), "--out",
                        str(tmp_path / "c"), "--seeds", "2", "2"], capture_output=True, text=True, env=env)
    assert p.returncode != 0 and p.stderr.strip().count("\n") == 0 and "--seeds must be different seeds" in p.stderr
    assert not (tmp_path / "c").exists()


def test_the_student_of_a_narrower_arch_starts_from_the_fine_tuned_run(pools, tmp_path):
    from semgen.recipe.run import Recipe, _student_init

    cfg = RecipeConfig(real=pools / "train", arch="efficientnet_lite0", student="efficientnet_lite0_035",
                       student_images=0, **SEQUENTIAL)
    r = Recipe(tmp_path / "r", cfg)
    assert _student_init(r) == str(tmp_path / "r" / "finetune_s0")  # weight selection (session 23)
    joint = Recipe(tmp_path / "j", RecipeConfig(real=pools / "train", arch="efficientnet_lite0",
                                                student="efficientnet_lite0_035", student_images=0))
    assert _student_init(joint) == str(tmp_path / "j" / "pretrain_s0")  # the default: the first joint run
    other = Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", student="mobilenetv3_small_100"))
    assert _student_init(other) == "semgen"  # the bundled backbone
    with pytest.raises(SemgenError, match="--qat needs --student"):
        RecipeConfig(real=pools / "train", qat=True)


def test_the_student_can_learn_on_a_transfer_stream(pools, tmp_path):
    """``--transfer-stream``: no transfer folder; the student (and its QAT run) distil on
    ``stream:SEED+1``, the stream of the scenes the folder would have held first."""
    cfg = RecipeConfig(real=pools / "train", **{**TINY, "baseline": False, "seeds": [0], "transfer_stream": True})
    out = tmp_path / "r"
    res = run_recipe(out, cfg, workers=0, threads=1, progress=False)
    assert res["done"] and not (out / "transfer").exists()
    assert res["stages"]["transfer"] == {"stream": "stream:1=0.5"}
    for run in ("student", "student_qat"):
        conf = json.loads((out / run / "config.json").read_text())
        assert conf["request"]["distill"]["transfer"] == ["stream:1=0.5"]
        assert conf["distill"]["transfer_stream"]["seed"] == 1 and conf["distill"]["transfer_n"] == 0
    # a folder made with the transfer folder is another recipe
    with pytest.raises(SemgenError, match=r"transfer_stream differ"):
        run_recipe(out, RecipeConfig(real=pools / "train", **{**TINY, "baseline": False, "seeds": [0]}),
                   workers=0, threads=1, progress=False)
    with pytest.raises(SemgenError, match="--transfer-stream needs --student"):
        RecipeConfig(real=pools / "train", transfer_stream=True)


def test_the_real_pool_can_be_mixed_into_the_pretraining(pools, tmp_path):
    """``--pretrain-real-fraction F``: the pretraining run draws that share of each batch from --real."""
    base = {**TINY, "baseline": False, "seeds": [0], "student": None, "qat": False}
    cfg = RecipeConfig(real=pools / "train", **{**base, "pretrain_real_fraction": 0.25})
    out = tmp_path / "r"
    res = run_recipe(out, cfg, test=pools / "test", workers=0, threads=1, progress=False)
    assert res["done"]
    pt = json.loads((out / "pretrain" / "config.json").read_text())["pretrain"]
    assert pt["data"] == [f"{(pools / 'train').resolve()}=1"] and pt["data_fraction"] == 0.25
    assert "| pretraining alone (the real pool mixed in) |" in (out / "summary.md").read_text()
    # ... and scored on the pool's classes only (the stream's others dropped)
    m = json.loads((out / "pretrain" / "metrics.json").read_text())
    assert m["restricted_to"] == m["model_classes"] and set(m["model_classes"]) == {"bridge", "open", "particle"}
    # without it nothing is mixed in, and a folder of the other setting is another recipe
    with pytest.raises(SemgenError, match="pretrain_real_fraction differ"):
        run_recipe(out, RecipeConfig(real=pools / "train", **base), workers=0, threads=1, progress=False)
    with pytest.raises(SemgenError, match="pretrain_real_fraction"):
        RecipeConfig(real=pools / "train", pretrain_real_fraction=1.0)


def test_joint_pretraining_runs_of_each_seed_are_the_models_without_fine_tuning(pools, tmp_path):
    """``--no-finetune``: one pretraining run per seed, each mixing the real pool in, their ensemble, the
    baseline beside them, and a student distilled from the ensemble through its summed fine labels."""
    base = {**TINY, "qat": False, "transfer": 0, "student_epochs": 1}
    cfg = RecipeConfig(real=pools / "train", **{**base, "pretrain_real_fraction": 0.25, "finetune": False})
    out = tmp_path / "r"
    kw = dict(workers=0, threads=1, progress=False)
    res = run_recipe(out, cfg, test=pools / "test", **kw)
    assert res["done"] and set(res["stages"]) == {"pretrain", "baseline", "ensemble", "transfer", "student",
                                                  "evaluate"}
    assert list(res["models"]) == ["joint pretraining seed 0", "joint pretraining seed 1", "ensemble",
                                   "baseline seed 0", "baseline seed 1", "baseline ensemble", "student"]
    assert not any((out / n).exists() for n in ("pretrain", "finetune_s0", "finetune_s1"))
    # each seed is its own stream and its own real draws, the real pool mixed in
    for s in (0, 1):
        pt = json.loads((out / f"pretrain_s{s}" / "config.json").read_text())["pretrain"]
        assert pt["seed"] == s and pt["data_fraction"] == 0.25
    members = json.loads((out / "ensemble" / "ensemble.json").read_text())["members"]
    assert [m["path"] for m in members] == ["../pretrain_s0", "../pretrain_s1"]
    # every joint model is scored on the pool's classes (the stream's others dropped)
    pool = ["bridge", "open", "particle"]
    for name in ("pretrain_s0", "ensemble"):
        m = json.loads((out / name / "metrics.json").read_text())
        assert sorted(m["restricted_to"]) == pool
    # the student learnt the ensemble's fine labels summed per class, among its own classes
    t = json.loads((out / "student" / "config.json").read_text())["distill"]["teachers"][0]
    assert t["folded_from_fine_labels"] and t["restricted_to_student_classes"]
    text = (out / "summary.md").read_text()
    assert "| joint pretraining seed 1 |" in text and "no fine-tuning" in text and "pretraining alone" not in text
    assert "- joint pretraining seeds minus baseline:" in text and "- ensemble minus baseline:" in text
    assert "student: " in text and "of its teacher's macro-F1" in text
    assert f"semgen predict {out / 'ensemble'} IMAGE ... --classes {','.join(m['restricted_to'])}" in text
    info = describe_recipe(out)
    assert f"  {out / 'pretrain_s1'}: done (step 1 of 1)" in info and not any("not done" in x for x in info)
    # a stopped joint run is continued before the next seed starts
    cfg2 = RecipeConfig(real=pools / "train", **{**base, "images": 256, "student": None, "baseline": False,
                                                 "pretrain_real_fraction": 0.25, "finetune": False})
    stopped = run_recipe(tmp_path / "r2", cfg2, stop_after=1, **kw)
    assert not stopped["done"] and not (tmp_path / "r2" / "pretrain_s1").exists()
    assert stopped["stages"]["pretrain"]["runs"][str(tmp_path / "r2" / "pretrain_s0")]["step"] == 1
    with pytest.raises(SemgenError, match="needs --pretrain-real-fraction above 0.*--finetune --pretrain-real-fraction 0"):
        RecipeConfig(real=pools / "train", pretrain_real_fraction=0)


def test_the_student_pretrains_on_new_scenes_distilled_from_the_pretraining(pools, tmp_path):
    from semgen.recipe.run import Recipe, _student_init

    cfg = RecipeConfig(real=pools / "train", **{**TINY, "baseline": False, "seeds": [0], "qat": False,
                                                 "student_images": 16})
    out = tmp_path / "r"
    res = run_recipe(out, cfg, test=pools / "test", workers=0, threads=1, progress=False)
    assert res["done"] and res["stages"]["student_pretrain"]["done"]
    assert "| student pretraining alone (no real image) |" in (out / "summary.md").read_text()
    sp = json.loads((out / "student_pretrain" / "config.json").read_text())["pretrain"]
    assert sp["arch"] == "mobilenetv3_small_050" and sp["seed"] == cfg.seed + 1  # new scenes, not the teacher's
    assert sp["init"] is None and sp["images"] == 16  # --student-init scratch: its first stage starts there
    assert sp["teachers"] == [str(out / "pretrain")]
    # the student's distillation starts from its pretraining
    assert json.loads((out / "student" / "config.json").read_text())["request"]["init"].startswith(
        str((out / "student_pretrain").resolve()))
    assert any("student_pretrain: done" in x for x in describe_recipe(out))
    # by default a narrower arch of the recipe's takes the pretraining run's weights for it
    lite = RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", student_images=100, **SEQUENTIAL)
    assert _student_init(Recipe(tmp_path / "l", lite)) == str(tmp_path / "l" / "pretrain")
    with pytest.raises(SemgenError, match="--student-images needs --student"):
        RecipeConfig(real=pools / "train", student_images=100)


def test_a_student_pretrains_by_default_and_an_older_folder_keeps_what_it_did(pools, tmp_path):
    from semgen.recipe.run import RECIPE_FILE, STUDENT_IMAGES, Recipe

    assert RecipeConfig(real=pools / "train", student="efficientnet_lite0_035").student_images == STUDENT_IMAGES
    assert RecipeConfig(real=pools / "train").student_images == 0
    # a folder made before --student-images existed had no student pretraining: it is read so
    old = RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", student_images=0).to_dict()
    del old["student_images"]
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / RECIPE_FILE).write_text(json.dumps({"format": "semgen-recipe", "config": old, "stages": {}}))
    Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", student_images=0))
    assert not any(x.startswith("  student_pretrain:") for x in describe_recipe(tmp_path / "o"))
    with pytest.raises(SemgenError, match="student_images differ"):  # today's default would be another recipe
        Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", student="efficientnet_lite0_035"))


def test_fine_tuning_at_another_size_than_the_pretraining_and_the_student(pools, tmp_path):
    """--finetune-size: the fine-tunes and the baseline at 48 px, pretraining, transfer and student at 32."""
    from semgen.recipe.run import RECIPE_FILE, Recipe

    cfg = RecipeConfig(real=pools / "train", **{**TINY, "qat": False, "finetune_size": 48})
    out = tmp_path / "r"
    res = run_recipe(out, cfg, test=pools / "test", workers=0, threads=1, progress=False)
    assert res["done"]
    size = {run: json.loads((out / run / "config.json").read_text())["size"]
            for run in ("pretrain", "finetune_s0", "finetune_s1", "baseline_s1", "student")}
    assert size == {"pretrain": 32, "finetune_s0": 48, "finetune_s1": 48, "baseline_s1": 48, "student": 32}
    # the student (32 px) learnt from the 48 px ensemble, which saw its batches resized
    teacher = json.loads((out / "student" / "config.json").read_text())["request"]["distill"]["teachers"][0]
    assert teacher["path"] == str((out / "ensemble" / "ensemble.json").resolve())
    assert 0 <= res["figures"][str(pools / "test")]["ensemble"]["macro_f1"] <= 1
    assert "fine-tuned at 48 px" in describe_recipe(out)[0]
    # a folder made before the setting existed fine-tuned at its --size, and is read so
    old = RecipeConfig(real=pools / "train", **TINY).to_dict()
    del old["finetune_size"]
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / RECIPE_FILE).write_text(json.dumps({"format": "semgen-recipe", "config": old, "stages": {}}))
    Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", **TINY))
    assert RecipeConfig(real=pools / "train", **TINY).finetune_size == 32
    with pytest.raises(SemgenError, match="finetune_size differ"):
        Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", **{**TINY, "finetune_size": 48}))


def test_joint_pretraining_is_the_default_and_an_older_folder_keeps_what_it_did(pools, tmp_path):
    """The default recipe mixes the real pool into one pretraining run per seed (sessions 35-37); a
    folder made before the setting existed, or with the sequential default of before, keeps its recipe
    and is named as such when run with today's defaults."""
    from semgen.recipe.run import RECIPE_FILE, SEQUENTIAL_FLAGS, Recipe

    cfg = RecipeConfig(real=pools / "train")
    assert cfg.pretrain_real_fraction == 0.25 and cfg.finetune is False and cfg.seeds == (0, 1, 2)
    assert [p.name for p in Recipe(tmp_path / "d", cfg).pretrain_dirs()] == ["pretrain_s0", "pretrain_s1", "pretrain_s2"]
    # a folder from before the joint settings existed was the sequential recipe: read so
    old = RecipeConfig(real=pools / "train", **SEQUENTIAL).to_dict()
    del old["pretrain_real_fraction"], old["finetune"]
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / RECIPE_FILE).write_text(json.dumps({"format": "semgen-recipe", "config": old, "stages": {}}))
    assert Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", **SEQUENTIAL)).pretrain_dirs() == [
        tmp_path / "o" / "pretrain"]
    # today's defaults on it: refused, with the flags that continue it
    with pytest.raises(SemgenError, match=f"finetune, pretrain_real_fraction differ.*add {SEQUENTIAL_FLAGS}"):
        Recipe(tmp_path / "o", cfg)
    # the CLI: --finetune and --no-finetune, and the default
    from semgen.cli import build_parser

    parse = build_parser().parse_args
    a = parse(["recipe", "--real", "r", "--out", "o"])
    assert a.finetune is False and a.pretrain_real_fraction == 0.25
    a = parse(["recipe", "--real", "r", "--out", "o", "--finetune", "--pretrain-real-fraction", "0"])
    assert a.finetune is True and a.pretrain_real_fraction == 0


def test_the_default_student_pretrains_from_the_first_joint_run(pools, tmp_path):
    """With the joint default and ``--student``, the student's own pretraining (on by default) learns
    from the first joint run, and its distillation from the joint model, on the pool's classes."""
    cfg = RecipeConfig(real=pools / "train", arch="mobilenetv3_small_050", init="scratch", images=16, size=32,
                       seeds=[0], student="mobilenetv3_small_050", student_init="scratch", student_images=16,
                       student_epochs=1, transfer=2)
    out = tmp_path / "r"
    res = run_recipe(out, cfg, test=pools / "test", workers=0, threads=1, progress=False)
    assert res["done"] and set(res["stages"]) == {"pretrain", "student_pretrain", "transfer", "student", "evaluate"}
    sp = json.loads((out / "student_pretrain" / "config.json").read_text())["pretrain"]
    assert sp["teachers"] == [str(out / "pretrain_s0")] and sp["seed"] == 1
    t = json.loads((out / "student" / "config.json").read_text())["distill"]["teachers"][0]
    assert t["path"].startswith(str((out / "pretrain_s0").resolve())) and t["restricted_to_student_classes"]
    assert 0 <= res["figures"][str(pools / "test")]["student"]["macro_f1"] <= 1


def test_a_student_distils_75_epochs_on_the_stream_by_default_and_an_older_folder_says_what_to_add(pools, tmp_path):
    from semgen.recipe.run import RECIPE_FILE, STUDENT_EPOCHS, Recipe

    st = RecipeConfig(real=pools / "train", student="efficientnet_lite0_035")
    assert st.student_epochs == STUDENT_EPOCHS == 75 and st.transfer_stream is True
    assert RecipeConfig(real=pools / "train").transfer_stream is False  # no student, nothing to feed
    assert RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", transfer=0).transfer_stream is False
    assert RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", transfer_stream=False).transfer == 200
    # a folder whose student was the recipe's before session 41 (20 epochs on the transfer folder)
    old = RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", student_epochs=20,
                       transfer_stream=False).to_dict()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / RECIPE_FILE).write_text(json.dumps({"format": "semgen-recipe", "config": old, "stages": {}}))
    with pytest.raises(SemgenError, match=r"student_epochs, transfer_stream differ.*--student-epochs 20 --no-transfer-stream"):
        Recipe(tmp_path / "o", st)
    Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", student_epochs=20,
                                        transfer_stream=False))
    # a folder without a student is not another recipe for a student default that changed
    none = RecipeConfig(real=pools / "train", student_epochs=20).to_dict()
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / RECIPE_FILE).write_text(json.dumps({"format": "semgen-recipe", "config": none, "stages": {}}))
    Recipe(tmp_path / "n", RecipeConfig(real=pools / "train"))
    # nor for adding a student (test_a_finished_recipe_adds_a_student_without_redoing_its_runs)
    Recipe(tmp_path / "n", RecipeConfig(real=pools / "train", student="efficientnet_lite0_035"))


def test_the_student_can_learn_the_teachers_tta_prediction_and_an_older_folder_keeps_none(pools, tmp_path):
    """``--teacher-tta``: the student's distillation (and its QAT) averages the teacher over the views;
    a folder made before the setting (no key in its recipe.json) is the recipe with ``none``."""
    from semgen.recipe.run import RECIPE_FILE, Recipe

    cfg = RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", teacher_tta="flips")
    assert cfg.teacher_tta == "flips" and RecipeConfig(real=pools / "train").teacher_tta == "none"
    with pytest.raises(SemgenError, match="--tta must be one of"):
        RecipeConfig(real=pools / "train", student="efficientnet_lite0_035", teacher_tta="rot")
    old = RecipeConfig(real=pools / "train", student="efficientnet_lite0_035").to_dict()
    del old["teacher_tta"]
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / RECIPE_FILE).write_text(json.dumps({"format": "semgen-recipe", "config": old, "stages": {}}))
    Recipe(tmp_path / "o", RecipeConfig(real=pools / "train", student="efficientnet_lite0_035"))
    with pytest.raises(SemgenError, match=r"other settings \(teacher_tta differ\)"):
        Recipe(tmp_path / "o", cfg)
    # end to end at the tiny scale: the student's run records the views in its request
    out = tmp_path / "r"
    res = run_recipe(out, RecipeConfig(real=pools / "train", **{**TINY, "seeds": [0], "baseline": False,
                                                                "qat": False, "teacher_tta": "flips"}),
                     workers=0, threads=1, progress=False)
    assert res["done"]
    req = json.loads((out / "student" / "config.json").read_text())["request"]["distill"]
    assert req["teacher_tta"] == "flips"
