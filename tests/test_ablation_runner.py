"""semgen ablate: matrix, k-shot subsets, caching / resume, report, CLI, and one real end-to-end run.

Most tests use a classifier test double with ``train_classifier`` / ``evaluate_run``'s signatures
(the runner mechanics do not need a trained network); ``test_real_classifier_end_to_end`` runs the
real classifier on tiny images.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from semgen.ablation import build_config, expand, load_pool, plan, run_ablation
from semgen.ablation.config import load_config
from semgen.ablation.stats import bootstrap, point_metrics
from semgen.errors import SemgenError
from semgen.imageio import encode_png, sha256_bytes
from semgen.manifests import DatasetDir
from semgen.taxonomy import CLASSES

def make_dataset(root: Path, counts: dict[str, int], *, source: str, seed: int, size: int = 24) -> Path:
    """A dataset dir of small images whose class is visible (stripes at a class-specific angle)."""
    ds = DatasetDir.create(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    with ds.appender() as app:
        for label, n in counts.items():
            angle = CLASSES.index(label) * np.pi / 5
            for i in range(n):
                phase = rng.uniform(0, 2 * np.pi)
                img = 128 + 90 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.9 + phase)
                img += rng.normal(0, 25 if source == "real" else 10, img.shape)
                data = encode_png(np.clip(img, 0, 255).astype(np.uint8))
                name = f"images/{label}/{source}_{i:03d}.png"
                ds.write_file(name, data)
                app.append({"file_name": name, "label": label, "source": source, "sha256": sha256_bytes(data),
                            "width": size, "height": size})
    ds.write_info(command="test")
    return root


def make_imagefolder(root: Path, counts: dict[str, int], *, seed: int, size: int = 24) -> Path:
    """The same kind of images as a plain ImageFolder tree (how the real SEM set is laid out)."""
    tmp = make_dataset(root.parent / (root.name + "_ds"), counts, source="real", seed=seed, size=size)
    for rec in DatasetDir.open(tmp).records():
        dst = root / rec["label"] / Path(rec["file_name"]).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((tmp / rec["file_name"]).read_bytes())
    return root


class FakeClassifier:
    """A test double with ``train_classifier`` / ``evaluate_run``'s signatures.

    "Training" records its inputs; "prediction" is right for a hash-chosen share of the images that
    grows with the number of training images, else it says the most frequent training class, so
    the numbers depend on the data, the seed and the init like a real model's would.
    """

    def __init__(self, fail_after: int | None = None):
        self.train_calls: list[dict] = []
        self.eval_calls: list[tuple[str, str, str]] = []  # (run dir, test dir, tta)
        self.fail_after = fail_after

    @property
    def cell_calls(self) -> list[dict]:
        """Trainings of matrix cells (the time-estimate probe trains in a temporary dir)."""
        return [c for c in self.train_calls if "/cells/" in c["out"]]

    def train(self, data, out, *, seed=0, init=None, progress=True, **hyper):
        if self.fail_after is not None and len(self.cell_calls) >= self.fail_after:
            raise KeyboardInterrupt("killed by the test")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)  # a killed cell's dir is given again: train continues it
        counts: Counter = Counter()
        files = []
        for path, weight in data:
            for rec in DatasetDir.open(path).records():
                counts[rec["label"]] += 1
                files.append(rec["sha256"])
        model = {"counts": dict(counts), "seed": seed, "init": str(init) if init else None, "hyper": hyper,
                 "files": sorted(files)}
        (out / "best.pt").write_text(json.dumps(model))
        self.train_calls.append({"data": [(str(p), w) for p, w in data], "seed": seed, "init": init, "out": str(out)})
        return {"run_dir": str(out), "best_epoch": 1, "best_val_macro_f1": 0.5, "epochs_run": 1,
                "images_per_s": 1000.0, "classes": sorted(counts)}

    def evaluate(self, run_dir, data, *, n_boot=1000, seed=0, write=True, tta="none", **kw):
        self.eval_calls.append((str(run_dir), str(data), tta))
        model = json.loads((Path(run_dir) / "best.pt").read_text())
        counts = model["counts"]
        classes = [c for c in CLASSES if c in counts]
        top = max(counts, key=lambda c: (counts[c], c))
        n = sum(counts.values()) + (40 if model["init"] else 0)
        skill = n / (n + 30)
        files, y_true, y_pred = [], [], []
        root = Path(data)
        recs = DatasetDir.open(root).records()
        all_classes = classes + [c for c in CLASSES if c in {r["label"] for r in recs} and c not in classes]
        for rec in recs:
            # TTA gives other predictions (without it, the hash it always had)
            salt = "" if tta == "none" else f"|{tta}"
            h = hashlib.sha256(f"{rec['sha256']}|{model['seed']}|{n}{salt}".encode()).digest()[0] / 255
            pred = rec["label"] if (h < skill and rec["label"] in counts) else top
            files.append(str(root / rec["file_name"]))
            y_true.append(all_classes.index(rec["label"]))
            y_pred.append(all_classes.index(pred))
        return {"files": files, "y_true": y_true, "y_pred": y_pred, "classes": all_classes,
                "accuracy": float(np.mean(np.array(y_true) == np.array(y_pred)))}


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("abl")
    return {
        # the real pool as a plain ImageFolder (like sem-real/train), test sets as dataset dirs
        "real": make_imagefolder(root / "real", {"clean": 7, "bridge": 6, "open": 5}, seed=1),
        "test": make_dataset(root / "test", {"clean": 8, "bridge": 8, "open": 8}, source="real", seed=2),
        "test2": make_dataset(root / "test2", {"clean": 4, "bridge": 4, "open": 4}, source="real", seed=4),
        "syn": make_dataset(root / "syn", {"bridge": 9, "open": 9}, source="procedural", seed=3),
    }


def _cfg(data, **over):
    raw = {"real": str(data["real"]), "test": {"t": str(data["test"])},
           "synthetic": {"proc": {"path": str(data["syn"]), "amount": 4}}, "shots": [2, "all"], "seeds": 3,
           "bootstrap": {"n": 300}}
    raw.update(over)
    return build_config(raw)


def _lines(out):
    return [json.loads(x) for x in (Path(out) / "results.jsonl").read_text().splitlines()]


# -- the matrix ---------------------------------------------------------------------------------
def test_matrix_expands_as_configured(data, tmp_path):
    cfg = _cfg(data)
    assert [a.name for a in cfg.arms] == ["real", "synthetic[proc]", "mix[proc,0.5]", "pretrain[proc]"]
    specs = expand(cfg)
    n = Counter((s.arm.kind, s.shots) for s in specs)
    # synthetic-only: once per seed (no real images); the others: per shots level and seed
    assert n == {("synthetic", None): 3, ("real", 2): 3, ("real", None): 3, ("mix", 2): 3, ("mix", None): 3,
                 ("pretrain", 2): 3, ("pretrain", None): 3}
    cells = plan(cfg, load_pool(cfg.real), {"proc": load_pool(data["syn"])}, tmp_path)
    assert len(cells) == 21 and len({c.key for c in cells}) == 21
    for c in cells:
        if c.spec.arm.kind == "pretrain":
            assert c.init.spec.arm.kind == "synthetic" and c.init.spec.seed == c.spec.seed
            assert c.hyper["head_only_epochs"] == 2  # the fine-tune settings apply to this stage only
        if c.spec.arm.kind == "mix":
            assert [(p.role, p.weight) for p in c.parts] == [("real", 0.5), ("synthetic", 0.5)]
        if c.spec.arm.kind == "synthetic":
            assert c.parts[0].class_counts == {"bridge": 4, "open": 4}  # amount per class
    # without a synthetic-only arm, pretraining still trains (and shares) one synthetic model per seed
    cfg2 = _cfg(data, arms=["real", "pretrain:proc"], shots=[2])
    cells2 = plan(cfg2, load_pool(cfg2.real), {"proc": load_pool(data["syn"])}, tmp_path)
    assert len(cells2) == 9 and sum(bool(c.config.get("implied")) for c in cells2) == 3
    assert {c.key for c in cells2 if c.config.get("implied")} <= {c.key for c in cells}


def test_kshot_subsets_identical_across_arms_and_nested(data, tmp_path):
    cfg = _cfg(data, shots=[2, 4, "all"])
    real = load_pool(cfg.real)
    cells = plan(cfg, real, {"proc": load_pool(data["syn"])}, tmp_path)
    by = defaultdict(set)
    files = {}
    for c in cells:
        for p in c.parts:
            if p.role == "real":
                by[(c.spec.shots, c.spec.seed)].add(p.key)
                files[(c.spec.shots, c.spec.seed)] = {r["sha256"] for r in DatasetDir.open(p.dir).records()}
    assert len(by) == 9 and all(len(v) == 1 for v in by.values())  # real, mix and pretrain share each subset
    for seed in cfg.seeds:
        assert files[(2, seed)] < files[(4, seed)] < files[(None, seed)]  # nested
        counts = Counter(r["label"] for r in DatasetDir.open(
            next(p.dir for c in cells for p in c.parts if p.role == "real" and c.spec.shots == 4
                 and c.spec.seed == seed)).records())
        assert counts == {"clean": 4, "bridge": 4, "open": 4}
    assert files[(2, 0)] != files[(2, 1)]  # the seed draws another subset
    # the subset depends on the images, not on the pool's layout: the same images as a dataset dir
    as_dir = load_pool(data["real"].parent / (data["real"].name + "_ds"))
    cells_b = plan(cfg, as_dir, {"proc": load_pool(data["syn"])}, tmp_path / "b")
    assert [c.key for c in cells_b] == [c.key for c in cells]


# -- running, caching, resuming -----------------------------------------------------------------
def test_killed_run_resumes_without_retraining(data, tmp_path):
    cfg = _cfg(data)
    ref = FakeClassifier()
    run_ablation(cfg, tmp_path / "ref", train_fn=ref.train, eval_fn=ref.evaluate, log=lambda m: None)
    assert len(ref.cell_calls) == 21

    killed = FakeClassifier(fail_after=8)
    with pytest.raises(KeyboardInterrupt):
        run_ablation(cfg, tmp_path / "out", train_fn=killed.train, eval_fn=killed.evaluate, log=lambda m: None)
    assert len(killed.cell_calls) == 8
    # the killed run left results for the cells it finished
    assert 0 < len(_lines(tmp_path / "out")) < 21

    again = FakeClassifier()
    r = run_ablation(cfg, tmp_path / "out", train_fn=again.train, eval_fn=again.evaluate, log=lambda m: None)
    assert len(again.cell_calls) == 21 - 8 == r["trained"]
    assert not ({c["out"] for c in again.cell_calls} & {c["out"] for c in killed.cell_calls})
    strip = lambda ls: [(x["cell"], x["test"]["t"]["macro_f1"], x["test"]["t"]["accuracy"]) for x in ls]  # noqa: E731
    assert strip(_lines(tmp_path / "out")) == strip(_lines(tmp_path / "ref"))

    # nothing left to do: a third run trains nothing and rewrites the same report
    third = FakeClassifier()
    summary = (tmp_path / "out" / "summary.md").read_text()
    run_ablation(cfg, tmp_path / "out", train_fn=third.train, eval_fn=third.evaluate, log=lambda m: None)
    assert third.train_calls == [] and (tmp_path / "out" / "summary.md").read_text() == summary

    # a widened matrix (one more seed, one more shots level, a second test set) reuses every done cell
    wide = _cfg(data, seeds=4, shots=[2, 3, "all"], test={"t": str(data["test"]), "t2": str(data["test2"])})
    fourth = FakeClassifier()
    r = run_ablation(wide, tmp_path / "out", train_fn=fourth.train, eval_fn=fourth.evaluate, log=lambda m: None)
    # new: seed 3 (1 synthetic + 2 levels x 3 arms) + shots 3 for 4 seeds x 3 arms
    assert len(fourth.cell_calls) == r["trained"] == 7 + 12
    assert len(_lines(tmp_path / "out")) == 4 + 3 * 3 * 4
    assert all(set(x["test"]) == {"t", "t2"} for x in _lines(tmp_path / "out"))


def test_half_written_cell_is_trained_again(data, tmp_path):
    cfg = _cfg(data, arms=["real"], shots=[2])

    class Crashing(FakeClassifier):
        def train(self, d, out, **kw):
            Path(out).mkdir(parents=True)
            (Path(out) / "last.pt").write_text("half")
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        run_ablation(cfg, tmp_path / "o", train_fn=Crashing().train, eval_fn=None, log=lambda m: None)
    fc = FakeClassifier()
    r = run_ablation(cfg, tmp_path / "o", train_fn=fc.train, eval_fn=fc.evaluate, log=lambda m: None)
    assert r["trained"] == 3 and len(_lines(tmp_path / "o")) == 3


# A run that trains its one cell until the file RELEASE appears, and fails if its run dir is gone by
# then (another run deleted it): the first user of a shared cache, in its own process.
HOLDER = r"""
import json, sys, time
from pathlib import Path
from test_ablation_runner import FakeClassifier
from semgen.ablation import build_config, run_ablation

