"""The dataset dir contract: schema, append-only writing, torn lines, validate, merge, split."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from semgen.cli import main
from semgen.errors import ManifestError, SemgenError
from semgen.imageio import encode_png, sha256_bytes
from semgen.manifests import (
    DatasetDir, TornLineWarning, check_relpath, iter_jsonl, merge, split, summarize, validate_dir,
)


def make_dir(root, labels=("bridge", "clean"), n=3, seed=0, source="procedural"):
    ds = DatasetDir.create(root)
    rng = np.random.default_rng(seed)
    with ds.appender() as app:
        for label in labels:
            for i in range(n):
                img = rng.integers(0, 256, (16, 24), dtype=np.uint8)
                data = encode_png(img)
                name = f"images/{label}/{label}_{i:06d}.png"
                ds.write_file(name, data)
                app.append({"id": f"{label}_{i:06d}", "file_name": name, "label": label, "source": source,
                            "sha256": sha256_bytes(data), "width": 24, "height": 16})
    ds.write_info(command="test")
    return ds


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.png", "a/../../x.png", "a//b.png", "C:/x.png",
                                 "a\\b.png", "./a.png", ""])
def test_relpath_rejects_escapes(bad):
    with pytest.raises(ManifestError):
        check_relpath(bad)


def test_reader_rejects_absolute_file_name(tmp_path):
    ds = make_dir(tmp_path / "d", n=1)
    with open(ds.manifest_path, "a") as f:
        f.write(json.dumps({"file_name": "/abs/x.png", "label": "clean", "source": "real",
                            "sha256": "0" * 64, "width": 1, "height": 1}) + "\n")
    with pytest.raises(ManifestError, match="relative"):
        ds.records()


def test_torn_last_line_skipped_then_repaired(tmp_path):
    ds = make_dir(tmp_path / "d", n=2)
    with open(ds.manifest_path, "ab") as f:
        f.write(b'{"file_name": "images/cle')
    with pytest.warns(TornLineWarning):
        assert len(ds.records()) == 4
    with pytest.warns(TornLineWarning):
        app = ds.appender()  # repairs the tail before appending
    app.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ds.records()) == 4
    assert ds.manifest_path.read_bytes().endswith(b"\n")


def test_corrupt_middle_line_strict_error(tmp_path):
    ds = make_dir(tmp_path / "d", n=1)
    lines = ds.manifest_path.read_text().splitlines()
    ds.manifest_path.write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    with pytest.raises(ManifestError, match=":2:"):
        list(iter_jsonl(ds.manifest_path, strict=True))
    with pytest.warns(TornLineWarning):
        assert len(ds.records()) == 2
    assert any("unreadable" in p for p in validate_dir(ds.root))


def test_info_and_validate(tmp_path, capsys):
    ds = make_dir(tmp_path / "d")
    s = summarize(ds.root)
    assert s["class_counts"] == {"bridge": 3, "clean": 3} and s["sources"] == {"procedural": 6}
    assert json.loads(ds.info_path.read_text())["class_counts"] == {"bridge": 3, "clean": 3}
    assert main(["validate", str(ds.root)]) == 0
    assert main(["info", str(ds.root)]) == 0
    assert "bridge" in capsys.readouterr().out
    # tamper with one file: validate must fail and name it
    victim = ds.path("images/clean/clean_000001.png")
    victim.write_bytes(encode_png(np.zeros((16, 24), np.uint8)))
    problems = validate_dir(ds.root)
    assert len(problems) == 1 and "clean_000001" in problems[0] and "sha256" in problems[0]
    assert main(["validate", str(ds.root)]) == 1
    victim.unlink()
    assert "missing" in validate_dir(ds.root)[0]


def test_missing_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    with pytest.raises(SemgenError, match="not a dataset dir"):
        DatasetDir.open(tmp_path / "plain")


def test_other_schema_refused(tmp_path):
    ds = make_dir(tmp_path / "d", n=1)
    info = json.loads(ds.info_path.read_text())
    info["schema_version"] = 99
    ds.info_path.write_text(json.dumps(info))
    with pytest.raises(ManifestError, match="schema 99"):
        DatasetDir.create(ds.root)


def test_config_mismatch(tmp_path):
    ds = make_dir(tmp_path / "d", n=1)
    ds.write_info(config_key="procedural/bridge", config={"seed": 1, "size": 64})
    ds.check_config("procedural/bridge", {"seed": 1, "size": 64})
    with pytest.raises(SemgenError, match="size"):
        ds.check_config("procedural/bridge", {"seed": 1, "size": 128})


def test_merge_dedupes_and_sorts(tmp_path):
    a = make_dir(tmp_path / "a", labels=("bridge",), n=3, seed=1)
    b = make_dir(tmp_path / "b", labels=("clean",), n=2, seed=2)
    out = merge([b.root, a.root, a.root], tmp_path / "m")
    recs = out.records()
    assert [r["id"] for r in recs] == sorted(r["id"] for r in recs)
    assert len(recs) == 5 and validate_dir(out.root) == []
    # same key, different bytes: refused
    c = make_dir(tmp_path / "c", labels=("bridge",), n=1, seed=9)
    with pytest.raises(SemgenError, match="differs"):
        merge([a.root, c.root], tmp_path / "m2")


def test_split_is_stratified_and_disjoint(tmp_path):
    src = make_dir(tmp_path / "s", labels=("bridge", "clean"), n=10)
    parts = split(src.root, {str(tmp_path / "tr"): 0.8, str(tmp_path / "va"): 0.2}, seed=3)
    tr, va = (parts[str(tmp_path / n)].records() for n in ("tr", "va"))
    assert len(tr) == 16 and len(va) == 4
    assert {r["id"] for r in tr}.isdisjoint({r["id"] for r in va})
    assert sorted(r["label"] for r in va) == ["bridge", "bridge", "clean", "clean"]


def test_unwritable_output(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SemgenError, match="not a directory"):
        DatasetDir.create(f)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(SemgenError, match="not empty"):
        DatasetDir.create(tmp_path / "busy")
