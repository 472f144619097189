"""semgen app: the pages' logic without a browser (playground, browser, results, classify, drawing).

The browser-driven tests are in ``test_app_browser.py``; these check the same behaviour at the
function level, on real library output (generated dirs, ``evaluate_probs``, ``run_ablation``).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from semgen.app import browser, classify, draw, playground, results
from semgen.errors import SemgenError
from semgen.generators.procedural import create_generator, list_generators
from semgen.generators.procedural.generation import generate
from semgen.imageio import encode_png, sha256_bytes
from semgen.manifests import DatasetDir


@pytest.fixture(scope="module")
def proc_dir(tmp_path_factory):
    """A generated dataset dir: 3 bridge and 2 clean images at 64 px (bridge ones have masks)."""
    root = tmp_path_factory.mktemp("app_logic") / "proc"
    generate("bridge", 3, root, seed=1, size=64, progress=False)
    generate("clean", 2, root, seed=1, size=64, progress=False)
    return root


# -- playground ----------------------------------------------------------------------------------

def test_every_registry_parameter_has_a_widget_with_its_limits_unit_and_doc():
    for name in list_generators():
        gen = create_generator(name)
        ws = playground.widgets(gen)
        assert [w.name for w in ws] == gen.space.names
        for w in ws:
            spec = gen.space[w.name]
            assert w.group in ("class", "imaging", "overlays")
            if spec.doc:
                assert spec.doc in w.info
            if spec.unit:
                assert f"({spec.unit})" in w.label
            if w.control == "slider":
                assert (w.minimum, w.maximum) == tuple(spec.valid_range)
                assert 0 < w.step <= (w.maximum - w.minimum)
            if w.control == "dropdown":
                assert list(w.choices) == [str(c) for c in spec.choices]


@pytest.mark.parametrize("form", ["set", "profile"])
def test_the_image_shown_is_image_0_of_the_exported_command(tmp_path, form):
    """Render with pins and a range, run the exported command (--set items, or the exported profile
    file) through the CLI: the same PNG bytes."""
    from semgen.cli import main
    from semgen.generators.procedural.profile import dump_profile

    gen = create_generator("bridge")
    pins = {"contrast": 0.62, "dose": 1234.5, "layout": "lines", "frames": 3, "auto_levels": False}
    ranges = {"psf_sigma_px": {"range": [0.4, 0.6]}, "orientation": {"choices": {"vertical": 1, "diagonal": 3}}}
    r = playground.render(gen, 11, 64, pins, ranges)
    prof = None
    if form == "profile":
        prof = tmp_path / "p.yaml"
        dump_profile(playground.profile(gen, pins, ranges), prof)
    cmd = playground.procedural_command(gen, pins, ranges, n=2, size=64, seed=11, out=str(tmp_path / "out"),
                                        profile_path=prof)
    if form == "set":
        assert "--set contrast=0.62" in cmd and "--set auto_levels=false" in cmd and "--set psf_sigma_px=0.4:0.6" in cmd
    else:
        assert "--set" not in cmd and f"--profile {prof}" in cmd
    assert main(shlex.split(cmd)[1:] + ["--no-progress"]) == 0
    rec = DatasetDir.open(tmp_path / "out").records()[0]
    assert rec["sha256"] == r.sha256
    assert rec["seed"] == r.seed
    assert rec["bboxes"] == r.bboxes
    assert r.params["orientation"] in ("vertical", "diagonal") and 0.4 <= r.params["psf_sigma_px"] <= 0.6


def test_a_parameter_changes_the_image_and_leaves_the_others_sampled_alike():
    gen = create_generator("ler")
    a = playground.render(gen, 3, 64, {"contrast": 0.5})
    b = playground.render(gen, 3, 64, {"contrast": 0.9})
    assert a.sha256 != b.sha256 and not np.array_equal(a.image, b.image)
    assert {k: v for k, v in a.params.items() if k != "contrast"} == {k: v for k, v in b.params.items() if k != "contrast"}
    assert playground.render(gen, 3, 64, {"contrast": 0.5}).sha256 == a.sha256  # same state, same bytes
    assert playground.render(gen, 4, 64, {"contrast": 0.5}).sha256 != a.sha256  # re-roll: another image


def test_out_of_limits_values_are_refused_with_limits_and_unit():
    gen = create_generator("bridge")
    spec = gen.space["psf_sigma_px"]
    lo, hi = spec.valid_range
    with pytest.raises(SemgenError, match=rf"psf_sigma_px=99: out of range \[{lo:g}, {hi:g}\] px"):
        playground.check_value(gen, "psf_sigma_px", 99)
    with pytest.raises(SemgenError, match="not one of"):
        playground.check_value(gen, "layout", "spiral")
    with pytest.raises(SemgenError, match="unknown parameter"):
        playground.check_value(gen, "contrastt", 1)
    with pytest.raises(SemgenError, match="seed must be in"):
        playground.render(gen, -1, 64, {})
    with pytest.raises(SemgenError, match="size must be in"):
        playground.render(gen, 0, 4096, {})
    with pytest.raises(SemgenError, match="out of range"):
        playground.render(gen, 0, 64, {"contrast": 50.0})
    with pytest.raises(SemgenError, match="outside its limits"):
        playground.render(gen, 0, 64, {}, {"contrast": {"range": [0.1, 50]}})


def test_pasted_settings_round_trip_and_bad_ones_are_named(tmp_path):
    from semgen.generators.procedural.profile import dump_profile

    gen = create_generator("particle")
    pins, ranges = {"contrast": 0.7, "frames": 2}, {"gamma": {"range": [0.9, 1.1]}}
    cmd = playground.procedural_command(gen, pins, ranges, n=5, size=96, seed=9)
    s = playground.parse_settings(cmd)
    assert s == {"class": "particle", "seed": 9, "size": 96, "pins": pins, "ranges": ranges}
    assert playground.parse_settings("contrast=0.7\nframes=2", gen)["pins"] == pins
    assert playground.parse_settings("--set contrast=0.7 # a comment", gen)["pins"] == {"contrast": 0.7}
    dump_profile(playground.profile(gen, pins, ranges), tmp_path / "p.yaml")
    s = playground.parse_settings(f"--profile {tmp_path / 'p.yaml'} --set gamma=1.0", gen)
    assert s["pins"] == {**pins, "gamma": 1.0} and s["ranges"] == {}  # --set wins over the profile
    with pytest.raises(SemgenError, match="did you mean 'contrast'"):
        playground.parse_settings("contrst=0.7", gen)
    with pytest.raises(SemgenError, match="expected name=value"):
        playground.parse_settings("contrast", gen)
    with pytest.raises(SemgenError, match="not a setting the playground reads"):
        playground.parse_settings("--workers-x 2", gen)
    with pytest.raises(SemgenError, match="unknown class"):
        playground.parse_settings("--class nope")
    with pytest.raises(SemgenError, match="cannot read"):
        playground.parse_settings("contrast='0.7", gen)
    with pytest.raises(SemgenError, match="outside its limits"):
        playground.parse_settings("contrast=0.1:40", gen)
    with pytest.raises(SemgenError, match="p2.yaml"):
        playground.parse_settings(f"--profile {tmp_path / 'p2.yaml'}", gen)
    assert playground.format_value(0.1 + 0.2) == "0.30000000000000004"  # floats round-trip exactly


# -- dataset browser -----------------------------------------------------------------------------

def test_browser_counts_filters_pages_and_masks(proc_dir):
    idx = browser.build_index(proc_dir)
    assert idx.kind == "dataset dir" and idx.n_problems == 0
    every = browser.filter_positions(idx)
    assert browser.class_counts(idx, every) == {"clean": 2, "bridge": 3}
    fv = browser.facet_values(idx)
    assert dict(fv["label"]) == {"clean": 2, "bridge": 3}
    assert dict(fv["source"]) == {"procedural": 5}
    assert {g for g, _ in fv["generator"]} == {f"bridge@{create_generator('bridge').version}",
                                              f"clean@{create_generator('clean').version}"}
    assert dict(fv["status"]) == {browser.NONE: 5}
    bridges = browser.filter_positions(idx, classes=["bridge"])
    assert len(bridges) == 3 and all(idx.entries[i].label == "bridge" for i in bridges)
    shown, n_pages = browser.page_slice(every, 2, page_size=2)
    assert n_pages == 3 and shown == every[2:4]
    assert browser.page_slice(every, 99, page_size=2)[0] == every[4:]  # clamped to the last page
    thumbs = browser.thumbnails(idx, shown, side=48)
    assert len(thumbs) == 2 and thumbs[0][0].shape == (48, 48, 3)
    recs = browser.records_at(idx, bridges)
    with_mask = [i for i in bridges if idx.entries[i].mask]
    assert with_mask, "generated bridge images have masks"
    i = with_mask[0]
    pic, note = browser.detail(idx, i, recs[i])
    assert "mask" in note and "box" in note
    plain, _ = browser.detail(idx, i, {})
    gray = draw.enlarge(draw.to_rgb(browser.load_image(idx.entries[i].path)[0]))
    assert pic.shape == gray.shape
    tinted = (plain != gray).any(axis=2)
    assert tinted.sum() > 0  # the mask is drawn
    assert (pic == draw.BOX_RGB).all(axis=2).sum() > 0 and not (plain == draw.BOX_RGB).all(axis=2).any()  # boxes


def test_browser_torn_line_corrupt_image_and_bad_folders(proc_dir, tmp_path):
    import shutil

    d = tmp_path / "torn"
    shutil.copytree(proc_dir, d)
    first = DatasetDir.open(d).records()[0]
    (d / first["file_name"]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a corrupt image
    with open(d / "metadata.jsonl", "ab") as f:
        f.write(b'{"file_name": "images/x.png", "lab')  # a torn last line
    idx = browser.build_index(d)
    assert len(idx.entries) == 5 and idx.n_problems == 1 and "torn" in idx.problems[0]
    pic, cap = browser.thumbnails(idx, [0], side=32)[0]
    assert "unreadable" in cap and pic.shape == (32, 32, 3)
    _, note = browser.detail(idx, 0)
    assert "cannot be read" in note
    with pytest.raises(SemgenError, match="does not exist"):
        browser.build_index(tmp_path / "nope")
    with pytest.raises(SemgenError, match="is a file"):
        browser.build_index(d / "metadata.jsonl")
    with pytest.raises(SemgenError, match="enter a folder"):
        browser.build_index("  ")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemgenError):
        browser.build_index(tmp_path / "empty")


def test_browser_reads_imagefolders_and_curation(tmp_path):
    rng = np.random.default_rng(0)
    for label, n in (("bridges", 2), ("normal", 3)):  # aliases: bridge, clean
        for i in range(n):
            p = tmp_path / "real" / label / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(encode_png(rng.integers(0, 255, (24, 24), dtype=np.uint8)))
    idx = browser.build_index(tmp_path / "real")
    assert idx.kind == "ImageFolder"
    assert browser.class_counts(idx, browser.filter_positions(idx)) == {"clean": 3, "bridge": 2}
    # a curated dir: statuses and reasons
    ds = DatasetDir.create(tmp_path / "cur")
    with ds.appender() as app:
        for i, (status, reasons) in enumerate([("accepted", []), ("rejected", ["too_dark", "blurry"]),
                                               ("rejected", ["too_dark"])]):
            data = encode_png(rng.integers(0, 255, (16, 16), dtype=np.uint8))
            ds.write_file(f"images/{i}.png", data)
            app.append({"file_name": f"images/{i}.png", "label": "open", "source": "procedural",
                        "sha256": sha256_bytes(data), "width": 16, "height": 16,
                        "curation": {"status": status, "score": 0.5, "reasons": reasons}})
    idx = browser.build_index(tmp_path / "cur")
    rej = browser.filter_positions(idx, statuses=["rejected"])
    assert rej == [1, 2]
    assert browser.reason_counts(idx, browser.filter_positions(idx)) == [("too_dark", 2), ("blurry", 1)]


def test_browser_reads_only_one_page_of_a_big_dir(tmp_path, monkeypatch):
    """3,000 records (one file, listed again and again): opening and one page decode only that page."""
    import semgen.imageio as imageio

    ds = DatasetDir.create(tmp_path / "big")
    data = encode_png(np.full((16, 16), 128, np.uint8))
    with ds.appender() as app:
        for i in range(3000):
            name = f"images/{i:05d}.png"
            if i < 3:
                ds.write_file(name, data)
            app.append({"file_name": name, "label": "clean", "source": "procedural", "sha256": sha256_bytes(data),
                        "width": 16, "height": 16})
    calls = []
    real = imageio.read_gray
    monkeypatch.setattr(imageio, "read_gray", lambda *a, **k: calls.append(a) or real(*a, **k))
    idx = browser.open_index(tmp_path / "big")
    assert len(idx.entries) == 3000 and not calls
    shown, n_pages = browser.page_slice(browser.filter_positions(idx), 1)
    assert n_pages == 3000 // browser.PAGE_SIZE + 1
    browser.thumbnails(idx, shown)
    assert len(calls) == browser.PAGE_SIZE
    assert browser.open_index(tmp_path / "big") is idx  # cached until the manifest changes


# -- results -------------------------------------------------------------------------------------

def test_run_view_reads_metrics_confusion_and_export(tmp_path):
    from semgen.classifier.evaluate import evaluate_probs, plot_confusion

    run = tmp_path / "run"
    run.mkdir()
    classes = ["clean", "bridge", "open"]
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 2, 0]] * 0.8 + 0.2 / 3
    m = evaluate_probs(y, probs, classes, n_boot=50)
    (run / "metrics.json").write_text(json.dumps(m))
    plot_confusion(m["confusion"], classes, run / "confusion.png")
    (run / "export.json").write_text(json.dumps({
        "fp32": {"file": "model.onnx", "bytes": 2_000_000, "latency": {"median_ms": 0.5}, "accuracy": 0.71},
        "int8": {"file": "model.int8.onnx", "bytes": 600_000, "latency": {"median_ms": 0.3}, "accuracy": 0.7},
        "top1_agreement": 0.98, "quantization": {"note": "post-training quantisation 'minmax'"}}))
    assert results.detect(run) == "run"
    v = results.load_results(run)
    md = v.markdown()
    assert f"| accuracy | {m['accuracy']:.3f} [" in md
    assert "| bridge | 2 | 0.667 | 1.000 | 0.800 |" in md  # per class: support, precision, recall, F1
    assert "| model.int8.onnx | 0.600 MB | 0.700 |" in md and "98.0 %" in md
    assert [Path(p).name for p, _ in v.images] == ["confusion.png"]


def test_results_bad_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(SemgenError, match="does not exist"):
        results.load_results(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(SemgenError, match="neither an ablation output dir"):
        results.load_results(tmp_path / "x")
    (tmp_path / "x" / "metrics.json").write_text('{"accuracy": 0.5, ')
    with pytest.raises(SemgenError, match="not valid JSON"):
        results.load_results(tmp_path / "x")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.jsonl").write_text("")
    v = results.load_results(tmp_path / "a")
    assert v.kind == "ablation" and "ablate --report" in v.notes[0]


def test_ablation_view_shows_every_cell_and_the_plots(tmp_path):
    """A real ``run_ablation`` (with a stand-in classifier) and its report, read back by the page."""
    from semgen.ablation import build_config, run_ablation
    from semgen.taxonomy import CLASSES

    def make(root, counts, seed):
        ds = DatasetDir.create(root)
        rng = np.random.default_rng(seed)
        with ds.appender() as app:
            for label, n in counts.items():
                for i in range(n):
                    data = encode_png(rng.integers(0, 255, (16, 16), dtype=np.uint8))
                    ds.write_file(f"images/{label}_{i}.png", data)
                    app.append({"file_name": f"images/{label}_{i}.png", "label": label, "source": "real",
                                "sha256": sha256_bytes(data), "width": 16, "height": 16})
        return root

    counts = {"clean": 4, "bridge": 4}
    real, test, syn = make(tmp_path / "real", counts, 1), make(tmp_path / "test", counts, 2), make(tmp_path / "syn", counts, 3)

    def train(data, out, *, seed=0, **kw):
        Path(out).mkdir(parents=True)
        n = sum(len(DatasetDir.open(p).records()) for p, _ in data)
        (Path(out) / "best.pt").write_text(json.dumps({"n": n, "seed": seed}))
        return {"images_per_s": 1000.0}

    def evaluate(run_dir, data, **kw):
        model = json.loads((Path(run_dir) / "best.pt").read_text())
        recs = DatasetDir.open(data).records()
        classes = [c for c in CLASSES if c in counts]
        yt = [classes.index(r["label"]) for r in recs]
        yp = [t if (i + model["seed"]) % (2 + model["n"] % 3) else 1 - t for i, t in enumerate(yt)]
        return {"files": [str(Path(data) / r["file_name"]) for r in recs], "y_true": yt, "y_pred": yp,
                "classes": classes}

    cfg = build_config({"real": str(real), "test": {"t": str(test)}, "synthetic": {"s": {"path": str(syn), "amount": 2}},
                        "shots": [2, "all"], "seeds": 3, "bootstrap": {"n": 100}})
    out = tmp_path / "abl"
    run_ablation(cfg, out, train_fn=train, eval_fn=evaluate, log=lambda m: None)
    summary = json.loads((out / "summary.json").read_text())
    v = results.load_results(out)
    assert v.kind == "ablation"
    cells = v.tables[0]
    assert len(cells.rows) == len(summary["t"]["groups"])
    g = summary["t"]["groups"][0]
    assert cells.rows[0][:3] == [g["arm"], str(g["shots"]), len(g["seeds"])]
    assert cells.rows[0][4] == f"{g['macro_f1']['mean']:.3f} [{g['macro_f1']['lo']:.3f}, {g['macro_f1']['hi']:.3f}]"
    assert {Path(p).name for p, _ in v.images} == {p.name for p in out.glob("ablation_*.png")} != set()


# -- classify ------------------------------------------------------------------------------------

def test_upload_checks_name_the_problem(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(encode_png(np.zeros((20, 30), np.uint8)))
    assert classify.check_upload(good).shape == (20, 30)
    with pytest.raises(SemgenError, match=rf"good.png is {good.stat().st_size} B; uploads are limited to 10 B"):
        classify.check_upload(good, max_bytes=10)
    with pytest.raises(SemgenError, match="too large"):
        classify.check_upload(good, max_pixels=100)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SemgenError, match="notes.txt is not a readable image"):
        classify.check_upload(tmp_path / "notes.txt")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SemgenError, match="empty file"):
        classify.check_upload(tmp_path / "empty.png")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:-30])
    with pytest.raises(SemgenError, match="cut.png is"):
        classify.check_upload(tmp_path / "cut.png")


def test_rejection_to_other_below_the_threshold():
    classes = ["clean", "bridge"]
    assert classify.decide(np.array([0.3, 0.7]), classes, 0.69) == ("bridge", 0.7, False)
    assert classify.decide(np.array([0.3, 0.7]), classes, 0.71) == ("other", 0.7, True)
    assert classify.decide(np.array([0.3, 0.7]), classes, 0.0)[0] == "bridge"


def test_grad_cam_points_at_the_evidence():
    """A bright patch is the only thing that raises the class score: the map lies on it."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    net = Net()
    with torch.no_grad():
        net.conv.weight.copy_(torch.rand(4, 1, 3, 3) + 0.1)
        net.fc.weight.copy_(torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, -1]]))
    img = np.zeros((32, 32), np.uint8)
    img[4:12, 20:28] = 255
    cam = classify.grad_cam(net, img, class_index=0)
    assert cam.shape == (32, 32) and cam.dtype == np.float32 and cam.min() >= 0 and cam.max() == 1
    inside = np.zeros((32, 32), bool)
    inside[3:13, 19:29] = True  # the patch and the conv's 1-px reach
    assert cam[inside].min() > 0 and cam[~inside].max() == 0
    assert net.training  # its mode is given back
    pic = draw.heatmap(img, cam)
    assert pic.shape == (32, 32, 3) and pic.dtype == np.uint8


