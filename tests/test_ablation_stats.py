"""Bootstrap statistics of the ablation and of ``semgen evaluate``: checked against sklearn, brute
force and a binomial law, and against each other (one macro-F1, one bootstrap core)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from semgen.ablation.stats import bootstrap, encode, paired_difference, point_metrics, replicates
from semgen.classifier.metrics import (bootstrap_ci, bootstrap_replicates, confusion_matrix, metrics_from_confusion,
                                       resample_draws)

CLS = ["clean", "bridge", "open", "ler"]


def _random_case(rng, S=3, N=40):
    y = list(rng.choice(CLS, N))
    preds = [[yi if rng.random() < 0.5 + 0.1 * s else str(rng.choice(CLS + ["via"])) for yi in y] for s in range(S)]
    return y, preds


def test_point_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y, preds = _random_case(rng)
    classes = sorted(set(y))
    for p in preds:
        m = point_metrics(y, p, classes)
        assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
        # a prediction of a class the test set lacks ("via") counts in the average, as in sklearn's default
        assert "via" in p
        assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
        f1s = f1_score(y, p, labels=classes, average=None, zero_division=0)
        assert list(m["per_class"]) == classes
        for c, f in zip(classes, f1s):
            assert m["per_class"][c]["f1"] == pytest.approx(f)


def test_evaluate_and_ablate_print_the_same_macro_f1():
    """One definition: classifier metrics (``semgen evaluate``), ablation statistics (``semgen ablate``,
    ``bench/compare_runs.py``) and sklearn agree on the same predictions, CIs included."""
    rng = np.random.default_rng(11)
    model_classes = ["clean", "bridge", "open", "ler", "via", "crack"]   # crack: neither truth nor prediction
    y = list(rng.choice(model_classes[:4], 90))
    p = [yi if rng.random() < 0.55 else str(rng.choice(model_classes[:5])) for yi in y]
    assert "via" in p and "via" not in y
    idx = {c: i for i, c in enumerate(model_classes)}
    yi_, pi_ = [idx[c] for c in y], [idx[c] for c in p]
    sk = f1_score(y, p, average="macro", zero_division=0)
    evaluate = metrics_from_confusion(confusion_matrix(yi_, pi_, len(model_classes)), model_classes)
    ablate = point_metrics(y, p, [c for c in model_classes if c in set(y)])
    group = bootstrap(y, [p], n_boot=300, seed=4)
    assert evaluate["macro_f1"] == pytest.approx(sk, abs=1e-12)
    assert ablate["macro_f1"] == pytest.approx(sk, abs=1e-12)
    assert group["macro_f1"]["mean"] == pytest.approx(sk, abs=1e-12)
    assert evaluate["macro_precision"] == pytest.approx(precision_score(y, p, average="macro", zero_division=0))
    assert evaluate["macro_recall"] == pytest.approx(recall_score(y, p, average="macro", zero_division=0))
    # one bootstrap core: evaluate's interval is the one-seed ablation interval for the same seed
    ci = bootstrap_ci(yi_, pi_, len(model_classes), n_boot=300, seed=4)
    assert ci["macro_f1"] == pytest.approx([group["macro_f1"]["lo"], group["macro_f1"]["hi"]], abs=1e-12)
    assert ci["accuracy"] == pytest.approx([group["accuracy"]["lo"], group["accuracy"]["hi"]], abs=1e-12)
    # an unreadable image (no prediction) is wrong, and "" is no class
    p2 = [""] + p[1:]
    assert point_metrics(y, p2)["macro_f1"] == pytest.approx(
        f1_score(y, p2, labels=sorted(set(y) | set(p2[1:])), average="macro", zero_division=0))


def test_one_model_draws_do_not_depend_on_the_chunk_size():
    """With one model the bootstrap may pick its chunk from memory: the draws stay the same."""
    a = np.concatenate([iw for _, iw in resample_draws(1, 30, 100, 5, chunk=7)])
    b = np.concatenate([iw for _, iw in resample_draws(1, 30, 100, 5, chunk=100)])
    assert np.array_equal(a, b) and a.shape == (100, 30) and (a.sum(1) == 30).all()


def test_replicates_equal_brute_force_index_resampling():
    """The vectorised weighted form equals resampling indices and scoring with sklearn."""
    rng = np.random.default_rng(1)
    y, preds = _random_case(rng, S=3, N=25)
    yt, P, classes = encode(y, preds)
    B = 30
    seed_idx = rng.integers(0, 3, size=(B, 3))
    img_idx = rng.integers(0, 25, size=(B, 25))
    sw = np.stack([np.bincount(r, minlength=3) for r in seed_idx])
    iw = np.stack([np.bincount(r, minlength=25) for r in img_idx])
    got = replicates(yt, P, len(classes), sw, iw)
    # each seed's macro-F1 averages over the classes of the full sample's truth and its predictions
    scored = [[c for c in classes if c in set(y) | set(p)] for p in preds]
    for b in range(B):
        yb = [y[i] for i in img_idx[b]]
        accs, f1s, per = [], [], []
        for s in seed_idx[b]:
            pb = [preds[s][i] for i in img_idx[b]]
            accs.append(accuracy_score(yb, pb))
            f1s.append(f1_score(yb, pb, labels=scored[s], average="macro", zero_division=0))
            per.append(recall_score(yb, pb, labels=classes, average=None, zero_division=0))
        assert got["accuracy"][b] == pytest.approx(np.mean(accs), abs=1e-12)
        assert got["macro_f1"][b] == pytest.approx(np.mean(f1s), abs=1e-12)
        np.testing.assert_allclose(got["recall"][b], np.mean(per, 0), atol=1e-12)


def test_accuracy_ci_matches_binomial_law():
    """One seed: a bootstrap replicate of accuracy is Binomial(N, p_hat) / N, so its percentiles are known."""
    N, k = 40, 26
    y = ["clean"] * 20 + ["bridge"] * 20
    pred = list(y)
    for i in range(N - k):  # make exactly N - k errors
        pred[i] = "bridge" if y[i] == "clean" else "clean"
    r = bootstrap(y, [pred], n_boot=40000, seed=3)
    assert r["accuracy"]["mean"] == pytest.approx(k / N)
    lo = sps.binom.ppf(0.025, N, k / N) / N
    hi = sps.binom.ppf(0.975, N, k / N) / N
    # percentiles of a discrete law: equal to the exact quantile, up to one atom (1/N)
    assert abs(r["accuracy"]["lo"] - lo) <= 1 / N + 1e-9
    assert abs(r["accuracy"]["hi"] - hi) <= 1 / N + 1e-9
    assert r["accuracy"]["lo"] < k / N < r["accuracy"]["hi"]


def test_joint_seed_image_bootstrap_matches_exhaustive_enumeration():
    """2 seeds x 4 images: enumerate all 2^2 * 4^4 equally likely resamples, compare with the bootstrap."""
    y = ["clean", "clean", "bridge", "open"]
    preds = [["clean", "bridge", "bridge", "open"], ["clean", "clean", "open", "open"]]
    classes = ["clean", "bridge", "open"]
    per_seed = {}  # (seed, image draw) -> (macro-F1, accuracy), by sklearn
    for ii in itertools.product(range(4), repeat=4):
        yb = [y[i] for i in ii]
        for s in range(2):
            pb = [preds[s][i] for i in ii]
            per_seed[s, ii] = (f1_score(yb, pb, labels=classes, average="macro", zero_division=0),
                               accuracy_score(yb, pb))
    values_f1, values_acc = [], []
    for ss in itertools.product(range(2), repeat=2):
        for ii in itertools.product(range(4), repeat=4):
            values_f1.append(np.mean([per_seed[s, ii][0] for s in ss]))
            values_acc.append(np.mean([per_seed[s, ii][1] for s in ss]))
    values_f1, values_acc = np.array(values_f1), np.array(values_acc)
    yt, P, cl = encode(y, preds, classes)
    reps = bootstrap_replicates(yt, P, len(cl), n_boot=30000, seed=7, chunk=5000)
    # the bootstrap distribution converges to the exhaustive one: means and quantiles agree
    assert reps["macro_f1"].mean() == pytest.approx(values_f1.mean(), abs=0.005)
    assert reps["accuracy"].mean() == pytest.approx(values_acc.mean(), abs=0.005)
    r = bootstrap(y, preds, classes, n_boot=30000, seed=8, chunk=5000)
    for key, vals in (("macro_f1", values_f1), ("accuracy", values_acc)):
        q = lambda p: np.quantile(vals, p)  # noqa: E731
        assert q(0.01) <= r[key]["lo"] <= q(0.04)
        assert q(0.96) <= r[key]["hi"] <= q(0.99)
    # point estimate: mean over seeds of the full-test-set metric
    assert r["macro_f1"]["mean"] == pytest.approx(np.mean(
        [f1_score(y, p, labels=classes, average="macro", zero_division=0) for p in preds]))


def test_seed_resampling_widens_interval_when_seeds_disagree():
    rng = np.random.default_rng(5)
    y = list(rng.choice(CLS, 200))
    good = [yi if rng.random() < 0.9 else "clean" for yi in y]
    bad = [yi if rng.random() < 0.3 else "clean" for yi in y]
    both = bootstrap(y, [good, bad, good, bad], n_boot=2000, seed=0)
    fixed = bootstrap(y, [good, bad, good, bad], n_boot=2000, seed=0, resample_seeds=False)
    w = lambda r: r["accuracy"]["hi"] - r["accuracy"]["lo"]  # noqa: E731
    assert w(both) > 2 * w(fixed)
    assert both["accuracy"]["seed_sd"] > 0.15


def test_paired_difference():
    rng = np.random.default_rng(6)
    y, preds = _random_case(rng, S=3, N=80)
    same = paired_difference(y, preds, preds, n_boot=500)
    assert same["macro_f1"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    better = [list(y) for _ in preds]  # B is always right
    d = paired_difference(y, preds, better, n_boot=500)
    assert d["accuracy"]["lo"] > 0
    acc_a = np.mean([accuracy_score(y, p) for p in preds])
    assert d["accuracy"]["mean"] == pytest.approx(1 - acc_a)
