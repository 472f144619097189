"""Hostile-user probes (issue 14, items 3, 6, 7, 8) as a table: command, bad input, expected exit code and
one-line message, and what must (not) be on disk afterwards. Each probe runs ``semgen.cli.main`` in
this process on a small procedural dataset made once per module."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from semgen.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    from semgen.generators.procedural.generation import generate

    root = tmp_path_factory.mktemp("hostile")
    generate("clean", 4, root / "ds", size=64, progress=False)
    return root / "ds"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny trained classifier run (one epoch on synthetic textures), for the classifier probes."""
    from classifier_synth import make_dataset
    from semgen.classifier import train_classifier

    root = tmp_path_factory.mktemp("hostile_run")
    make_dataset(root / "data", n_per_class=6, seed=0)
    train_classifier(root / "data", root / "run", arch="mobilenetv3_small_050", size=32, batch_size=32, epochs=1,
                     min_epoch_images=32, num_threads=1, progress=False)
    return root / "run"


def _read_only_dir(tmp: Path) -> Path:
    """A dir that cannot be written: mode 555, or (root ignores modes) a path under sysfs."""
    if os.geteuid() == 0:
        return Path("/sys/semgen-probe")
    d = tmp / "ro"
    d.mkdir(exist_ok=True)
    d.chmod(0o555)
    return d


def _break_record(d: Path, how: str) -> Path:
    """Break the second record of dataset dir ``d``: its image's bytes or length, its image, or its line."""
    lines = (d / "metadata.jsonl").read_text().splitlines()
    img = d / json.loads(lines[1])["file_name"]
    if how == "sha256":
        img.write_bytes(img.read_bytes()[:-1] + bytes([img.read_bytes()[-1] ^ 1]))
    elif how == "truncated":
        img.write_bytes(img.read_bytes()[:40])
    elif how == "missing":
        img.unlink()
    elif how == "unparsable":
        (d / "metadata.jsonl").write_text("\n".join(lines[:1] + [lines[1][:25]] + lines[2:]) + "\n")
    return d


