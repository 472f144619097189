"""`semgen import`: ImageFolder -> dataset dir; colour / palette / alpha -> 8-bit gray; bad files rejected."""

import json

import numpy as np
import pytest
from curation_synth import lines, tree_digest
from PIL import Image

import semgen.cli
from semgen.curation.importer import import_imagefolder, parse_label_map
from semgen.errors import SemgenError
from semgen.imageio import read_gray
from semgen.manifests import DatasetDir, validate_dir


def cli(argv, monkeypatch):
    monkeypatch.setattr(semgen.cli, "COMMAND_MODULES", ("semgen.curation.commands",))
    return semgen.cli.main([str(a) for a in argv])


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "folder"
    gray = lines(48, noise_seed=1)
    rgb = np.stack([gray, np.roll(gray, 3, 1), 255 - gray], -1)
    (root / "bridges").mkdir(parents=True)
    (root / "Normal").mkdir()
    (root / "weird").mkdir()
    Image.fromarray(gray).save(root / "bridges" / "gray.png")
    Image.fromarray(rgb).save(root / "bridges" / "rgb.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(root / "bridges" / "palette.png")
    Image.fromarray(np.dstack([rgb, np.full(gray.shape, 200, np.uint8)])).save(root / "Normal" / "alpha.png")
    Image.fromarray(rgb).save(root / "Normal" / "photo.jpg", quality=90)
    Image.fromarray(gray).save(root / "Normal" / "photo.png")  # same stem as photo.jpg
    Image.fromarray(gray.astype(np.uint16) * 257).save(root / "weird" / "deep.tif")
    data = (root / "bridges" / "gray.png").read_bytes()
    (root / "weird" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "weird" / "zero.png").write_bytes(b"")
    (root / "weird" / "notes.png").write_bytes(b"not an image at all")
    Image.new("1", (10000, 9000)).save(root / "weird" / "huge.png")
    return root


def test_import_converts_links_and_rejects(folder, tmp_path):
    before = tree_digest(folder)
    res = import_imagefolder(folder, tmp_path / "ds", label_map={"weird": "other"})
    assert tree_digest(folder) == before
    ds = DatasetDir.open(tmp_path / "ds")
    recs = {r["source_file"]: r for r in ds.records()}
    assert set(recs) == {"bridges/gray.png", "bridges/rgb.png", "bridges/palette.png", "Normal/alpha.png",
                         "Normal/photo.jpg", "Normal/photo.png"}
    assert {r["label"] for r in recs.values()} == {"bridge", "clean"}
    assert all(r["source"] == "real" for r in recs.values())
    # plain 8-bit grayscale PNG: the very file, hard-linked
    g = recs["bridges/gray.png"]
    assert "original_file" not in g
    assert ds.path(g["file_name"]).stat().st_ino == (folder / "bridges" / "gray.png").stat().st_ino
    # everything else: a new 8-bit grayscale PNG equal to PIL's luminance conversion
    for rel in ("bridges/rgb.png", "bridges/palette.png", "Normal/alpha.png", "Normal/photo.jpg"):
        r = recs[rel]
        assert r["original_file"] == rel and r["file_name"].endswith(".png")
        with Image.open(ds.path(r["file_name"])) as im:
            assert im.format == "PNG" and im.mode == "L"
        with Image.open(folder / rel) as src:
            want = np.asarray(src.convert("RGB").convert("L") if src.mode == "P" else src.convert("L"))
        np.testing.assert_array_equal(read_gray(ds.path(r["file_name"])), want)
    # photo.jpg and photo.png do not overwrite each other
    assert recs["Normal/photo.jpg"]["file_name"] != recs["Normal/photo.png"]["file_name"]
    assert validate_dir(ds.root) == []
    rej = {json.loads(x)["source_file"]: json.loads(x)["reason"]
           for x in (ds.root / "rejected.jsonl").read_text().splitlines()}
    assert rej == {"weird/deep.tif": "high_bit_depth", "weird/truncated.png": "truncated",
                   "weird/zero.png": "empty_file", "weird/notes.png": "not_an_image", "weird/huge.png": "too_large"}
    assert len(res.rejected) == 5 and res.linked == 2 and res.converted == 4


def test_import_resumes_and_is_idempotent(folder, tmp_path):
    out = tmp_path / "ds"
    import_imagefolder(folder, out, label_map={"weird": "other"})
    manifest = (out / "metadata.jsonl").read_bytes()
    again = import_imagefolder(folder, out, label_map={"weird": "other"})
    assert again.added == 0 and again.skipped == 6
    assert (out / "metadata.jsonl").read_bytes() == manifest
    # a crash: the last line lost and a torn half line left behind
    lines_ = manifest.splitlines(keepends=True)
    (out / "metadata.jsonl").write_bytes(b"".join(lines_[:-1]) + lines_[-1][:20])
    with pytest.warns(UserWarning):
        resumed = import_imagefolder(folder, out, label_map={"weird": "other"})
    assert resumed.added == 1
    assert sorted((out / "metadata.jsonl").read_bytes().splitlines()) == sorted(manifest.splitlines())
    with pytest.raises(SemgenError, match="different configuration"):
        import_imagefolder(folder, out, label_map={"weird": "other"}, allow_16bit=True)


def test_allow_16bit(folder, tmp_path):
    res = import_imagefolder(folder, tmp_path / "ds", label_map={"weird": "other"}, allow_16bit=True)
    recs = {r["source_file"]: r for r in DatasetDir.open(tmp_path / "ds").records()}
    assert recs["weird/deep.tif"]["label"] == "other" and len(res.rejected) == 4


def test_cli(folder, tmp_path, monkeypatch, capsys):
    assert cli(["import", folder, "--out", tmp_path / "a", "--label-map", "weird=other"], monkeypatch) == 0
    assert "rejected weird/zero.png: empty_file" in capsys.readouterr().out
    assert cli(["import", folder, "--out", tmp_path / "b", "--label-map", "weird=other", "--strict"],
               monkeypatch) == 1
    assert cli(["import", folder, "--out", tmp_path / "c"], monkeypatch) == 2  # 'weird' is no class
    assert "unknown class 'weird'" in capsys.readouterr().err
    assert cli(["import", folder, "--out", tmp_path / "d", "--label-map", "weird"], monkeypatch) == 2
    assert cli(["import", tmp_path / "missing", "--out", tmp_path / "e"], monkeypatch) == 2
    with pytest.raises(SemgenError):
        parse_label_map(["=bridge"])


def test_real_train_imports(real_data, tmp_path):
    res = import_imagefolder(real_data / "train", tmp_path / "real")
    assert res.added == 240 and not res.rejected
    recs = DatasetDir.open(tmp_path / "real").records()
    assert {r["label"] for r in recs} == {"bridge", "clean", "cmp", "crack", "ler", "open", "other", "particle", "via"}
