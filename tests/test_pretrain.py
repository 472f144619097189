"""semgen pretrain: targets from generator parameters, the stream, exact resume, fine-tuning from it."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from semgen.errors import SemgenError
from semgen.generators.procedural.generation import generate
from semgen.generators.procedural.registry import create_generator, list_generators
from semgen.imageio import read_gray
from semgen.manifests import DatasetDir
from semgen.pretrain import PretrainConfig, TargetSpace, fine_label_name, pretrain
from semgen.pretrain.stream import StreamJob
from semgen.seeding import rng_for

TINY = dict(arch="mobilenetv3_small_050", generators=["ler", "bridge"], size=32, batch_size=8, images=48, seed=3)


def test_every_sampled_fine_label_is_in_the_vocabulary():
    space = TargetSpace.build()
    assert len(space.fine_names) > 100 and len(set(space.fine_names)) == len(space.fine_names)
    assert set(space.coarse_of()) == {create_generator(g).label for g in list_generators()}
    for name in list_generators():
        gen = create_generator(name)
        for seed in range(40):
            p = gen.sample_params(rng_for(seed))
            fid, reg, mask = space.targets(gen, p)
            assert space.fine_names[fid] == fine_label_name(gen, p)
            assert space.fine_names[fid].split("/")[0] == gen.label
            assert ((reg >= 0) & (reg <= 1)).all() and mask.any()
            assert not reg[~mask].any()  # masked targets hold nothing
            for n in np.array(space.reg_names)[mask]:
                assert n in p  # only parameters the image has are targets


def test_fine_label_reads_the_parameters():
    gen = create_generator("bridge")
    p = gen.sample_params(rng_for(0), {"layout": "lines", "orientation": "vertical", "bridge_type": "micro"})
    name = fine_label_name(gen, p)
    assert name.startswith("bridge/lines/vertical/micro")
    assert fine_label_name(gen, p, labels="coarse") == "bridge"
    space = TargetSpace.build(["bridge"], labels="coarse")
    assert space.fine_names == ["bridge"] and space.targets(gen, p)[0] == 0


def test_stream_matches_procedural_records(tmp_path):
    """Streamed sample i is the record `semgen procedural` makes with the same seed, targets included."""
    space = TargetSpace.build(["ler", "bridge"])
    job = StreamJob(space, seed=5, size=48)
    out = tmp_path / "ds"
    for g in ("ler", "bridge"):
        generate(g, 3, out, seed=5, size=48, progress=False)
    recs = {(r["label"], r["index"]): r for r in DatasetDir(out).records()}
    batch = job((0, 6))  # ler 0, bridge 0, ler 1, bridge 1, ler 2, bridge 2
    for i in range(6):
        label = ("ler", "bridge")[i % 2]
        rec = recs[(label, i // 2)]
        np.testing.assert_array_equal(batch["images"][i], read_gray(out / rec["file_name"]))
        gen = create_generator(rec["generator"]["name"])
        fid, reg, mask = space.targets(gen, rec["params"])  # the record's params give the same targets
        assert fid == batch["fine"][i]
        np.testing.assert_array_equal(reg, batch["reg"][i])
        np.testing.assert_array_equal(mask, batch["reg_mask"][i])


def _weights(run):
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    cfg = PretrainConfig(**TINY)
    a = pretrain(tmp_path / "a", cfg, workers=0, threads=1, save_every=2, progress=False)
    assert a["done"] and a["step"] == 6
    b1 = pretrain(tmp_path / "b", cfg, workers=0, threads=1, save_every=2, stop_after=3, progress=False)
    assert not b1["done"] and b1["step"] == 3
    b2 = pretrain(tmp_path / "b", cfg, workers=0, threads=1, save_every=2, progress=False)
    assert b2["done"] and b2["step"] == 6
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # the log of the resumed run has every step once
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
    # state is data, not code: safetensors and JSON only
    files = {p.suffix for p in (tmp_path / "b").glob("state-*/*")}
    assert files <= {".safetensors", ".json"}


def test_worker_process_gives_the_same_run(tmp_path):
    cfg = PretrainConfig(**{**TINY, "images": 16})
    pretrain(tmp_path / "a", cfg, workers=0, threads=1, progress=False)
    pretrain(tmp_path / "b", cfg, workers=1, threads=1, progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_damaged_newest_state_falls_back_to_the_previous_one(tmp_path, capsys):
    cfg = PretrainConfig(**TINY)
    run = tmp_path / "r"
    pretrain(run, cfg, workers=0, threads=1, save_every=2, stop_after=4, progress=False)
    newest = run / (run / "LATEST").read_text().strip()
    (newest / "model.safetensors").write_bytes(b"\0" * 10)  # a kill during the write of a copy
    res = pretrain(run, cfg, workers=0, threads=1, save_every=2, progress=False)
    assert res["done"] and "unreadable" in capsys.readouterr().err


def test_other_settings_in_the_same_run_dir_are_refused(tmp_path):
    pretrain(tmp_path / "r", PretrainConfig(**TINY), workers=0, threads=1, stop_after=1, progress=False)
    with pytest.raises(SemgenError, match="other settings"):
        pretrain(tmp_path / "r", PretrainConfig(**{**TINY, "lr": 1e-3}), workers=0, threads=1, progress=False)


def test_a_generator_version_bump_is_not_resumed_across(tmp_path):
    """The stream depends on the generator versions: a run started on others is refused, not mixed."""
    import json

    run = tmp_path / "r"
    pretrain(run, PretrainConfig(**TINY), workers=0, threads=1, stop_after=1, progress=False)
    state = next(run.glob("state-*/state.json"))
    d = json.loads(state.read_text())
    assert d["generators"]["ler"].startswith("ler@")
    d["generators"]["ler"] = "ler@0"
    state.write_text(json.dumps(d))
    with pytest.raises(SemgenError, match=r"other generator versions \(ler@0 -> ler@\d+\)"):
        pretrain(run, PretrainConfig(**TINY), workers=0, threads=1, progress=False)


@pytest.mark.parametrize("field,value", [("size", 8), ("images", 0), ("lr", -1.0), ("labels", "x"),
                                         ("aux_weight", float("nan")), ("arch", "nope")])
def test_bad_settings_are_one_line_errors(field, value):
    with pytest.raises(SemgenError) as e:
        PretrainConfig(**{**TINY, field: value})
    assert "\n" not in str(e.value) and f"(PretrainConfig.{field})" in str(e.value)


def test_cli_error_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "semgen", "pretrain", "--out", str(tmp_path / "r"), "--size", "8"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--size" in r.stderr


def test_fine_tuning_starts_from_a_pretraining_run(tmp_path):
    from classifier_synth import make_dataset

    from semgen.classifier.checkpoint import read_checkpoint
    from semgen.classifier.train import train_classifier

    run = tmp_path / "pt"
    pretrain(run, PretrainConfig(**{**TINY, "images": 16}), workers=0, threads=1, progress=False)
    ck = read_checkpoint(run)
    assert ck["arch"] == TINY["arch"] and len(ck["classes"]) == len(TargetSpace.build(TINY["generators"]).fine_names)
    data = make_dataset(tmp_path / "d", n_per_class=6, side=32)
    s = train_classifier(data.root, tmp_path / "ft", init=run, size=32, epochs=1, batch_size=8,
                         min_epoch_images=16, progress=False, num_threads=1)
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert s["epochs_run"] == 1 and cfg["init"]


def test_bundle_drops_the_head_and_loads_as_an_init(tmp_path):
    from semgen.classifier.init import apply_init
    from semgen.classifier.models import create_model
    from semgen.pretrain.bundle import bundle_backbone

    run = tmp_path / "pt"
    pretrain(run, PretrainConfig(**{**TINY, "images": 8}), workers=0, threads=1, progress=False)
    cfg = json.loads((run / "config.json").read_text())
    cfg["pretrain"]["teachers"] = ["/home/someone/runs/teacher"]  # as a run made elsewhere records it
    (run / "config.json").write_text(json.dumps(cfg))
    folder = bundle_backbone(run, tmp_path / "bb", card="# card\n")
    shipped = json.loads((folder / "config.json").read_text())
    assert shipped["pretrain"]["teachers"] == ["runs/teacher"]
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    model = create_model(TINY["arch"], 9)
    assert not (set(state) & model.head_parameter_names())
    assert {v.dtype for k, v in state.items() if "num_batches" not in k} == {torch.float16}
    info = apply_init(model, folder)
    assert info["loaded"] == len(model.state_dict()) - len(model.head_parameter_names())
    full = _weights(run)
    k = next(k for k in state if k.endswith("conv_stem.weight"))
    torch.testing.assert_close(model.state_dict()[k], full[k], atol=1e-3, rtol=1e-3)


def test_bundled_backbones_load_and_fine_tune(tmp_path):
    """Every bundled backbone loads into its arch, and fine-tuning from it runs."""
    from classifier_synth import make_dataset

    from semgen.classifier.init import BACKBONES_DIR, apply_init, bundled_backbones
    from semgen.classifier.models import create_model
    from semgen.classifier.train import train_classifier

    archs = bundled_backbones()
    if not archs:
        pytest.skip("no backbone bundled in this checkout")
    for arch in archs:
        text = (BACKBONES_DIR / arch / "config.json").read_text()
        assert '"/' not in text, f"{arch}: the shipped config names a path of the machine that made it"
        info = apply_init(create_model(arch, 9), "semgen")
        assert info["kind"] == "semgen" and info["loaded"] > 50
    data = make_dataset(tmp_path / "d", n_per_class=4, side=32)
    s = train_classifier(data.root, tmp_path / "ft", init="semgen", arch=archs[0], size=32, epochs=1,
                         batch_size=8, min_epoch_images=8, progress=False, num_threads=1)
    assert s["epochs_run"] == 1


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """kill -9 in the middle of a run (after some states were saved), then the same command again."""
    import os
    import signal
    import time

    cfg = {**TINY, "images": 96}  # 12 steps
    args = ["--arch", cfg["arch"], "--generators", ",".join(cfg["generators"]), "--size", str(cfg["size"]),
            "--batch", str(cfg["batch_size"]), "--images", str(cfg["images"]), "--seed", str(cfg["seed"]),
            "--workers", "0", "--threads", "1", "--save-every", "1", "--no-progress"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    run = tmp_path / "k"
    p = subprocess.Popen([sys.executable, "-m", "semgen", "pretrain", "--out", str(run), *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 600
    while time.time() < deadline and not list(run.glob("state-00000000[3-9]")):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    states = sorted(x.name for x in run.glob("state-*"))
    assert states and states[-1] < "state-000000012", states  # killed before the end
    r = subprocess.run([sys.executable, "-m", "semgen", "pretrain", "--out", str(run), *args],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    pretrain(tmp_path / "u", PretrainConfig(**cfg), workers=0, threads=1, progress=False)
    wk, wu = _weights(run), _weights(tmp_path / "u")
    assert all(torch.equal(wk[k], wu[k]) for k in wu)


def test_dataset_dirs_mix_into_the_stream(tmp_path):
    from classifier_synth import make_dataset

    data = make_dataset(tmp_path / "d", n_per_class=4, classes=("bridge", "open"), side=32)
    cfg = PretrainConfig(**{**TINY, "generators": ["bridge", "open"], "images": 16, "data": [str(data.root)],
                            "data_fraction": 0.5})
    r = pretrain(tmp_path / "r", cfg, workers=0, threads=1, progress=False)
    assert r["done"] and np.isfinite(r["loss"])
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["pretrain"]["data"]
    assert saved == [f"{data.root.resolve()}=1"]
    bad = make_dataset(tmp_path / "b", n_per_class=2, classes=("particle",), side=32)
    with pytest.raises(SemgenError, match="no generator in the stream: particle"):
        pretrain(tmp_path / "x", PretrainConfig(**{**TINY, "data": [str(bad.root)]}), workers=0, threads=1,
                 progress=False)


def test_continuing_from_a_run_of_the_same_seed_warns_that_the_scenes_repeat(tmp_path, recwarn):
    from semgen.pretrain.train import SameStreamWarning

    first = tmp_path / "first"
    pretrain(first, PretrainConfig(**{**TINY, "images": 8}), workers=0, threads=1, progress=False)
    with pytest.warns(SameStreamWarning, match=r"same --seed 3: the first 8 samples are the same scenes again"):
        pretrain(tmp_path / "again", PretrainConfig(**{**TINY, "images": 8, "init": str(first)}),
                 workers=0, threads=1, progress=False)
    recwarn.clear()
    pretrain(tmp_path / "fresh", PretrainConfig(**{**TINY, "images": 8, "seed": 4, "init": str(first)}),
             workers=0, threads=1, progress=False)
    assert not [w for w in recwarn if issubclass(w.category, SameStreamWarning)]


def test_fold_to_classes_sums_each_class_fine_labels():
    from semgen.pretrain.labels import fold_to_classes

    names = TargetSpace.build(["ler", "bridge"]).fine_names
    p = np.random.default_rng(0).dirichlet(np.ones(len(names)), size=5)
    q, classes = fold_to_classes(p, names)
    assert classes == ["ler", "bridge"] and q.shape == (5, 2)
    np.testing.assert_allclose(q.sum(1), 1.0)
    np.testing.assert_allclose(q[:, 0], p[:, [n.startswith("ler/") for n in names]].sum(1))
    assert fold_to_classes(p[:, :2], ["clean", "via"])[1] == ["clean", "via"]  # plain classes fold onto themselves
    with pytest.raises(SemgenError, match="do not match"):
        fold_to_classes(p[:, :3], names)


def test_a_fine_label_run_is_evaluated_on_the_test_set_classes(tmp_path):
    """Synthetic-only accuracy: a pretraining run scores real-style class labels with no fine-tuning."""
    from classifier_synth import make_dataset

    from semgen.classifier.checkpoint import load_run
    from semgen.classifier.data import load_image_set
    from semgen.classifier.evaluate import evaluate_run
    from semgen.classifier.train import predict_probs
    from semgen.pretrain.labels import fold_to_classes

    run = tmp_path / "pt"
    pretrain(run, PretrainConfig(**{**TINY, "images": 16}), workers=0, threads=1, progress=False)
    data = make_dataset(tmp_path / "d", n_per_class=3, classes=("bridge", "ler", "open"), side=32)
    res = evaluate_run(run, data.root, n_boot=10, progress=False, num_threads=1)
    assert res["model_classes"] == ["ler", "bridge"] and res["classes"][:2] == ["ler", "bridge"]
    assert res["absent_from_model"] == {"open": 3}
    assert res["folded_from_fine_labels"] == len(TargetSpace.build(TINY["generators"]).fine_names)
    model, meta = load_run(run)
    s = load_image_set(data.root, size=32, classes=["ler", "bridge"], allow_unknown=True)
    want = fold_to_classes(predict_probs(model, s.images).numpy(), meta["classes"])[0].argmax(1)
    assert res["y_pred"] == want.tolist() and (run / "confusion.png").exists()
    # --classes: the task's classes only (the others' probabilities dropped); no test image is left out
    one = evaluate_run(run, data.root, n_boot=10, progress=False, num_threads=1, write=False, classes=["bridge"])
    assert one["model_classes"] == one["restricted_to"] == ["bridge"] and set(one["y_pred"]) == {0}
    assert one["absent_from_model"] == {"ler": 3, "open": 3} and len(one["y_true"]) == 9
    assert one["confidence"] == [1.0] * 9
    with pytest.raises(SemgenError, match="--classes must be distinct classes of the model"):
        evaluate_run(run, data.root, n_boot=10, progress=False, write=False, classes=["open"])


def test_predict_sums_a_fine_label_run_per_class_unless_asked_for_fine_labels(tmp_path):
    """`semgen predict` on a pretraining run names classes, as `semgen evaluate` scores it."""
    from classifier_synth import make_dataset

    from semgen.classifier.predict import Predictor, predict_files
    from semgen.pretrain.labels import fold_to_classes

    run = tmp_path / "pt"
    pretrain(run, PretrainConfig(**{**TINY, "images": 16}), workers=0, threads=1, progress=False)
    files = sorted(str(f) for f in make_dataset(tmp_path / "d", n_per_class=2, classes=("ler",), side=32).root.rglob("*.png"))
    pred, fine = Predictor(run), Predictor(run, fine=True)
    assert pred.classes == ["ler", "bridge"] and all("/" in c for c in fine.classes)
    imgs = torch.zeros((2, 32, 32), dtype=torch.uint8)
    imgs[1, ::4] = 255
    assert np.allclose(pred.probs(imgs), fold_to_classes(fine.probs(imgs), fine.classes)[0])
    res = predict_files(run, files, top_k=2)
    assert all(r["label"] in ("ler", "bridge") and len(r["top"]) == 2 for r in res)
    assert all("/" in r["label"] for r in predict_files(run, files, fine=True))
    # --classes: the task's classes only, as `semgen evaluate --classes` scores them
    task = Predictor(run, classes=["bridge"])
    assert task.classes == ["bridge"] and np.allclose(task.probs(imgs), 1.0)
    assert {r["label"] for r in predict_files(run, files, classes=["bridge"])} == {"bridge"}
    with pytest.raises(SemgenError, match="--classes must be distinct classes of the model"):
        Predictor(run, classes=["ler", "ler"])
    # the run exports as any run does (fine-label outputs); its ONNX file folds and restricts the same way
    from semgen.classifier.export import export_run

    export_run(run, calib=tmp_path / "d", latency_runs=2, threads=1, progress=False)
    onnx = Predictor(run / "model.onnx")
    assert onnx.classes == ["ler", "bridge"] and np.allclose(onnx.probs(imgs), pred.probs(imgs), atol=1e-4)
    assert {r["label"] for r in predict_files(run / "model.int8.onnx", files, classes=["bridge"])} == {"bridge"}


def test_pretraining_runs_make_an_ensemble_scored_on_the_task_classes(tmp_path):
    """Joint pretraining runs of several seeds predict as one model: their fine-label probabilities
    averaged, then summed per class and restricted to the pool's classes (`evaluate --classes`)."""
    from classifier_synth import make_dataset

    from semgen.classifier.data import load_image_set
    from semgen.classifier.ensemble import make_ensemble
    from semgen.classifier.evaluate import evaluate_run
    from semgen.classifier.predict import Predictor

    runs = [tmp_path / f"pt{s}" for s in (0, 1)]
    for s, run in enumerate(runs):
        pretrain(run, PretrainConfig(**{**TINY, "images": 16, "seed": s}), workers=0, threads=1, progress=False)
    doc = make_ensemble(runs, tmp_path / "ens")
    assert doc["classes"] == TargetSpace.build(TINY["generators"]).fine_names
    data = make_dataset(tmp_path / "d", n_per_class=3, classes=("bridge", "ler"), side=32)
    imgs = torch.zeros((2, 32, 32), dtype=torch.uint8)
    imgs[1, ::4] = 255
    members = [Predictor(run, classes=["bridge", "ler"]).probs(imgs) for run in runs]
    ens = Predictor(tmp_path / "ens", classes=["bridge", "ler"])
    assert ens.classes == ["ler", "bridge"]
    # folding is linear, so the ensemble's class probabilities are the members' mean
    np.testing.assert_allclose(ens.probs(imgs), np.mean(members, axis=0), atol=1e-5)
    res = evaluate_run(tmp_path / "ens", data.root, n_boot=10, progress=False, num_threads=1, write=False,
                       classes=["ler", "bridge"])
    assert res["restricted_to"] == ["ler", "bridge"] and len(res["y_true"]) == 6
    s = load_image_set(data.root, size=32, classes=["ler", "bridge"])
    assert res["y_pred"] == ens.probs(s.images).argmax(1).tolist()


