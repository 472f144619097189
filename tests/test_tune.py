"""``semgen tune`` with a tiny budget: runs, resumes after a kill, writes a valid profile (issue 12, item 2)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("optuna")

from semgen.generators.procedural.generation import generate  # noqa: E402
from semgen.generators.procedural.profile import load_profile  # noqa: E402
from semgen.imageio import sha256_file  # noqa: E402
from semgen.manifests import DatasetDir  # noqa: E402
from semgen.tune import reference_sha256, tune, work_dir  # noqa: E402


@pytest.fixture
def reference(tmp_path):
    """A tiny ImageFolder: 6 blurred-noise 'ler' images and 2 'via' ones (48 px)."""
    import cv2

    root = tmp_path / "ref"
    rng = np.random.default_rng(0)
    for cls, n in (("ler", 6), ("via", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            a = cv2.GaussianBlur(rng.normal(128, 40, (48, 48)), (0, 0), 1.5)
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


def _complete(db):
    import optuna

    st = optuna.load_study(study_name="ler", storage=f"sqlite:///{db}")
    return [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_tiny_tune_writes_a_valid_profile(reference, tmp_path):
    out = tmp_path / "p.yaml"
    rep = tune(reference, out, classes=["ler"], trials=2, n_images=4, size=32, objective="auc",
               log=open(os.devnull, "w"))
    prof = load_profile(out)  # validates the schema and every range against the generator
    assert list(prof["classes"]) == ["ler"]
    files = sorted(sha256_file(p) for p in reference.rglob("*.png"))
    assert prof["reference"]["sha256"] == reference_sha256(files) and prof["reference"]["files"] == files
    assert prof["reference"]["n_images"] == 8  # every reference image counts, tuned class or not
    r = rep["classes"]["ler"]
    assert r["trials"] == 2 and 0.0 <= r["before"] <= 1.0 and 0.0 <= r["after"] <= 1.0
    assert r["chosen"] in ("defaults", "trial 1") and "defaults" in r["selection"]
    if r["chosen"] == "defaults":  # kept: an empty entry, and the check set scores the same images twice
        assert prof["classes"]["ler"] == {} and r["after"] == r["before"]
    wd = work_dir(out)
    for f in ("report.md", "report.json", "sheet_before.png", "sheet_after.png", "optuna.db"):
        assert (wd / f).is_file(), f
    assert "| ler | 2 |" in (wd / "report.md").read_text()
    # the profile drives `semgen procedural` and is recorded
    generate("ler", 2, tmp_path / "gen", size=32, profile=prof, progress=False)
    assert all(rec["profile_sha256"] for rec in DatasetDir(tmp_path / "gen").records())


def test_tune_resumes_after_a_kill(reference, tmp_path):
    out = tmp_path / "p.yaml"
    cmd = [sys.executable, "-m", "semgen", "tune", "--reference", str(reference), "--out", str(out),
           "--classes", "ler", "--trials", "3", "--n", "4", "--size", "32", "--objective", "auc", "--no-sheets"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:
            if "trial 1/3" in line:
                proc.send_signal(signal.SIGKILL)  # mid-run: trial 2 may be half done
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    db = work_dir(out) / "optuna.db"
    first = _complete(db)
    assert len(first) == 1
    rep = tune(reference, out, classes=["ler"], trials=3, n_images=4, size=32, objective="auc", sheets=False,
               log=open(os.devnull, "w"))
    done = _complete(db)
    assert len(done) == 3 and rep["classes"]["ler"]["trials"] == 3
    assert done[0].params == first[0].params and done[0].value == first[0].value  # kept, not redone
    load_profile(out)
    # other settings on the same work dir: a one-line error, not a mixed study
    from semgen.errors import SemgenError

    with pytest.raises(SemgenError, match="other settings"):
        tune(reference, out, classes=["ler"], trials=3, n_images=5, size=32, objective="auc", sheets=False)


def test_tune_needs_reference_images_of_the_class(reference, tmp_path):
    from semgen.errors import SemgenError

    with pytest.raises(SemgenError, match="class bridge has 0 images"):
        tune(reference, tmp_path / "p.yaml", classes=["bridge"], trials=1, n_images=4, size=32, objective="auc",
             sheets=False)


def test_the_profile_is_chosen_on_fresh_images_not_on_the_search_value(monkeypatch):
    """The search's best value is the minimum of noisy estimates: the choice re-scores the defaults
    and the best trials on other images, and keeps the defaults when none beats them there."""
    from types import SimpleNamespace

    import optuna

    from semgen.generators.procedural.registry import create_generator
    from semgen.tune import search

    g = create_generator("ler")
    names = search.tuned_params(g)
    d = search.default_trial(g, names)

    def trial(number, value, sigma_hi=None, error=False):
        params = dict(d) if sigma_hi is None else {**d, "psf_sigma_px.hi": sigma_hi}
        return SimpleNamespace(number=number, value=value, params=params, state=optuna.trial.TrialState.COMPLETE,
                               user_attrs={"error": "x"} if error else {})

    # search values: trial 1 looks best, trial 4 errored; scores on the selection images differ
    study = SimpleNamespace(trials=[trial(0, 0.70), trial(1, 0.40, 0.95), trial(2, 0.45, 0.90),
                                    trial(3, 0.50, 0.85), trial(4, 0.10, 0.80, error=True)])
    fresh = {None: 0.60, 0.95: 0.66, 0.90: 0.55, 0.85: 0.58}

    def score(ranges, *, n, start, stage):
        assert (n, start, stage) == (20, 10, "select")
        hi = ranges.get("psf_sigma_px", {}).get("range", [None, None])[1] if ranges else None
        return fresh[None if hi is None else min(fresh.keys() - {None}, key=lambda k: abs(_hi(g, k) - hi))]

    def _hi(gen, u):
        return search.ranges_from({**d, "psf_sigma_px.hi": u}, gen, names)["psf_sigma_px"]["range"][1]

    chosen, scores = search.choose(study, g, names, score, n=20, start=10)
    assert chosen == 2 and scores == {"defaults": 0.60, "trial 1": 0.66, "trial 2": 0.55, "trial 3": 0.58}
    fresh.update({0.90: 0.61, 0.85: 0.62})
    assert search.choose(study, g, names, score, n=20, start=10)[0] is None  # the defaults stay


@pytest.fixture
def generated_reference(tmp_path):
    """A reference the generators made themselves: 8 bright ler and 8 dark via images (48 px)."""
    from semgen.generators.procedural.generation import generate_one
    from semgen.generators.procedural.registry import create_generator

    root = tmp_path / "genref"
    for cls, b in (("ler", [0.8, 0.9]), ("via", [-0.9, -0.8])):
        g = create_generator(cls).with_ranges({"brightness": {"range": b}}, where="test")
        (root / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(generate_one(g, 1000 + i, 48).image).save(root / cls / f"{i}.png")
    return root


class MeanGray:
    """An embedder with one feature, the mean grey level: what the probe can learn is known."""

    record = {"init": "mean-gray"}

    def __call__(self, images):
        return np.array([[float(np.mean(im))] for im in images])


def test_tstr_rewards_ranges_that_make_a_class_look_like_its_reference(generated_reference):
    """The probe is fitted on generated images only and scored on the reference: ler drawn bright
    (as the reference's ler) is recognised perfectly; drawn dark (as the reference's via), every
    real image is misclassified. The halves of the reference never overlap."""
    from semgen.generators.procedural.registry import create_generator
    from semgen.tune.objective import Reference
    from semgen.tune.tstr import TSTR

    ref = Reference(generated_reference, 48)
    t = TSTR(ref, {lb: create_generator(lb) for lb in ("via", "ler")}, MeanGray(), size=48, seed=0)
    assert t.labels == ["ler", "via"] and t.real_x.shape == (16, 1) and t._search.sum() == 8
    bright, dark = ({"brightness": {"range": r}} for r in ([0.8, 0.9], [-0.9, -0.8]))
    for stage, n_real in (("search", 8), ("select", 8), ("check", 16)):
        m = t.evaluate({"ler": bright}, n=8, start=0, stage=stage)
        assert m["n"] == n_real and m["macro_f1"] == 1.0, (stage, m)
    assert t("ler", bright, n=8, start=0, stage="check") == 0.0  # the objective: 1 - macro-F1
    assert t("ler", dark, n=8, start=0, stage="check") == 1.0
    d = t("ler", {}, n=8, start=8, stage="select")
    assert t("ler", {}, n=8, start=8, stage="select") == d  # deterministic; the defaults are cached
    assert ("ler", 8, 8, "{}") in t._cache
    # a search trial's own images are used once (not kept); the selection / check sets are
    t("ler", {"brightness": {"range": [0.1, 0.2]}}, n=8, start=16, stage="search")
    assert not any(k[:3] == ("ler", 16, 8) for k in t._cache)
    assert any(k[:3] == ("ler", 0, 8) and k[3] != "{}" for k in t._cache)


def test_the_joint_selection_keeps_only_ranges_that_raise_the_joint_figure():
    """Greedy, largest selection gain first: b alone lowers the joint macro-F1 and is dropped; a
    raises it and stays; c then adds a little on top of a and stays too."""
    from semgen.tune.search import joint_selection

    effect = {"a": 0.10, "b": -0.05, "c": 0.02}

    class Fake:
        calls = []

        def evaluate(self, ranges_by_label, *, n, start, stage):
            assert stage == "select" and (n, start) == (40, 5)
            self.calls.append(sorted(lb for lb, r in ranges_by_label.items() if r))
            return {"macro_f1": 0.5 + sum(effect[lb] for lb, r in ranges_by_label.items() if r)}

    tuned = {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}, "d": {}}
    kept, steps = joint_selection(Fake(), tuned, {"a": 0.05, "b": 0.09, "c": 0.01}, n=40, start=5)
    assert kept == {"a": {"x": 1}, "b": {}, "c": {"x": 3}, "d": {}}
    assert Fake.calls == [[], ["b"], ["a"], ["a", "c"]]
    assert [(st["class"], st["kept"]) for st in steps] == [(None, True), ("b", False), ("a", True), ("c", True)]
    assert steps[-1]["macro_f1"] == pytest.approx(0.62)


def test_tstr_tune_writes_a_profile_and_the_joint_figures(generated_reference, tmp_path):
    """A network embedder end to end (a scratch MobileNetV3 keeps it offline)."""
    out = tmp_path / "p.yaml"
    rep = tune(generated_reference, out, classes=["ler"], trials=2, n_images=4, size=48, objective="tstr",
               features="scratch", features_arch="mobilenetv3_small_050", sheets=False, log=open(os.devnull, "w"))
    prof = load_profile(out)
    assert list(prof["classes"]) == ["ler"] and prof["tune"]["objective"] == "tstr_macro_f1"
    assert prof["tune"]["probe_classes"] == ["ler", "via"]  # via takes part at its defaults
    r = rep["classes"]["ler"]
    assert 0.0 <= r["before"] <= 1.0 and 0.0 <= r["after"] <= 1.0 and "defaults" in r["selection"]
    j = rep["joint"]
    assert set(j) == {"before", "after"} and set(j["before"]["per_class"]) == {"ler", "via"}
    if r["chosen"] == "defaults" or "dropped" in r["chosen"]:
        assert j["after"] == j["before"] and r["after"] == r["before"] and not prof["classes"]["ler"]
    steps = rep["joint_selection"]
    assert steps[0]["class"] is None and [st["class"] for st in steps[1:]] == ([] if r["chosen"] == "defaults" else ["ler"])
    text = (work_dir(out) / "report.md").read_text()
    assert "Every class's profile at once" in text and "Joint selection" in text
    from semgen.errors import SemgenError

    with pytest.raises(SemgenError, match="other settings"):  # the objective is part of a study's settings
        tune(generated_reference, out, classes=["ler"], trials=2, n_images=4, size=48, objective="auc", sheets=False)


def test_bench_tstr_profiles_scores_whole_profiles(generated_reference, tmp_path, monkeypatch, capsys):
    """bench/tstr_profiles.py: the defaults and each profile, scored by the same probe."""
    from pathlib import Path

    from bench_scripts import load_bench
    from semgen.generators.procedural.profile import PROFILE_VERSION, dump_profile

    bench = load_bench("tstr_profiles")
    monkeypatch.setattr(bench, "Embedder", lambda *a, **k: MeanGray())
    paths = []
    for name, r in (("bright", [0.8, 0.9]), ("dark", [-0.9, -0.8])):
        paths.append(tmp_path / f"{name}.yaml")
        dump_profile({"version": PROFILE_VERSION, "classes": {"ler": {"brightness": {"range": r}}}}, paths[-1])
    assert bench.main(["--reference", str(generated_reference), "--profiles", *map(str, paths), "--n", "4",
                       "--sets", "2", "--size", "48", "--json", str(tmp_path / "rows.json")]) == 0
    rows = {Path(r["name"]).stem: r for r in json.loads((tmp_path / "rows.json").read_text())}
    assert set(rows) == {"defaults", "bright", "dark"} and "diff" not in rows["defaults"]
    assert rows["bright"]["per_set"] == [1.0, 1.0] and rows["dark"]["per_set"] == [0.0, 0.0]
    base = rows["defaults"]["per_set"]
    assert rows["dark"]["diff"]["mean"] == pytest.approx(-sum(base) / 2)  # paired on the same sets
    assert "| TSTR macro-F1 |" in capsys.readouterr().out


def test_a_corrupt_reference_image_is_a_one_line_error_that_names_it(reference, tmp_path, capsys):
    from semgen.cli import main

    (reference / "ler" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is not a PNG")
    out = tmp_path / "p.yaml"
    rc = main(["tune", "--reference", str(reference), "--out", str(out), "--classes", "ler", "--trials", "1",
               "--n", "4", "--size", "32", "--objective", "auc", "--no-sheets", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "9.png" in err[0] and "Traceback" not in err[0]
    assert not out.exists()  # nothing half-written