# -- drawing -------------------------------------------------------------------------------------

def test_overlay_tints_only_the_mask_and_draws_boxes():
    img = np.full((20, 20), 100, np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    mask[5:8, 5:9] = 2
    out = draw.overlay(img, mask)
    changed = (out != 100).any(axis=2)
    assert changed.sum() == 12 and changed[5:8, 5:9].all()
    assert tuple(out[6, 6]) != tuple(draw.overlay(img, mask * 0 + (mask > 0))[6, 6])  # colour per instance
    boxed = draw.overlay(img, None, [[2, 2, 10, 10]])
    assert tuple(boxed[2, 2]) == draw.BOX_RGB and tuple(boxed[9, 9]) == draw.BOX_RGB and tuple(boxed[5, 5]) == (100,) * 3
    assert draw.thumbnail(np.zeros((10, 40), np.uint8), 20).shape == (20, 20)
    assert draw.placeholder(30, "not_an_image").shape == (30, 30, 3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch classifier at 32 px and its ONNX export (FP32 + INT8)."""
    from classifier_synth import make_dataset
    from semgen.classifier import export_run, train_classifier

    root = tmp_path_factory.mktemp("app_run")
    make_dataset(root / "data", n_per_class=6, seed=0)
    train_classifier(root / "data", root / "run", arch="mobilenetv3_small_050", size=32, epochs=1, batch_size=16,
                     min_epoch_images=16, num_threads=1, progress=False)
    export_run(root / "run", root / "data", auto_fix=False, latency_runs=2)
    return root


def test_classify_with_each_model_kind(tiny_run, tmp_path):
    from classifier_synth import texture

    img = tmp_path / "x.png"
    img.write_bytes(encode_png(texture("open", np.random.default_rng(3))))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x01" * 64)
    run = tiny_run / "run"
    assert classify.model_choices([run, tmp_path / "nope"]) == [str(run), str(run / "model.onnx"),
                                                                 str(run / "model.int8.onnx")]
    out = {}
    for model in classify.model_choices([run]):
        good, bad = classify.classify(model, [img, tmp_path / "bad.png"], threshold=0.0)
        assert "bad.png is" in bad.error and bad.picture is None
        assert set(good.probs) == {"bridge", "open", "particle"} and abs(sum(good.probs.values()) - 1) < 1e-5
        assert good.label == good.top == max(good.probs, key=good.probs.get) and not good.rejected
        out[Path(model).name] = good
    torch_, fp32 = out["run"], out["model.onnx"]
    assert torch_.top == fp32.top and abs(torch_.confidence - fp32.confidence) < 1e-3  # the same model
    assert torch_.picture.shape[1] > torch_.picture.shape[0] == fp32.picture.shape[0] == fp32.picture.shape[1]
    rejected = classify.classify(run, [img], threshold=1.0)[0]  # Grad-CAM beside the image for PyTorch only
    assert rejected.label == "other" and rejected.rejected and rejected.top == torch_.top
    with pytest.raises(SemgenError, match="does not exist"):
        classify.classify(tmp_path / "nope.onnx", [img])
    with pytest.raises(SemgenError, match="upload one or more images"):
        classify.classify(run, [])
    with pytest.raises(SemgenError, match="threshold must be in"):
        classify.classify(run, [img], threshold=2)
