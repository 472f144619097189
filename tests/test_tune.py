"""``semgen tune`` with a tiny budget: runs, resumes after a kill, writes a valid profile (issue 12, item 2)."""

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
    rep = tune(reference, out, classes=["ler"], trials=2, n_images=4, size=32, log=open(os.devnull, "w"))
    prof = load_profile(out)  # validates the schema and every range against the generator
    assert list(prof["classes"]) == ["ler"]
    files = sorted(sha256_file(p) for p in reference.rglob("*.png"))
    assert prof["reference"]["sha256"] == reference_sha256(files) and prof["reference"]["files"] == files
    assert prof["reference"]["n_images"] == 8  # every reference image counts, tuned class or not
    r = rep["classes"]["ler"]
    assert r["trials"] == 2 and 0.0 <= r["before_auc"] <= 1.0 and 0.0 <= r["after_auc"] <= 1.0
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
           "--classes", "ler", "--trials", "3", "--n", "4", "--size", "32", "--no-sheets"]
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
    rep = tune(reference, out, classes=["ler"], trials=3, n_images=4, size=32, sheets=False,
               log=open(os.devnull, "w"))
    done = _complete(db)
    assert len(done) == 3 and rep["classes"]["ler"]["trials"] == 3
    assert done[0].params == first[0].params and done[0].value == first[0].value  # kept, not redone
    load_profile(out)
    # other settings on the same work dir: a one-line error, not a mixed study
    from semgen.errors import SemgenError

    with pytest.raises(SemgenError, match="other settings"):
        tune(reference, out, classes=["ler"], trials=3, n_images=5, size=32, sheets=False)


def test_tune_needs_reference_images_of_the_class(reference, tmp_path):
    from semgen.errors import SemgenError

    with pytest.raises(SemgenError, match="class bridge has 0 images"):
        tune(reference, tmp_path / "p.yaml", classes=["bridge"], trials=1, n_images=4, size=32, sheets=False)