raw, out, signals = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
fc = FakeClassifier()

def train(data, run_dir, **kw):
    summary = fc.train(data, run_dir, **kw)
    if "/cells/" in str(run_dir):  # not the time-estimate probe
        with open(signals / "first-trained", "a") as f:
            f.write(str(Path(run_dir).parent.name) + "\n")
        (signals / "started").write_text("")
        end = time.monotonic() + 120
        while not (signals / "release").exists() and time.monotonic() < end:
            time.sleep(0.05)
        if not (Path(run_dir) / "best.pt").exists():
            raise SystemExit("my run dir was deleted by the other run")
    return summary

run_ablation(build_config(raw), out, train_fn=train, eval_fn=fc.evaluate, log=lambda m: None)
print("done", flush=True)
"""


def test_two_runs_share_a_cache_cell_by_cell(data, tmp_path):
    """Two ablate runs on one shared cache (issue 15): the second waits for the cell the first is
    training, then reuses it; neither deletes the other's run dir, and every cell is trained once."""
    import subprocess
    import sys

    from conftest import REPO

    raw = {"real": str(data["real"]), "test": {"t": str(data["test"])}, "arms": ["real"], "shots": ["all"],
           "seeds": 3, "bootstrap": {"n": 100}, "cache": str(tmp_path / "shared")}
    signals = tmp_path / "signals"
    signals.mkdir()
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=os.pathsep.join(
        [str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    first = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(raw), str(tmp_path / "a"), str(signals)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(2400):  # until the first run is inside its cell's training
            if (signals / "started").exists() or first.poll() is not None:
                break
            time.sleep(0.05)
        assert (signals / "started").exists(), first.communicate()[1][-2000:]
        second = FakeClassifier()
        messages = []

        def train(d, out, **kw):  # the old runner trained the cell again here, deleting the first's
            if "/cells/" in str(out):
                (signals / "release").write_text("")
            return second.train(d, out, **kw)

        def log(msg):
            messages.append(msg)
            if "waiting for" in msg:  # the new runner waits for the cell's lock: let the first finish
                (signals / "release").write_text("")

        r = run_ablation(build_config(raw), tmp_path / "b", train_fn=train, eval_fn=second.evaluate, log=log)
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0 and "done" in out, err[-2000:]
    assert any(f"another ablate (pid {first.pid})" in m and "is training it in the shared cache" in m
               for m in messages), messages
    # the two runs split the 3 cells between them (who takes cells 2 and 3 is a race), each once
    by_first = (signals / "first-trained").read_text().split()
    by_second = [Path(c["out"]).parent.name for c in second.cell_calls]
    cells = sorted(p.name for p in (tmp_path / "shared" / "cells").iterdir())
    assert sorted(by_first + by_second) == cells and len(cells) == 3 and r["trained"] == len(by_second)
    strip = lambda ls: [(x["cell"], x["test"]["t"]["macro_f1"]) for x in ls]  # noqa: E731
    assert strip(_lines(tmp_path / "a")) == strip(_lines(tmp_path / "b"))
    for c in cells:
        d = tmp_path / "shared" / "cells" / c
        assert (d / "cell.json").exists() and (d / "run" / "best.pt").exists() and not (d / ".semgen.lock").exists()


# -- report -------------------------------------------------------------------------------------
def _table(md: str, title: str) -> list[list[str]]:
    block = md.split(title, 1)[1].split("\n\n", 2)[1]
    rows = [ln.strip("|").split("|") for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r] for r in rows[2:]]


def test_summary_matches_results(data, tmp_path):
    cfg = _cfg(data)
    fc = FakeClassifier()
    out = tmp_path / "out"
    run_ablation(cfg, out, train_fn=fc.train, eval_fn=fc.evaluate, log=lambda m: None)
    lines = _lines(out)
    assert len(lines) == 21 - 0 and len({x["cell"] for x in lines}) == 21
    groups = defaultdict(list)
    for x in lines:
        # each line's metrics are those of its own prediction CSV
        rows = (out / x["test"]["t"]["predictions"]).read_text().splitlines()[1:]
        y = [r.split(",")[1] for r in rows]
        p = [r.split(",")[2] for r in rows]
        m = point_metrics(y, p, ["clean", "bridge", "open"])
        assert m["macro_f1"] == pytest.approx(x["test"]["t"]["macro_f1"])
        groups[(x["arm"], x["shots"])].append((x["seed"], y, p, x))
    table = _table((out / "summary.md").read_text(), "### All cells")
    assert len(table) == len(groups) == 7
    summary = json.loads((out / "summary.json").read_text())["t"]
    for arm, shots, n_seeds, acc, f1, sd in table:
        g = sorted(groups[(arm.strip("`"), shots)], key=lambda t: t[0])
        assert int(n_seeds) == len(g) == 3
        mean_f1 = np.mean([t[3]["test"]["t"]["macro_f1"] for t in g])
        mean_acc = np.mean([t[3]["test"]["t"]["accuracy"] for t in g])
        assert f1.split()[0] == f"{mean_f1:.3f}" and acc.split()[0] == f"{mean_acc:.3f}"
        assert sd == f"{np.std([t[3]['test']['t']['macro_f1'] for t in g], ddof=1):.3f}"
        # the CI is the bootstrap of exactly these predictions
        b = bootstrap(g[0][1], [t[2] for t in g], ["clean", "bridge", "open"], n_boot=300, seed=0)
        assert f1 == f"{b['macro_f1']['mean']:.3f} [{b['macro_f1']['lo']:.3f}, {b['macro_f1']['hi']:.3f}]"
        js = next(x for x in summary["groups"] if x["arm"] == arm.strip("`") and x["shots"] == shots)
        assert js["macro_f1"] == pytest.approx(b["macro_f1"])
    for name in ("ablation_t_shots.png", "ablation_t_gain.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the report is rebuilt from results.jsonl alone
    (out / "summary.md").unlink()
    from semgen.ablation.report import write_report

    write_report(out)  # the bootstrap settings come from the run's config.json
    assert _table((out / "summary.md").read_text(), "### All cells") == table


# -- configuration and CLI ----------------------------------------------------------------------
def test_config_errors_are_clear(data, tmp_path):
    with pytest.raises(SemgenError, match="at least 3 seeds"):
        _cfg(data, seeds=2)
    with pytest.raises(SemgenError, match="unknown arm type"):
        _cfg(data, arms=["real", "distill:proc"])
    with pytest.raises(SemgenError, match="not defined"):
        _cfg(data, arms=["mix:diffusion:0.5"])
    with pytest.raises(SemgenError, match="strictly between 0 and 1"):
        _cfg(data, arms=["mix:proc:1.5"])
    with pytest.raises(SemgenError, match="positive integer or 'all'"):
        _cfg(data, shots=[0])
    with pytest.raises(SemgenError, match="unknown config key"):
        _cfg(data, shot=[5])
    with pytest.raises(SemgenError, match="no real test set"):
        _cfg(data, test={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("real: [unclosed\n")
    with pytest.raises(SemgenError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(SemgenError, match="does not exist"):
        run_ablation(_cfg(data, real=str(tmp_path / "nope")), tmp_path / "o", train_fn=FakeClassifier().train,
                     eval_fn=None, log=lambda m: None)
    with pytest.raises(SemgenError, match="validation set shares images"):
        run_ablation(_cfg(data, val=str(data["test"])), tmp_path / "o3", train_fn=FakeClassifier().train,
                     eval_fn=None, log=lambda m: None)
    fc = FakeClassifier()  # a separate validation set reaches the classifier (and the cell key)
    run_ablation(_cfg(data, val=str(data["test2"]), arms=["real"], shots=[2]), tmp_path / "o4",
                 train_fn=fc.train, eval_fn=fc.evaluate, log=lambda m: None)
    assert len(fc.cell_calls) == 3
    assert all(json.loads((Path(c["out"]) / "best.pt").read_text())["hyper"]["val"] == str(data["test2"])
               for c in fc.cell_calls)
    with pytest.raises(SemgenError, match="shares 24 image"):  # the test set inside the training pool
        run_ablation(_cfg(data, real=str(data["test"])), tmp_path / "o2", train_fn=FakeClassifier().train,
                     eval_fn=None, log=lambda m: None)


def test_cli_yaml_presets_and_flags(data, tmp_path, monkeypatch, capsys):
    from semgen.ablation import commands, runner

    (tmp_path / "exp").mkdir()
    cfg_file = tmp_path / "exp" / "ablate.yaml"
    # relative paths in the file are relative to the file
    rel = os.path.relpath(data["real"], cfg_file.parent)
    assert not Path(rel).is_absolute()
    cfg_file.write_text(f"real: {rel}\ntest: [{data['test']}]\n"
                        f"synthetic:\n  proc: {{path: {data['syn']}, amount: 100}}\n"
                        "shots: [2, 5, 10, all]\nclassifier: {epochs: 50}\n")
    fc = FakeClassifier()
    monkeypatch.setattr(runner, "_default_train", lambda: fc.train)
    monkeypatch.setattr(runner, "_default_eval", lambda: fc.evaluate)
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    out = tmp_path / "o"
    args = parser.parse_args(["ablate", str(cfg_file), "--out", str(out), "--preset", "quick", "--estimate"])
    assert args.func(args) == 0
    assert fc.cell_calls == []  # --estimate trains nothing (the speed probe runs in a temp dir)
    assert "cells" in capsys.readouterr().out
    args = parser.parse_args(["ablate", str(cfg_file), "--out", str(out), "--preset", "quick"])
    assert args.func(args) == 0
    conf = json.loads((out / "config.json").read_text())
    # the preset overrides the file: 2 shots levels, 40 synthetic per class at most, short training
    assert conf["shots"] == [5, "all"] and conf["synthetic"]["proc"]["amount"] == 40
    assert conf["classifier"]["epochs"] == 4 and conf["test"] == {"test": str(data["test"])}
    assert conf["real"] == str(Path(data["real"]).resolve())
    # flags override the preset
    args = parser.parse_args(["ablate", "--real", str(data["real"]), "--test", f"dev={data['test']}",
                              "--synthetic", f"p={data['syn']}", "--amount", "3", "--arms", "real", "mix:p:0.25",
                              "--shots", "2", "--seeds", "3", "--epochs", "2", "--out", str(tmp_path / "o2")])
    assert args.func(args) == 0
    lines = _lines(tmp_path / "o2")
    assert sorted({x["arm"] for x in lines}) == ["mix[p,0.25]", "real"] and len(lines) == 6
    assert all(x["classifier"]["epochs"] == 2 for x in lines)
    mix = next(x for x in lines if x["kind"] == "mix")
    assert [(t["role"], t["weight"], t["n_images"]) for t in mix["train"]] == [("real", 0.75, 6), ("synthetic", 0.25, 6)]


# -- the real classifier ------------------------------------------------------------------------
def test_real_classifier_end_to_end(data, tmp_path):
    """The real ``train_classifier`` / ``evaluate_run`` through the runner, on tiny images."""
    from semgen.classifier import evaluate_run, train_classifier

    calls = []

    def train(*a, **kw):
        calls.append(kw.get("init"))
        return train_classifier(*a, **kw)

    cfg = _cfg(data, arms=["pretrain:proc"], shots=[3],
               classifier={"arch": "mobilenetv3_small_050", "size": 32, "epochs": 1, "batch_size": 16,
                           "min_epoch_images": 16},
               finetune={"epochs": 1, "head_only_epochs": 1})
    # one seed: the runner's handling of seeds is covered above with the test double, and each
    # real training costs CPU time that the suite shares
    cfg = cfg.model_copy(update={"seeds": [0]})  # past the 3-seed check, as the test wants
    out = tmp_path / "out"
    # a measured speed in the cache spares the one-epoch timing probe (CPU time is shared in CI)
    (out / "cache").mkdir(parents=True)
    (out / "cache" / "timing.json").write_text(json.dumps({"mobilenetv3_small_050@32/b16": [[16, 1.0], [32, 1.5]]}))
    r = run_ablation(cfg, out, train_fn=train, eval_fn=evaluate_run, log=lambda m: None)
    assert r["trained"] == 2  # the synthetic pretraining (implied by the arm) + the fine-tune
    lines = _lines(out)
    # every trained model has its line, the implied synthetic-only one too
    assert [(x["kind"], x["implied"]) for x in lines] == [("synthetic", True), ("pretrain", False)]
    for x in lines:
        rows = (out / x["test"]["t"]["predictions"]).read_text().splitlines()[1:]
        assert len(rows) == 24 and all(r.split(",")[2] in CLASSES for r in rows)
        if x["kind"] == "pretrain":
            # fine-tuned from the synthetic model of the same seed
            req = json.loads((Path(x["run_dir"]) / "config.json").read_text())["request"]
            # best.pt, or the run dir's model.safetensors (the config.json + safetensors layout)
            assert req["init"].endswith(("best.pt", "model.safetensors")) and x["init_cell"][:24] in req["init"]
            assert req["head_only_epochs"] == 1 and req["seed"] == x["seed"]
    assert (out / "summary.md").exists()
    n = len(calls)
    run_ablation(cfg, out, train_fn=train, eval_fn=evaluate_run, log=lambda m: None)
    assert len(calls) == n  # all cached
    # with test-time augmentation: the same models, re-evaluated; the figures are evaluate_run's with it
    from semgen.ablation.runner import _align

    run_ablation(cfg.model_copy(update={"tta": "d4"}), out, train_fn=train, eval_fn=evaluate_run, log=lambda m: None)
    assert len(calls) == n
    for x in _lines(out):
        m = evaluate_run(x["run_dir"], data["test"], n_boot=0, write=False, tta="d4")
        assert m["tta"] == "d4" and x["tta"] == "d4"
        ev = _align(m, load_pool(data["test"]))
        rows = (out / x["test"]["t"]["predictions"]).read_text().splitlines()[1:]
        assert [r.split(",")[2] for r in rows] == ev["y_pred"]
        assert x["test"]["t"]["macro_f1"] == pytest.approx(
            point_metrics(ev["y_true"], ev["y_pred"], [c for c in CLASSES if c in set(ev["y_true"])])["macro_f1"])


def test_estimate_from_measured_speed(data, tmp_path):
    from semgen.ablation.runner import _timing_key, estimate_seconds

    cfg = _cfg(data, arms=["real", "synthetic:proc"], classifier={"epochs": 3, "min_epoch_images": 10})
    cells = plan(cfg, load_pool(cfg.real), {"proc": load_pool(data["syn"])}, tmp_path)
    key = _timing_key(cells[0].hyper)
    rows = [[w, 2 + 0.01 * w, 1 + 0.02 * w] for w in (100.0, 300.0)]  # (images drawn, wall s, CPU s)
    (tmp_path / "timing.json").write_text(json.dumps({key: rows}))
    wall, free, basis = estimate_seconds(cells, tmp_path, cells)
    # work = epochs x max(images, min_epoch_images): the classifier draws at least that many per epoch
    assert all(c.work == 3 * max(c.n_train, 10) for c in cells)
    assert {c.work for c in cells} == {30, 54}  # 8 synthetic / 6 real images -> 10 drawn; all 18 real
    assert wall == pytest.approx(sum(2 + 0.01 * c.work for c in cells))
    assert free == pytest.approx(sum(1 + 0.02 * c.work for c in cells) / os.cpu_count())
    assert "2 measured cells" in basis
    # nothing measured yet: the probe (one epoch on the smallest subset) gives the speed
    (tmp_path / "timing.json").unlink()
    asked = []
    wall, free, basis = estimate_seconds(cells, tmp_path, cells,
                                         lambda hp: asked.append(hp) or {"wall": (1.0, 0.5), "cpu": (1.0, 1.0)})
    assert len(asked) == 1 and "probe" in basis and wall == pytest.approx(sum(1 + 0.5 * c.work for c in cells))
    # evaluations still to run: a third of a training image per view until one is measured ...
    wall, free, basis = estimate_seconds(cells, tmp_path, [], lambda hp: {"wall": (1.0, 0.6), "cpu": (1.0, 1.0)},
                                         evals=[(cells[0], 100)])
    assert wall == pytest.approx(20.0) and "a third of a training image" in basis
    # ... then at the measured seconds per image view (8 views per image with d4)
    cdir = tmp_path / "cells" / "any-cell-of-this-cache"  # not one of this plan's: the arch and size decide
    cdir.mkdir(parents=True)
    (cdir / "cell.json").write_text(json.dumps({"config": {"classifier": cells[0].hyper}}))
    (cdir / "eval-x-tta-d4.json").write_text(json.dumps({"y_true": ["a"] * 10, "tta": "d4", "eval_s": 4.0}))
    wall, free, basis = estimate_seconds(cells, tmp_path, [], None, evals=[(cells[1], 100)])
    assert wall == pytest.approx(5.0) and "evaluation: measured" in basis


# -- the init axis ------------------------------------------------------------------------------
def test_init_axis_crosses_the_arms_and_keeps_scratch_keys(data, tmp_path):
    """``inits: [scratch, imagenet]``: every arm twice, ImageNet rows on efficientnet_lite0, scratch
    cells keyed as without the axis, and the report shows both with an init column."""
    base = _cfg(data, arms=["real", "pretrain:proc"], shots=[2])
    cfg = _cfg(data, arms=["real", "pretrain:proc"], shots=[2], inits=["scratch", "imagenet"])
    assert [i.name for i in cfg.inits] == ["scratch", "imagenet"] and cfg.inits[1].arch == "efficientnet_lite0"
    assert [i.name for i in base.inits] == ["scratch"]
    pools = (load_pool(cfg.real), {"proc": load_pool(data["syn"])})
    old = plan(base, *pools, tmp_path)
    cells = plan(cfg, *pools, tmp_path)
    assert len(cells) == 2 * len(old) == 18
    scratch = [c for c in cells if c.spec.init.name == "scratch"]
    assert [c.key for c in scratch] == [c.key for c in old]  # existing caches stay valid
    img = [c for c in cells if c.spec.init.name == "imagenet"]
    assert all(c.hyper["arch"] == "efficientnet_lite0" for c in img)
    first = [c for c in img if c.init is None]
    assert first and all(c.config["init_weights"].startswith("imagenet:") for c in first)
    # imagenet -> synthetic pretraining -> real: the fine-tune starts from the imagenet synthetic cell
    for c in img:
        if c.spec.arm.kind == "pretrain":
            assert c.init.spec.init.name == "imagenet" and c.init.spec.seed == c.spec.seed

    fc = FakeClassifier()
    out = tmp_path / "out"
    run_ablation(cfg, out, train_fn=fc.train, eval_fn=fc.evaluate, log=lambda m: None)
    by_out = {Path(c["out"]).parent.name: c for c in fc.cell_calls}
    for c in cells:
        call = by_out[c.key[:24]]
        if c.init is not None:
            assert str(call["init"]).endswith("best.pt") and c.init.key[:24] in str(call["init"])
        else:
            assert call["init"] == (None if c.spec.init.name == "scratch" else "imagenet")
    lines = _lines(out)
    assert Counter((x["init"], x["kind"]) for x in lines) == {
        (i, k): 3 for i in ("scratch", "imagenet") for k in ("synthetic", "real", "pretrain")}
    assert all((x["init_weights"] or "").startswith("imagenet:") == (x["init"] == "imagenet") for x in lines)
    md = (out / "summary.md").read_text()
    table = _table(md, "### All cells")
    assert {(r[0], r[1]) for r in table} == {(f"`{i}`", f"`{a}`") for i in ("scratch", "imagenet")
                                             for a in ("real", "synthetic[proc]", "pretrain[proc]")}
    gains = json.loads((out / "summary.json").read_text())["t"]["gains"]
    assert sorted(g["init"] for g in gains) == ["imagenet", "scratch"]  # each against real from its own init
    assert "| init | arm |" in md
    assert "init_differences" not in json.loads((out / "summary.json").read_text())["t"]  # none asked for

    # compare: imagenet minus scratch, arm by arm, on the same seeds (the report only: nothing retrains)
    cmp = _cfg(data, arms=["real", "pretrain:proc"], shots=[2], inits=["scratch", "imagenet"],
               compare=[["scratch", "imagenet"]])
    assert cmp.to_dict()["compare"] == [["scratch", "imagenet"]] and "compare" not in cfg.to_dict()
    calls = len(fc.cell_calls)
    run_ablation(cmp, out, train_fn=fc.train, eval_fn=fc.evaluate, log=lambda m: None)
    assert len(fc.cell_calls) == calls
    a = json.loads((out / "summary.json").read_text())["t"]
    diffs = {(d["arm"], d["shots"]): d for d in a["init_differences"]}
    assert set(diffs) == {("real", "2"), ("pretrain[proc]", "2"), ("synthetic[proc]", "-")}
    group = {(g["init"], g["arm"], g["shots"]): g["macro_f1"]["mean"] for g in a["groups"]}
    for (arm, shots), d in diffs.items():
        assert d["a"] == "scratch" and d["b"] == "imagenet" and d["seeds"] == [0, 1, 2]
        assert d["macro_f1"]["mean"] == pytest.approx(group[("imagenet", arm, shots)] - group[("scratch", arm, shots)])
    assert "| `imagenet` minus `scratch` | `real` | 2 | 3 |" in (out / "summary.md").read_text()


def test_init_axis_config_errors(data):
    with pytest.raises(SemgenError, match="no ImageNet weights for 'mobilenetv3_small_100'"):
        _cfg(data, inits=["imagenet@mobilenetv3_small_100"])
    with pytest.raises(SemgenError, match="unknown architecture"):
        _cfg(data, inits=["scratch@nonet"])
    with pytest.raises(SemgenError, match="two inits are labelled 'imagenet'"):
        _cfg(data, inits=["imagenet", {"init": "scratch", "name": "imagenet"}])
    with pytest.raises(SemgenError, match="compare: 'semgen' is not an init of this config; inits: scratch, imagenet"):
        _cfg(data, inits=["scratch", "imagenet"], compare=[["semgen", "imagenet"]])
    with pytest.raises(SemgenError, match="compares an init with itself"):
        _cfg(data, inits=["scratch", "imagenet"], compare=[["imagenet", "imagenet"]])
    with pytest.raises(SemgenError, match="compare must be a list of pairs"):
        _cfg(data, inits=["scratch", "imagenet"], compare=["imagenet"])
    # the classifier's arch is kept when it has ImageNet weights itself
    cfg = _cfg(data, inits=["imagenet"], classifier={"arch": "efficientnet_lite0", "epochs": 1})
    assert cfg.inits[0].arch == "efficientnet_lite0"
    # an edge arch takes them by weight selection, as `semgen train --arch ... --init imagenet` does
    cfg = _cfg(data, inits=["imagenet@efficientnet_lite0_035"])
    assert cfg.inits[0].arch == "efficientnet_lite0_035"
    cfg = _cfg(data, inits=["imagenet"], classifier={"arch": "efficientnet_lite0_035", "epochs": 1})
    assert cfg.inits[0].arch == "efficientnet_lite0_035"


def test_tta_re_evaluates_cached_cells_without_retraining(data, tmp_path, monkeypatch):
    """``tta`` is evaluation only: a second run with it trains nothing, its figures are those of
    ``evaluate(run, test, tta=...)``, and evaluations with and without it never stand in for each other."""
    from semgen.ablation import commands, runner
    from semgen.ablation.runner import _align

    base = _cfg(data, arms=["real", "pretrain:proc"], shots=[2], test={"t": str(data["test"]), "u": str(data["test2"])})
    assert "tta" not in base.to_dict() and base.tta == "none"
    d4 = _cfg(data, arms=["real", "pretrain:proc"], shots=[2], test={"t": str(data["test"]), "u": str(data["test2"])},
              tta="d4")
    assert [c.key for c in plan(d4, load_pool(d4.real), {"proc": load_pool(data["syn"])}, tmp_path / "c")] == \
        [c.key for c in plan(base, load_pool(base.real), {"proc": load_pool(data["syn"])}, tmp_path / "c")]
    out = tmp_path / "out"
    fc = FakeClassifier()
    run_ablation(base, out, train_fn=fc.train, eval_fn=fc.evaluate, log=lambda m: None)
    plain = (out / "results.jsonl").read_bytes()
    assert len(fc.cell_calls) == 9 and {t for _, _, t in fc.eval_calls} == {"none"}
    assert b'"tta"' not in plain and "TTA" not in (out / "summary.md").read_text()

    # --estimate counts the evaluations TTA adds, though nothing is left to train
    said = []
    est = run_ablation(d4, out, train_fn=fc.train, eval_fn=fc.evaluate, log=said.append, estimate_only=True)
    assert est["evaluations"] == 9 * 2 and est["estimate_s"] > 0 and len(fc.cell_calls) == 9
    assert any("0 cells and 18 evaluations" in m for m in said)
    assert run_ablation(base, out, train_fn=fc.train, eval_fn=fc.evaluate, log=lambda m: None,
                        estimate_only=True)["evaluations"] == 0

    again = FakeClassifier()
    r = run_ablation(d4, out, train_fn=again.train, eval_fn=again.evaluate, log=lambda m: None)
    assert r["trained"] == 0 and again.train_calls == []
    assert len(again.eval_calls) == 9 * 2 and {t for _, _, t in again.eval_calls} == {"d4"}
    lines = _lines(out)
    assert len(lines) == 9 and all(x["tta"] == "d4" for x in lines)
    changed = 0
    for x in lines:
        for name in ("t", "u"):
            m = fc.evaluate(x["run_dir"], data["test" if name == "t" else "test2"], n_boot=0, write=False, tta="d4")
            ev = _align(m, load_pool(data["test" if name == "t" else "test2"]))
            got = (out / x["test"][name]["predictions"]).read_text().splitlines()[1:]
            assert [r.split(",")[2] for r in got] == ev["y_pred"]
            want = point_metrics(ev["y_true"], ev["y_pred"], [c for c in CLASSES if c in set(ev["y_true"])])
            assert x["test"][name]["macro_f1"] == pytest.approx(want["macro_f1"])
        changed += x["test"]["t"]["macro_f1"] != json.loads(plain.splitlines()[lines.index(x)])["test"]["t"]["macro_f1"]
    assert changed  # the double's TTA predicts otherwise: the figures are not the cached ones without it
    conf = json.loads((out / "config.json").read_text())
    assert conf["tta"] == "d4"
    md = (out / "summary.md").read_text()
    assert "test-time augmentation: `d4`" in md and "## Test set `t` (24 images, 3 classes; TTA `d4`)" in md
    assert "fine-tune (pretrain arm)" in md  # this matrix has a pretrain arm
    assert json.loads((out / "summary.json").read_text())["t"]["tta"] == "d4"

    # back to none: the cached evaluations without TTA, byte for byte, and nothing run at all
    third = FakeClassifier()
    run_ablation(base, out, train_fn=third.train, eval_fn=third.evaluate, log=lambda m: None)
    assert third.train_calls == [] and third.eval_calls == []
    assert (out / "results.jsonl").read_bytes() == plain
    # and d4 again: its own cached evaluations
    run_ablation(d4, out, train_fn=third.train, eval_fn=third.evaluate, log=lambda m: None)
    assert third.train_calls == [] and third.eval_calls == []

    # the flag, and a bad value: one line naming flag and field
    monkeypatch.setattr(runner, "_default_train", lambda: third.train)
    monkeypatch.setattr(runner, "_default_eval", lambda: third.evaluate)
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    argv = ["ablate", "--real", str(data["real"]), "--test", f"t={data['test']}", "--arms", "real", "--shots", "2",
            "--out", str(tmp_path / "o2"), "--cache", str(out / "cache")]
    args = parser.parse_args(argv + ["--tta", "flips"])
    assert args.func(args) == 0
    assert third.train_calls == [] and {t for _, _, t in third.eval_calls} == {"flips"}
    assert all(x["tta"] == "flips" for x in _lines(tmp_path / "o2"))
    assert "fine-tune (pretrain arm)" not in (tmp_path / "o2" / "summary.md").read_text()  # real arm only
    with pytest.raises(SemgenError, match=r"^--tta must be one of none, flips, d4, got 'd8' \(AblationConfig.tta\)$"):
        args = parser.parse_args(argv + ["--tta", "d8"])
        args.func(args)
    with pytest.raises(SemgenError, match="--tta must be one of"):
        _cfg(data, tta=["d4"])


def test_a_test_set_in_a_tuned_profiles_reference_is_refused(data, tmp_path):
    # a synthetic source made with a profile that `semgen tune` fitted to (some) test images
    import shutil

    syn = tmp_path / "syn"
    shutil.copytree(data["syn"], syn)
    leaked = [i.sha256 for i in load_pool(data["test"]).items[:2]]
    DatasetDir(syn).write_info(config_key="procedural:bridge", config={
        "profile_sha256": "ab" * 32, "profile_reference": {"sha256": "cd" * 32, "n_images": 2, "files": leaked}})
    cfg = _cfg(data, synthetic={"proc": {"path": str(syn), "amount": 4}})
    with pytest.raises(SemgenError, match="test set t shares 2 image.*profile abababababab of synthetic source proc"):
        run_ablation(cfg, tmp_path / "o", train_fn=FakeClassifier().train, eval_fn=None, log=lambda m: None)