PROFILE = ("version: 1\nclasses:\n  ler: {sigma_nm: {range: [5.0, 5.5]}}\n"
           "  bridge: {bridge_type: {choices: {micro: 1}}, bridge_width: {value: 2.0}}\n")


def test_a_profile_sets_the_stream_ranges_as_semgen_procedural_does(tmp_path):
    """With --profile, streamed sample i is still the record `semgen procedural --profile` makes;
    its targets are read against the generators' own ranges."""
    from semgen.generators.procedural.profile import load_profile

    (tmp_path / "p.yaml").write_text(PROFILE)
    cfg = PretrainConfig(**{**TINY, "profile": str(tmp_path / "p.yaml")})
    assert json.loads(cfg.profile)["classes"]["bridge"]["bridge_width"] == {"value": 2.0}
    space = TargetSpace.build(["ler", "bridge"])
    job = StreamJob(space, seed=5, size=48, profile=cfg.profile)
    out = tmp_path / "ds"
    for g in ("ler", "bridge"):
        generate(g, 4, out, seed=5, size=48, progress=False, profile=load_profile(tmp_path / "p.yaml"))
    recs = {(r["label"], r["index"]): r for r in DatasetDir(out).records()}
    batch = job((0, 8))
    for i in range(8):
        rec = recs[(("ler", "bridge")[i % 2], i // 2)]
        np.testing.assert_array_equal(batch["images"][i], read_gray(out / rec["file_name"]))
        fid, reg, _ = space.targets(create_generator(rec["generator"]["name"]), rec["params"])
        assert fid == batch["fine"][i]
        np.testing.assert_array_equal(reg, batch["reg"][i])
        if rec["label"] == "ler":
            assert 5.0 <= rec["params"]["sigma_nm"] <= 5.5
        else:
            assert rec["params"]["bridge_type"] == "micro" and rec["params"]["bridge_width"] == 2.0
    plain = StreamJob(space, seed=5, size=48)((0, 8))
    assert not np.array_equal(plain["images"], batch["images"])


def test_a_profile_is_recorded_and_keys_the_stream(tmp_path):
    from semgen.pretrain.stream import stream_key

    (tmp_path / "p.yaml").write_text(PROFILE)
    cfg = PretrainConfig(**{**TINY, "images": 8, "profile": str(tmp_path / "p.yaml")})
    run = tmp_path / "r"
    pretrain(run, cfg, workers=0, threads=1, stop_after=1, progress=False)
    (tmp_path / "p.yaml").write_text(PROFILE.replace("5.0, 5.5", "2.5, 3.0"))  # the file changes
    with pytest.raises(SemgenError, match="other settings"):
        pretrain(run, PretrainConfig(**{**cfg.to_dict(), "profile": str(tmp_path / "p.yaml")}), workers=0,
                 threads=1, progress=False)
    r = pretrain(run, PretrainConfig(**cfg.to_dict()), workers=0, threads=1, progress=False)  # its recorded JSON
    assert r["done"]
    rec = json.loads((run / "config.json").read_text())["pretrain"]
    assert rec["profile"] == cfg.profile and "profile" not in PretrainConfig(**TINY).to_dict()
    assert stream_key(rec) != stream_key(PretrainConfig(**TINY).to_dict())
    from semgen.classifier.lineage import describe, lineage

    assert ", profile " in describe(lineage(run))[-2]  # `semgen info RUN` names it
    with pytest.raises(SemgenError, match=r"--profile .*sigma_nm.*\(PretrainConfig.profile\)"):
        PretrainConfig(**{**TINY, "profile": json.dumps({"version": 1, "classes": {"ler": {"sigma_nm": {"range": [0, 99]}}}})})
    with pytest.raises(SemgenError, match="--profile"):
        PretrainConfig(**{**TINY, "profile": str(tmp_path / "missing.yaml")})


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A tiny pretraining run to distil from (the same fine labels as TINY)."""
    run = tmp_path_factory.mktemp("teacher") / "t"
    pretrain(run, PretrainConfig(**{**TINY, "seed": 11}), workers=0, threads=1, progress=False)
    return run


def _kl_to(teacher, student, x, t=4.0):
    from semgen.classifier.checkpoint import load_run

    tm, _ = load_run(teacher)
    sm, _ = load_run(student)
    with torch.no_grad():
        p = torch.log_softmax(tm(x) / t, 1)
        q = torch.log_softmax(sm(x) / t, 1)
    return float((p.exp() * (p - q)).sum(1).mean())


def test_a_teacher_pulls_the_student_towards_its_predictions(teacher_run, tmp_path):
    base = {**TINY, "images": 128, "aux_weight": 0, "label_smoothing": 0.0, "seed": 5}
    assert "teachers" not in PretrainConfig(**base).to_dict()  # runs without one keep their settings
    kd = PretrainConfig(**base, teachers=[teacher_run], distill_weight=1.0)
    assert kd.to_dict()["teachers"] == [str(teacher_run.resolve())]
    pretrain(tmp_path / "kd", kd, workers=0, threads=1, log_every=4, progress=False)
    pretrain(tmp_path / "ce", PretrainConfig(**base), workers=0, threads=1, progress=False)
    # images the runs never saw: samples past the end of the stream
    job = StreamJob(TargetSpace.build(TINY["generators"]), seed=5, size=32)
    x = torch.from_numpy(job((1000, 16))["images"]).unsqueeze(1).float() / 255
    assert _kl_to(teacher_run, tmp_path / "kd", x) < 0.5 * _kl_to(teacher_run, tmp_path / "ce", x)
    log = [json.loads(line) for line in (tmp_path / "kd" / "train_log.jsonl").read_text().splitlines()]
    assert all("loss_kd" in r for r in log) and log[-1]["loss_kd"] < log[0]["loss_kd"]
    from semgen.classifier.lineage import describe, lineage

    assert "distilled from" in "\n".join(describe(lineage(tmp_path / "kd")))


def test_a_distilled_run_resumes_exactly_and_refuses_a_retrained_teacher(teacher_run, tmp_path):
    import shutil

    t = tmp_path / "t"
    shutil.copytree(teacher_run, t)
    cfg = PretrainConfig(**TINY, teachers=[t])
    pretrain(tmp_path / "a", cfg, workers=0, threads=1, save_every=2, progress=False)
    pretrain(tmp_path / "b", cfg, workers=0, threads=1, save_every=2, stop_after=3, progress=False)
    pretrain(tmp_path / "b", cfg, workers=0, threads=1, save_every=2, progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    pretrain(tmp_path / "c", cfg, workers=0, threads=1, save_every=2, stop_after=3, progress=False)
    w = _weights(t)
    k = next(iter(w))
    w[k] = w[k] + 1
    from safetensors.torch import save_file

    save_file(w, str(t / "model.safetensors"))
    with pytest.raises(SemgenError, match="other settings"):
        pretrain(tmp_path / "c", cfg, workers=0, threads=1, progress=False)


def test_a_teacher_with_other_labels_or_no_run_is_a_one_line_error(teacher_run, tmp_path):
    with pytest.raises(SemgenError, match=r"--teacher .*: ") as e:
        PretrainConfig(**TINY, teachers=[tmp_path / "nope"])
    assert "\n" not in str(e.value)
    with pytest.raises(SemgenError, match=r"--teacher .* has \d+ classes \[.*\] but the student has") as e:
        pretrain(tmp_path / "r", PretrainConfig(**{**TINY, "generators": ["ler", "via"]}, teachers=[teacher_run]),
                 workers=0, threads=1, progress=False)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600


def test_a_pretraining_run_teaches_a_student_of_its_classes_or_some_of_them(teacher_run, tmp_path):
    """`semgen train --teacher PRETRAIN_RUN`: the teacher's fine labels summed per class (as evaluate
    folds them), among the student's classes only."""
    from classifier_synth import make_dataset

    from semgen.classifier import train_classifier
    from semgen.classifier.checkpoint import load_run
    from semgen.classifier.distill import DistillConfig, Teacher
    from semgen.pretrain.labels import fold_to_classes

    x = torch.from_numpy(StreamJob(TargetSpace.build(TINY["generators"]), seed=9, size=32)((0, 6))["images"])
    x = x.unsqueeze(1).float() / 255
    model, meta = load_run(teacher_run)
    with torch.no_grad():
        folded, classes = fold_to_classes(torch.softmax(model(x), 1).numpy(), meta["classes"])
    assert classes == ["ler", "bridge"]
    t = Teacher(teacher_run, ["bridge", "ler"])  # the student's order
    np.testing.assert_allclose(t.log_probs(x, 1.0).exp().numpy(), folded[:, ::-1], atol=1e-5)
    # some of its classes: renormalised among them (one class: certain)
    np.testing.assert_allclose(Teacher(teacher_run, ["ler"]).log_probs(x, 2.0).exp().numpy(), 1.0, atol=1e-6)
    # with a temperature, the folded log-probabilities are softened as a plain teacher's logits are
    soft = torch.softmax(torch.log(torch.from_numpy(folded[:, ::-1].copy())).float() / 4.0, 1)
    np.testing.assert_allclose(t.log_probs(x, 4.0).exp().numpy(), soft.numpy(), atol=1e-5)
    with pytest.raises(SemgenError, match=r"--teacher .* has classes \[ler, bridge\] but the student has classes "
                                          r"\[ler, via\]; distillation needs the teacher's classes or some of them"):
        Teacher(teacher_run, ["ler", "via"])
    data = make_dataset(tmp_path / "d", n_per_class=4, classes=("bridge", "ler"), side=32)
    train_classifier(data.root, tmp_path / "s", arch="mobilenetv3_small_050", size=32, epochs=1, batch_size=8,
                     num_threads=1, progress=False, distill=DistillConfig([teacher_run]))
    rec = json.loads((tmp_path / "s" / "config.json").read_text())["distill"]["teachers"][0]
    assert rec["folded_from_fine_labels"] and "restricted_to_student_classes" not in rec


def test_a_run_that_mixed_in_a_pool_predicts_among_its_classes_by_default(tmp_path):
    """A joint run records its real pool's classes (`task_classes`), and so does an ensemble of such
    runs: evaluate and predict choose among them with no --classes; 'all' brings the stream's back."""
    from classifier_synth import make_dataset

    from semgen.classifier.ensemble import make_ensemble
    from semgen.classifier.evaluate import evaluate_run
    from semgen.classifier.predict import Predictor

    pool = make_dataset(tmp_path / "pool", n_per_class=3, classes=("bridge", "ler"), side=32)
    gens = {**TINY, "generators": ["ler", "bridge", "open"], "images": 16, "data": [str(pool.root)],
            "data_fraction": 0.25}
    runs = [tmp_path / f"joint{s}" for s in (0, 1)]
    for s, run in enumerate(runs):
        pretrain(run, PretrainConfig(**{**gens, "seed": s}), workers=0, threads=1, progress=False)
        assert sorted(json.loads((run / "config.json").read_text())["task_classes"]) == ["bridge", "ler"]
    test = make_dataset(tmp_path / "test", n_per_class=2, classes=("bridge", "ler", "open"), side=32)
    for model in (runs[0], make_ensemble(runs, tmp_path / "ens") and tmp_path / "ens"):
        res = evaluate_run(model, test.root, n_boot=10, progress=False, num_threads=1, write=False)
        assert res["restricted_to"] == res["model_classes"] and sorted(res["model_classes"]) == ["bridge", "ler"]
        assert res["absent_from_model"] == {"open": 2}
        every = evaluate_run(model, test.root, n_boot=10, progress=False, num_threads=1, write=False,
                             classes=["all"])
        assert "restricted_to" not in every and sorted(every["model_classes"]) == ["bridge", "ler", "open"]
        assert sorted(Predictor(model).classes) == ["bridge", "ler"]
        assert sorted(Predictor(model, classes=["all"]).classes) == ["bridge", "ler", "open"]
        assert Predictor(model, classes=["ler"]).classes == ["ler"]
    assert sorted(json.loads((tmp_path / "ens" / "ensemble.json").read_text())["task_classes"]) == ["bridge", "ler"]
    # a run without a pool records none, and an ensemble with it records none: all classes, as before
    plain = tmp_path / "plain"
    pretrain(plain, PretrainConfig(**{**gens, "data": None}), workers=0, threads=1, progress=False)
    assert "task_classes" not in json.loads((plain / "config.json").read_text())
    assert "task_classes" not in make_ensemble([runs[0], plain], tmp_path / "mixed")
    assert sorted(Predictor(tmp_path / "mixed").classes) == ["bridge", "ler", "open"]
    # its ONNX files carry them too
    from semgen.classifier.export import export_run

    export_run(runs[0], calib=pool.root, latency_runs=2, threads=1, progress=False)
    for f in ("model.onnx", "model.int8.onnx"):
        assert sorted(Predictor(runs[0] / f).classes) == ["bridge", "ler"]
        assert sorted(Predictor(runs[0] / f, classes=["all"]).classes) == ["bridge", "ler", "open"]
        res = evaluate_run(runs[0] / f, test.root, n_boot=10, progress=False, num_threads=1, write=False)
        assert sorted(res["restricted_to"]) == ["bridge", "ler"] and res["absent_from_model"] == {"open": 2}


def test_the_thread_count_is_recorded_and_a_resume_with_another_warns(tmp_path):
    """On the CPU the thread count changes a step's last bits: the run records it, and a run that
    continues with another count says its weights will not be an uninterrupted run's bytes."""
    from semgen.pretrain.train import ThreadCountWarning

    cfg = PretrainConfig(**TINY)
    pretrain(tmp_path / "r", cfg, workers=0, threads=1, save_every=2, stop_after=2, progress=False)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["num_threads"] == 1
    with pytest.warns(ThreadCountWarning, match="ran with 1 torch threads and continues with 2"):
        pretrain(tmp_path / "r", cfg, workers=0, threads=2, save_every=2, stop_after=4, progress=False)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["num_threads"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadCountWarning)  # the same count again: no warning
        pretrain(tmp_path / "r", cfg, workers=0, threads=2, save_every=2, progress=False)
