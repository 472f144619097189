"""`semgen curate` end to end on tiny synthetic dataset dirs: decisions, reasons, bad input, cache, output."""

import json

import cv2
import numpy as np
import pytest
from conftest import disk_full_on_link
from curation_synth import lines, make_dataset, tree_digest

import semgen.cli
from semgen.curation import analyze as analyze_mod
from semgen.curation.analyze import dihedral_variants
from semgen.curation.curate import REJECTED_NAME, curate
from semgen.errors import SemgenError
from semgen.imageio import encode_png, sha256_bytes
from semgen.manifests import DatasetDir, validate_dir

S = 64  # image side: small keeps the suite fast


def cli(argv, monkeypatch, tmp_path):
    monkeypatch.setattr(semgen.cli, "COMMAND_MODULES", ("semgen.curation.commands",))
    monkeypatch.setenv("SEMGEN_CACHE_DIR", str(tmp_path / "clicache"))
    return semgen.cli.main([str(a) for a in argv])


@pytest.fixture
def dataset(tmp_path):
    b0 = lines(S, bridge=(20, 15), noise_seed=1)
    imgs = [
        ("b0", "bridge", b0),
        ("b0_renoised", "bridge", lines(S, bridge=(20, 15), noise_seed=2)),
        ("b0_copy", "bridge", b0.copy()),
        ("b1", "bridge", lines(S, bridge=(40, 45), noise_seed=3)),
        ("b2", "bridge", lines(S, bridge=(30, 30), noise_seed=4)),
        ("c0", "clean", lines(S, ler_seed=10, noise_seed=5)),
        ("c1", "clean", lines(S, ler_seed=11, noise_seed=6, period=12)),
        ("c2", "clean", lines(S, ler_seed=12, noise_seed=7, period=8)),
        ("c_blank", "clean", np.full((S, S), 128, np.uint8)),
        ("c_dark", "clean", (lines(S, ler_seed=13) // 12).astype(np.uint8)),
        ("c_blur", "clean", cv2.GaussianBlur(lines(S, ler_seed=14, noise=0), (0, 0), 5)),
        ("p_leak", "particle", dihedral_variants(lines(S, ler_seed=20, bridge=(25, 25), noise_seed=30))[5]),
        ("p_ok", "particle", lines(S, ler_seed=21, bridge=(35, 20), noise_seed=31)),
    ]
    ds = make_dataset(tmp_path / "in", imgs)
    # bad inputs, each with a manifest line whose sha256 matches the bad bytes
    png = encode_png(lines(S, ler_seed=40))
    u16 = (lines(S, ler_seed=41).astype(np.uint16) * 257)
    bad = {
        "truncated": png[: len(png) // 2],
        "zero": b"",
        "notimage": b"this is not an image\n" * 20,
        "sixteen": encode_png(u16),
        "huge": _huge_png(),
    }
    with ds.appender() as app:
        for name, data in bad.items():
            fn = f"images/other/{name}.png"
            ds.write_file(fn, data)
            app.append({"file_name": fn, "id": name, "label": "other", "source": "procedural",
                        "sha256": sha256_bytes(data), "width": S, "height": S})
        app.append({"file_name": "images/other/gone.png", "id": "gone", "label": "other", "source": "procedural",
                    "sha256": "0" * 64, "width": S, "height": S})
        app.append({"file_name": "../escape.png", "id": "escape", "label": "other", "source": "procedural",
                    "sha256": "0" * 64, "width": S, "height": S})
    test = make_dataset(tmp_path / "test", [("t0", "particle", lines(S, ler_seed=20, bridge=(25, 25), noise_seed=3)),
                                            ("t1", "clean", lines(S, ler_seed=99, noise_seed=4))], source="real")
    return ds, test


def _huge_png() -> bytes:
    """A real, valid 10000 x 9000 1-bit PNG (a few kB; never decoded by curate)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (10000, 9000)).save(buf, format="PNG")
    return buf.getvalue()


def _reasons(out):
    return {json.loads(line).get("id", json.loads(line).get("record", {}).get("id")):
            json.loads(line)["curation"]["reasons"] for line in (out / REJECTED_NAME).read_text().splitlines()}


def test_decisions_reasons_and_output(dataset, tmp_path):
    ds, test = dataset
    before = tree_digest(ds.root)
    res = curate(ds.root, tmp_path / "out", against=test.root, cache=tmp_path / "c.sqlite", workers=1)
    out = tmp_path / "out"
    assert tree_digest(ds.root) == before  # the input is never modified
    kept = {it.id for it in res.kept}
    assert kept == {"b1", "b2", "c0", "c1", "c2", "p_ok"} | ({"b0"} if "b0" in kept else {"b0_renoised"})
    r = _reasons(out)
    # exactly one of b0 / b0_renoised / b0_copy stays; the copies name it
    head = "b0" if "b0" in kept else "b0_renoised"
    assert r["b0_copy"] in ([f"duplicate_of:{head}"], ["duplicate_of:b0"])
    other = ({"b0", "b0_renoised"} - {head}).pop()
    assert r[other] == [f"near_duplicate_of:{head}"]
    assert r["c_blank"] == ["blank"]
    assert "too_dark" in r["c_dark"]
    assert r["c_blur"] == ["too_blurry"]
    assert r["p_leak"] == ["leak:t0"]  # a flipped copy of a test image
    assert r["truncated"] == ["unreadable:truncated"]
    assert r["zero"] == ["unreadable:empty_file"]
    assert r["notimage"] == ["unreadable:not_an_image"]
    assert r["sixteen"] == ["unreadable:high_bit_depth"]
    assert r["huge"] == ["unreadable:too_large"]
    assert r["gone"] == ["unreadable:missing"]
    assert r["escape"][0].startswith("invalid_record:")
    assert res.leaks[0][:2] == ("p_leak", "t0")
    # the output is a valid dataset dir of hard links with metrics and curation in every record
    assert validate_dir(out) == []
    recs = DatasetDir.open(out).records()
    assert [x["id"] for x in recs] == [it.id for it in res.kept]  # input order
    for x in recs:
        assert x["curation"]["status"] == "kept" and x["curation"]["reasons"] == []
        assert set(x["metrics"]) >= {"sharpness", "glcm_contrast", "period_px"}
        assert (out / x["file_name"]).stat().st_ino == (ds.root / x["file_name"]).stat().st_ino
    rej = [json.loads(line) for line in (out / REJECTED_NAME).read_text().splitlines()]
    assert all(x["curation"]["status"] == "rejected" and x["curation"]["reasons"] for x in rej)
    assert next(x for x in rej if x.get("id") == "b0_copy")["curation"]["duplicate_of"] in ("b0", "b0_renoised")
    info = json.loads((out / "dataset.json").read_text())
    assert info["curation"]["kept"] == len(recs) and info["class_counts"]["bridge"] == 3


def test_cache_second_run_computes_nothing(dataset, tmp_path, monkeypatch):
    ds, test = dataset
    calls = []
    real = analyze_mod.analyze_image
    monkeypatch.setattr(analyze_mod, "analyze_image", lambda img: calls.append(1) or real(img))
    cache = tmp_path / "c.sqlite"
    r1 = curate(ds.root, tmp_path / "o1", against=test.root, cache=cache)
    n_readable = sum(1 for it in r1.items if it.ok) + 2  # + the two test images
    assert len(calls) == r1.computed == n_readable and r1.cached == 0
    manifest1 = (tmp_path / "o1" / "metadata.jsonl").read_bytes()
    calls.clear()
    r2 = curate(ds.root, tmp_path / "o1", against=test.root, cache=cache)  # same out: resumes / idempotent
    assert len(calls) == 0 and r2.computed == 0 and r2.cached == n_readable
    assert (tmp_path / "o1" / "metadata.jsonl").read_bytes() == manifest1
    # no cache: everything computed again
    r3 = curate(ds.root, tmp_path / "o3", against=test.root, cache=False)
    assert r3.computed == n_readable


def test_workers_give_identical_output(dataset, tmp_path):
    ds, _ = dataset
    curate(ds.root, tmp_path / "w1", workers=1, cache=False)
    curate(ds.root, tmp_path / "w2", workers=2, cache=False)
    for name in ("metadata.jsonl", REJECTED_NAME):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_per_class_keeps_the_best(tmp_path):
    imgs = [(f"c{k}", "clean", lines(S, ler_seed=k, noise_seed=k, noise=4 + 6 * k)) for k in range(5)]
    imgs += [(f"o{k}", "open", lines(S, ler_seed=50 + k, noise_seed=k)) for k in range(2)]
    ds = make_dataset(tmp_path / "in", imgs)
    res = curate(ds.root, tmp_path / "out", per_class=2, cache=False)
    by = {}
    for it in res.items:
        by.setdefault(it.label, []).append(it)
    kept = {it.id for it in res.kept}
    best_clean = sorted(by["clean"], key=lambda it: -it.score)[:2]
    assert kept == {it.id for it in best_clean} | {"o0", "o1"}
    assert all(r == ["per_class_limit:2"] for it in res.rejected for r in [it.reasons])


def test_reference_and_config_bands(tmp_path):
    ref = make_dataset(tmp_path / "ref", [(f"r{k}", "clean", lines(S, ler_seed=k, noise_seed=k, noise=8))
                                          for k in range(8)], source="real")
    imgs = [("typical", "clean", lines(S, ler_seed=30, noise_seed=30, noise=8)),
            ("noisier_than_ref", "clean", lines(S, ler_seed=31, noise_seed=31, noise=30)),
            ("bridge", "bridge", lines(S, ler_seed=32, bridge=(20, 20), noise=8))]
    ds = make_dataset(tmp_path / "in", imgs)
    res = curate(ds.root, tmp_path / "out", reference=ref.root, cache=False)
    got = {it.id: it for it in res.items}
    noisy = got["noisier_than_ref"]
    assert got["typical"].reasons == [] and got["typical"].score > noisy.score
    assert noisy.reasons and all(r.startswith("atypical_for_class:") for r in noisy.reasons)
    assert "atypical_for_class:snr_db" in noisy.reasons and noisy.zscores["noise_sigma"] > 3
    assert got["bridge"].reasons == []  # no bridge reference: judged against the pooled one
    cfg = tmp_path / "bands.yaml"
    cfg.write_text("bands:\n  bridges: {period_px: [20, null]}\nsanity: {min_std: 1}\n")
    res = curate(ds.root, tmp_path / "out2", config=cfg, cache=False)
    assert {it.id: it.reasons for it in res.items}["bridge"] == ["atypical_for_class:period_px"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("bands:\n  bridge: {sharpnes: [1, 2]}\n")
    with pytest.raises(SemgenError, match="unknown metric 'sharpnes'"):
        curate(ds.root, tmp_path / "out3", config=bad, cache=False)


def test_cli_exit_codes_and_report(dataset, tmp_path, monkeypatch, capsys):
    ds, test = dataset
    report = tmp_path / "r" / "report.html"
    assert cli(["curate", ds.root, "--out", tmp_path / "o", "--against", test.root, "--report", report,
                "--workers", "1"], monkeypatch, tmp_path) == 0
    text = report.read_text()
    for needle in ("Leakage against the test set (1 hits)", "near_duplicate_of", "unreadable:truncated",
                   "data:image/png;base64,", "Pixel-identical groups (1)"):
        assert needle in text
    assert "kept" in capsys.readouterr().out
    assert cli(["curate", ds.root, "--out", tmp_path / "o", "--against", test.root, "--strict"],
               monkeypatch, tmp_path) == 1
    # a different configuration into the same out dir, a missing input, the input as output: exit 2
    assert cli(["curate", ds.root, "--out", tmp_path / "o", "--per-class", "1"], monkeypatch, tmp_path) == 2
    assert cli(["curate", tmp_path / "nope", "--out", tmp_path / "o4"], monkeypatch, tmp_path) == 2
    assert cli(["curate", ds.root, "--out", ds.root], monkeypatch, tmp_path) == 2
    assert "semgen: error:" in capsys.readouterr().err


def test_against_plain_folder_and_empty_input(tmp_path):
    from PIL import Image

    leak = lines(S, ler_seed=60, bridge=(30, 30), noise_seed=1)
    folder = tmp_path / "testset" / "Some Odd Folder"
    folder.mkdir(parents=True)
    Image.fromarray(lines(S, ler_seed=60, bridge=(30, 30), noise_seed=2)[::-1].copy()).save(folder / "t.png")
    ds = make_dataset(tmp_path / "in", [("x", "bridge", leak), ("y", "bridge", lines(S, ler_seed=61))])
    res = curate(ds.root, tmp_path / "out", against=tmp_path / "testset", cache=False)
    assert {it.id: it.reasons for it in res.items} == {"x": ["leak:Some Odd Folder/t.png"], "y": []}
    empty = DatasetDir.create(tmp_path / "empty")
    empty.write_info(command="test")
    res = curate(empty.root, tmp_path / "out2", cache=False)
    assert res.kept == [] and (tmp_path / "out2" / "metadata.jsonl").read_bytes() == b""


# -- interrupted runs (issue 14 item 4) ------------------------------------------------------------

def _files(root) -> dict:
    """{relative path: bytes} of every file under ``root`` but dataset.json (it holds timestamps)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def test_disk_full_while_linking_leaves_nothing_and_the_rerun_resumes(dataset, tmp_path, monkeypatch, capsys):
    """A full disk mid-way through the links: a one-line error, no half-made --out, and the same
    command then writes what an uninterrupted run writes (it used to be refused as "not empty")."""
    import semgen.curation.curate as cur

    curate(dataset[0].root, tmp_path / "ref", cache=False)
    disk_full_on_link(monkeypatch, cur)
    argv = ["curate", dataset[0].root, "--out", tmp_path / "o", "--no-cache"]
    assert cli(argv, monkeypatch, tmp_path) == 2
    err = capsys.readouterr().err
    assert "semgen: error: disk full" in err and "re-run the same command to resume" in err
    assert not (tmp_path / "o").exists()  # the run created it, so it takes it away again
    assert cli(argv, monkeypatch, tmp_path) == 0
    assert _files(tmp_path / "o") == _files(tmp_path / "ref")


def test_kill_9_while_linking_then_the_same_command_resumes(dataset, tmp_path):
    """A real kill -9 in the middle of the links leaves a dir marked unfinished; the re-run clears it
    and finishes, with the same files as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys

    from semgen.manifests.ops import PARTIAL_NAME

    curate(dataset[0].root, tmp_path / "ref", cache=False)
    out = tmp_path / "o"
    script = (
        "import os, signal, semgen.curation.curate as c\n"
        "real, n = c.link_or_copy, [0]\n"
        "def link(src, dst):\n"
        "    n[0] += 1\n"
        "    if n[0] == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(src, dst)\n"
        "c.link_or_copy = link\n"
        f"c.curate({str(dataset[0].root)!r}, {str(out)!r}, cache=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / PARTIAL_NAME).exists() and list((out / "images").rglob("*.png"))  # killed mid-way
    assert not (out / "metadata.jsonl").exists()
    curate(dataset[0].root, out, cache=False)
    assert not (out / PARTIAL_NAME).exists()
    assert _files(out) == _files(tmp_path / "ref") and validate_dir(out) == []


def test_rerun_over_a_finished_output_keeps_it_in_place(dataset, tmp_path):
    """A finished --out is a dataset dir: a re-run rewrites it in place (no mark), and a failing
    re-run (here: another configuration) leaves it whole."""
    from semgen.manifests.ops import PARTIAL_NAME

    curate(dataset[0].root, tmp_path / "o", cache=False)
    before = _files(tmp_path / "o")
    with pytest.raises(SemgenError, match="different configuration"):
        curate(dataset[0].root, tmp_path / "o", cache=False, per_class=1)
    assert _files(tmp_path / "o") == before and not (tmp_path / "o" / PARTIAL_NAME).exists()
    curate(dataset[0].root, tmp_path / "o", cache=False)
    assert _files(tmp_path / "o") == before


def test_an_output_of_another_analysis_version_is_refused_by_name(dataset, tmp_path):
    import json

    out = tmp_path / "o"
    curate(dataset[0].root, out, cache=False)
    info = json.loads((out / "dataset.json").read_text())
    info["configs"]["curate"]["analysis_version"] = "m2.h2.t2"  # made by an older semgen
    (out / "dataset.json").write_text(json.dumps(info))
    before = _files(out)
    with pytest.raises(SemgenError, match=r"version m2\.h2\.t2; this one's is m3.*another --out"):
        curate(dataset[0].root, out, cache=False)
    assert _files(out) == before


def test_strict_fails_on_one_invalid_manifest_line_through_the_cli(tmp_path, monkeypatch, capsys):
    """Issue 15: ``curate --strict`` on a manifest whose only problem is one invalid line exits 1,
    with the library's own message on stderr (the CLI does not decide it again); without --strict, 0."""
    from semgen.errors import StrictFailure

    ds = make_dataset(tmp_path / "in", [("a", "bridge", lines(S, bridge=(20, 15))), ("b", "clean", lines(S))])
    with open(ds.manifest_path, "a") as f:
        f.write('{"file_name": "images/x.png", "label": "bridge"}\n')  # lacks source, sha256, size
    assert cli(["curate", ds.root, "--out", tmp_path / "o1", "--no-cache"], monkeypatch, tmp_path) == 0
    capsys.readouterr()
    assert cli(["curate", ds.root, "--out", tmp_path / "o2", "--no-cache", "--strict"], monkeypatch, tmp_path) == 1
    out, err = capsys.readouterr()
    assert "kept 2, rejected 1" in out and "invalid_record" in out  # the summary is still printed
    assert err.startswith("semgen: error: 0 unreadable image(s) and 1 invalid manifest line(s)"), err
    assert "--strict makes that an error" in err and "semgen:" not in out
    assert DatasetDir.open(tmp_path / "o2").records() and (tmp_path / "o2" / REJECTED_NAME).exists()
    with pytest.raises(StrictFailure) as e:  # the library says the same, and hands back what it did
        curate(ds.root, tmp_path / "o3", cache=False, strict=True)
    assert len(e.value.result.kept) == 2 and len(e.value.result.bad_lines) == 1