def _onnx_bytes() -> bytes:
    """A well-formed ONNX file with semgen's metadata whose one node is an operator nobody has."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    m = helper.make_model(graph)
    for k, v in (("semgen.classes", '["bridge", "open", "particle"]'), ("semgen.size", "32")):
        prop = m.metadata_props.add()
        prop.key, prop.value = k, v
    return m.SerializeToString()


def _bad_manifest(d: Path) -> None:
    """A dataset dir with an invalid line, an absolute path and a torn middle line."""
    lines = (d / "metadata.jsonl").read_text().splitlines()
    r = json.loads(lines[0])
    no_label = {k: v for k, v in r.items() if k != "label"} | {"id": "no_label"}
    lines = lines[:2] + ['{"torn": tru'] + lines[2:] + [json.dumps(r | {"id": "abs", "file_name": "/etc/passwd"}),
                                                        json.dumps(no_label)]
    (d / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def _copy_ds(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# (name, argv with {ds} / {tmp}, set-up(tmp, ds) or None, exit code, message regex, paths that must not exist)
PROBES = [
    ("procedural --n huge", ["procedural", "--class", "clean", "--n", "100000000000000000000", "--out", "{tmp}/o"],
     None, 2, r"--n must be at most 10,000,000 images of one class per run", ["o"]),
    ("procedural symlinked class dir",
     ["procedural", "--class", "clean", "--n", "6", "--size", "64", "--out", "{tmp}/o", "--no-progress"],
     lambda t, d: _copy_ds(d, t / "o") and (t / "outside").mkdir() is None
     and os.rename(t / "o" / "images" / "clean", t / "outside" / "clean") is None
     and os.symlink(t / "outside" / "clean", t / "o" / "images" / "clean"),
     2, r"images/clean is a symbolic link; semgen writes only inside", []),
    ("curate --per-class -5", ["curate", "{ds}", "--out", "{tmp}/o", "--per-class", "-5", "--no-cache"],
     None, 2, r"--per-class must be a positive integer, got -5", ["o"]),
    ("curate --strict, bad manifest lines",
     ["curate", "{tmp}/bad", "--out", "{tmp}/o", "--strict", "--no-cache"],
     lambda t, d: _bad_manifest(_copy_ds(d, t / "bad")), 1, None, []),
    ("curate --against a non-image", ["curate", "{ds}", "--out", "{tmp}/o", "--against", "{tmp}/x.png", "--no-cache"],
     lambda t, d: (t / "x.png").write_text("not a png"), 2,
     r"--against .*x.png: 1 of 1 test image\(s\) could not be read .*the leakage check needs every one", []),
    ("curate --report under a file", ["curate", "{ds}", "--out", "{tmp}/o", "--report", "{tmp}/f/r.html", "--no-cache"],
     lambda t, d: (t / "f").write_text("a file"), 2, r"cannot write the report .*the curated dir .* is complete", []),
    ("diffuse train --lr -1", ["diffuse", "train", "--data", "{ds}", "--out", "{tmp}/m", "--lr", "-1"],
     None, 2, r"--lr must be a positive number, got -1", ["m"]),
    ("diffuse train --ema-decay 2", ["diffuse", "train", "--data", "{ds}", "--out", "{tmp}/m", "--ema-decay", "2"],
     None, 2, r"--ema-decay must be in \[0, 1\), got 2", ["m"]),
    ("diffuse train --caption-dropout 2",
     ["diffuse", "train", "--data", "{ds}", "--out", "{tmp}/m", "--caption-dropout", "2"],
     None, 2, r"--caption-dropout must be a probability in \[0, 1\], got 2", ["m"]),
    ("diffuse train --resolution 100000",
     ["diffuse", "train", "--data", "{ds}", "--out", "{tmp}/m", "--resolution", "100000"],
     None, 2, r"--resolution must be in \[1, 1024\], got 100000", ["m"]),
    ("diffuse train --out a file", ["diffuse", "train", "--data", "{ds}", "--out", "{tmp}/f"],
     lambda t, d: (t / "f").write_text("a file"), 2, r"--out .*f exists and is not a directory", []),
    ("diffuse sample --n 0", ["diffuse", "sample", "--class", "bridge", "--n", "0", "--out", "{tmp}/o"],
     None, 2, r"--n must be an integer in \[1, 10000000\], got 0", ["o"]),
    ("diffuse sample --guidance nan",
     ["diffuse", "sample", "--class", "bridge", "--n", "1", "--guidance", "nan", "--out", "{tmp}/o"],
     None, 2, r"--guidance must be a finite number, got nan", ["o"]),
    ("diffuse sample, a prompt naming two classes",
     ["diffuse", "sample", "--prompt", "SEM image of a bridge defect and an open", "--n", "1", "--out", "{tmp}/o"],
     None, 2, r"the prompt names several classes \(bridge, open\)", ["o"]),
    ("diffuse refine --limit -2", ["diffuse", "refine", "--input", "{ds}", "--out", "{tmp}/o", "--limit", "-2"],
     None, 2, r"--limit must be >= 1, got -2", ["o"]),
    ("diffuse refine --guidance nan", ["diffuse", "refine", "--input", "{ds}", "--out", "{tmp}/o", "--guidance", "nan"],
     None, 2, r"--guidance must be a finite number, got nan", ["o"]),
    # merge: a bad record is one line and nothing is written (issue 14 items 7, 8)
    *[(f"merge, {how} record", ["merge", "{tmp}/a", "{ds}", "--out", "{tmp}/m"],
       (lambda h: lambda t, d: _break_record(_copy_ds(d, t / "a"), h))(how), 2, message + r".*--skip-bad", ["m"])
      for how, message in (("sha256", r"does not match its sha256"), ("truncated", r"does not match its sha256"),
                           ("missing", r"\.png is missing"), ("unparsable", r"metadata.jsonl:2: unreadable line"))],
    ("merge --out a file", ["merge", "{ds}", "--out", "{tmp}/f"], lambda t, d: (t / "f").write_text("a file"), 2,
     r"merge output .*f exists and is not a directory", []),
    # an --out that cannot be written: one line, before any work (issue 14 item 8)
    *[(f"{cmd} --out {kind}", argv + ["--out", out], setup, 2, message, [])
      for cmd, argv in (("train", ["train", "--data", "{ds}", "--epochs", "1"]),
                        ("export", ["export", "{run}", "--calib", "{ds}"]),
                        ("ablate", ["ablate", "--estimate"]))
      for kind, out, setup, message in (
          ("a file", "{tmp}/f", lambda t, d: (t / "f").write_text("a file"), r"--out .*f exists and is not a directory"),
          ("under a file", "{tmp}/f/sub", lambda t, d: (t / "f").write_text("a file"),
           r"--out .*f/sub cannot be made: .*f is not a directory"),
          ("read-only", "{ro}/out", None, r"--out .*out cannot be (written|made)"))],
    ("evaluate --out-name under a file", ["evaluate", "{run}", "--data", "{ds}", "--out-name", "summary.json/m.json"],
     None, 2, r"--out-name's folder .*summary.json exists and is not a directory", []),
    ("evaluate --n-boot 0", ["evaluate", "{run}", "--data", "{ds}", "--n-boot", "0"],
     None, 2, r"--n-boot must be an integer in \[1, 1,000,000\], got 0", []),
    ("export --calib-max 0", ["export", "{run}", "--calib", "{ds}", "--calib-max", "0", "--out", "{tmp}/e"],
     None, 2, r"--calib-max must be a positive integer, got 0", ["e"]),
    ("export --latency-runs 0", ["export", "{run}", "--calib", "{ds}", "--latency-runs", "0", "--out", "{tmp}/e"],
     None, 2, r"--latency-runs must be a positive integer, got 0", ["e"]),
    ("export --tolerance nan", ["export", "{run}", "--calib", "{ds}", "--tolerance", "nan", "--out", "{tmp}/e"],
     None, 2, r"--tolerance must be a finite number, got nan", ["e"]),
    ("predict, a garbage .onnx", ["predict", "{tmp}/g.onnx", "{ds}/images/clean/clean_000000.png"],
     lambda t, d: (t / "g.onnx").write_bytes(b"garbage\n" * 10), 2, r"g.onnx is not a readable ONNX model", []),
    ("predict, a truncated .onnx", ["predict", "{tmp}/t.onnx", "{ds}/images/clean/clean_000000.png"],
     lambda t, d: (t / "t.onnx").write_bytes(_onnx_bytes()[:60]), 2, r"t.onnx is not a readable ONNX model", []),
    ("predict, an .onnx onnxruntime refuses", ["predict", "{tmp}/b.onnx", "{ds}/images/clean/clean_000000.png"],
     lambda t, d: (t / "b.onnx").write_bytes(_onnx_bytes()), 2, r"b.onnx cannot be loaded by onnxruntime", []),
    # sheets: bounded before numpy is asked for the memory (issue 14 item 6)
    ("sheet --cell 100000", ["sheet", "{ds}", "--cell", "100000", "--out", "{tmp}/s.png"],
     None, 2, r"--cell must be at most 1024 pixels, got 100000", ["s.png"]),
    ("sheet --per-class huge", ["sheet", "{ds}", "--per-class", "100000000000000000000", "--out", "{tmp}/s.png"],
     None, 2, r"the sheet would be .* pixels, over the 268,435,456 semgen draws", ["s.png"]),
]


@pytest.mark.parametrize("name,argv,setup,code,message,absent", PROBES, ids=[p[0] for p in PROBES])
def test_probe(name, argv, setup, code, message, absent, ds, tmp_path, capsys, request):
    if setup is not None:
        setup(tmp_path, ds)
    run = request.getfixturevalue("run") if any("{run}" in a for a in argv) else None  # trained once, if needed
    before = {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()}
    rc = main([a.format(ds=ds, tmp=tmp_path, run=run, ro=_read_only_dir(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("semgen: error:")]
    assert rc == code, (rc, err[-2000:])
    assert "Traceback" not in err
    if message is not None:
        assert len(errors) == 1 and re.search(message, errors[0]), err[-2000:]
    for rel in absent:
        assert not (tmp_path / rel).exists(), f"{rel} was written"
    assert {p: p.read_bytes() for p in ds.rglob("*") if p.is_file()} == before  # the input is untouched


def test_curate_strict_reports_every_dropped_line(ds, tmp_path, capsys):
    """Invalid, absolute-path and torn middle lines each show up as rejected, and in the summary."""
    bad = _copy_ds(ds, tmp_path / "bad")
    _bad_manifest(bad)
    assert main(["curate", str(bad), "--out", str(tmp_path / "o"), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"curated 7 images .*: kept 4, rejected 3", out), out
    rejected = [json.loads(x) for x in (tmp_path / "o" / "rejected.jsonl").read_text().splitlines()]
    reasons = sorted(r["curation"]["reasons"][0].split(":")[0] for r in rejected)
    assert reasons == ["invalid_record", "invalid_record", "unreadable_line"]


def test_curation_cache_applies_max_pixels(ds, tmp_path, capsys):
    """A cached analysis does not let an image past a smaller --max-pixels."""
    cache = tmp_path / "c.sqlite"
    assert main(["curate", str(ds), "--out", str(tmp_path / "a"), "--cache", str(cache)]) == 0
    assert main(["curate", str(ds), "--out", str(tmp_path / "b"), "--cache", str(cache), "--max-pixels", "100"]) == 0
    assert "kept 0, rejected 4" in capsys.readouterr().out


class _EchoPipe:
    """A stand-in diffusion pipeline that returns its input images (refine's bookkeeping only)."""

    resolution = 64
    semgen_config: dict = {}

    def __init__(self, model_dir):
        self.model_dir = str(model_dir)

    def __call__(self, prompt, image=None, **kw):
        from types import SimpleNamespace

        return SimpleNamespace(images=list(image))


def test_refine_writes_a_repeated_input_record_once(ds, tmp_path, capsys, monkeypatch):
    from semgen.generators.diffusion import pipeline
    from semgen.generators.diffusion.refine import refine
    from semgen.manifests import DatasetDir

    monkeypatch.setattr(pipeline, "pipeline_for", lambda pipe, **kw: pipe)  # the stand-in is its own img2img

    dup = _copy_ds(ds, tmp_path / "dup")
    first = (dup / "metadata.jsonl").read_text().splitlines()[0]
    with open(dup / "metadata.jsonl", "a") as f:
        f.write(first + "\n")
    res = refine(input=dup, out=tmp_path / "o", pipe=_EchoPipe(tmp_path), progress=False)
    ids = [r["id"] for r in DatasetDir(tmp_path / "o").records()]
    assert res["written"] == 4 and len(ids) == len(set(ids)) == 4
    assert "1 repeated record(s) refined once" in capsys.readouterr().err


def test_import_resume_over_a_hard_link_leaves_no_temporary(ds, tmp_path):
    from semgen.curation.importer import import_imagefolder

    folder = tmp_path / "folder" / "clean"
    folder.mkdir(parents=True)
    for p in sorted((ds / "images" / "clean").glob("*.png")):
        os.link(p, folder / p.name)
    import_imagefolder(tmp_path / "folder", tmp_path / "o")
    (tmp_path / "o" / "metadata.jsonl").write_text("")  # a resume that finds the files already linked
    import_imagefolder(tmp_path / "folder", tmp_path / "o")
    assert not [p for p in (tmp_path / "o").rglob(".*.tmp")]


def test_semgen_warnings_print_as_one_line(ds, tmp_path, capsys):
    """Through the CLI a semgen warning is one ``semgen: warning:`` line (not Python's two raw lines),
    and the hook is gone once main returns."""
    import warnings

    torn = _copy_ds(ds, tmp_path / "torn")
    with open(torn / "metadata.jsonl", "a") as f:
        f.write('{"file_name": "images/cle')
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # over this module's "ignore"
        assert main(["info", str(torn)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"semgen: warning: {torn / 'metadata.jsonl'}: skipping torn last line (an interrupted write)"], err
    assert warnings.showwarning is before


def test_only_semgen_warnings_are_reformatted():
    from semgen.cli import _is_semgen_warning
    from semgen.manifests.jsonl import TornLineWarning

    assert _is_semgen_warning(TornLineWarning, "/anywhere/x.py")
    assert _is_semgen_warning(UserWarning, str(Path(__file__).parents[1] / "semgen" / "cli.py"))
    assert not _is_semgen_warning(UserWarning, "/site-packages/torch/nn/modules/module.py")
    assert not _is_semgen_warning(FutureWarning, str(Path(__file__).parents[1] / "semgen" / "cli.py"))


def test_evaluate_counts_a_repeated_record_once(run, tmp_path, capsys):
    """A record listed twice in the manifest is one test image, with a warning (issue 14 item 7)."""
    data = _copy_ds(run.parent / "data", tmp_path / "data")
    lines = (data / "metadata.jsonl").read_text().splitlines()
    (data / "metadata.jsonl").write_text("\n".join(lines + lines[:1]) + "\n")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # over this module's "ignore"
        assert main(["evaluate", str(run), "--data", str(data), "--n-boot", "10", "--out-name", "dup.json"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{len(lines)} images:"), out
    assert "semgen: warning: 1 repeated record(s) in the evaluation data counted once" in err, err
    assert json.loads((run / "dup.json").read_text())["n"] == len(lines)
