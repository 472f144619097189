"""The dataset dir contract: schema, append-only writing, torn lines, validate, merge, split."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from conftest import disk_full_on_link

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


# -- merge of bad inputs and interrupted merges (issue 14 items 4, 7, 8) -----------------------------

def _corrupt(ds, how: str) -> None:
    """Break the second record of ``ds``: its bytes, its length, its file, or its manifest line."""
    lines = ds.manifest_path.read_text().splitlines()
    rec = json.loads(lines[1])
    p = ds.path(rec["file_name"])
    if how == "sha256":
        p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1]))
    elif how == "truncated":
        p.write_bytes(p.read_bytes()[:20])
    elif how == "missing":
        p.unlink()
    elif how == "unparsable":
        lines[1] = lines[1][:30]
        ds.manifest_path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("how,message", [
    ("sha256", r"does not match its sha256"), ("truncated", r"does not match its sha256"),
    ("missing", r"bridge_000001.png is missing"), ("unparsable", r"metadata.jsonl:2: unreadable line"),
])
def test_merge_refuses_a_bad_record_and_writes_nothing(tmp_path, capsys, how, message):
    a = make_dir(tmp_path / "a", labels=("bridge",), n=3, seed=1)
    b = make_dir(tmp_path / "b", labels=("clean",), n=2, seed=2)
    _corrupt(a, how)
    assert main(["merge", str(a.root), str(b.root), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err) and "--skip-bad" in err, err
    assert not (tmp_path / "m").exists()
    # with --skip-bad: the bad record is left out, counted, and the rest is whole
    assert main(["merge", str(a.root), str(b.root), "--out", str(tmp_path / "m"), "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    assert "4 records (1 bad record(s) left out)" in out and "left out 1 bad input record" in err
    assert validate_dir(tmp_path / "m") == []
    assert "bridge_000001" not in {r["id"] for r in DatasetDir.open(tmp_path / "m").records()}


def test_merge_refuses_one_file_name_for_two_images(tmp_path):
    a = make_dir(tmp_path / "a", labels=("bridge",), n=1, seed=1)
    b = make_dir(tmp_path / "b", labels=("bridge",), n=1, seed=2)
    lines = b.manifest_path.read_text().splitlines()
    b.manifest_path.write_text(json.dumps(json.loads(lines[0]) | {"id": "other"}) + "\n")
    with pytest.raises(SemgenError, match="images/bridge/bridge_000000.png is a different file in two inputs"):
        merge([a.root, b.root], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_resumes_after_a_full_disk_and_after_kill_9(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    from semgen.manifests import ops
    from semgen.manifests.ops import PARTIAL_NAME

    a = make_dir(tmp_path / "a", labels=("bridge",), n=3, seed=1)
    b = make_dir(tmp_path / "b", labels=("clean",), n=3, seed=2)
    merge([a.root, b.root], tmp_path / "ref")
    ref = (tmp_path / "ref" / "metadata.jsonl").read_bytes()
    disk_full_on_link(monkeypatch, ops)
    with pytest.raises(OSError):
        merge([a.root, b.root], tmp_path / "m")
    assert not (tmp_path / "m").exists()
    merge([a.root, b.root], tmp_path / "m")
    assert (tmp_path / "m" / "metadata.jsonl").read_bytes() == ref and validate_dir(tmp_path / "m") == []
    # a real kill -9 after two links: the dir stays marked; the same merge clears it and finishes
    out = tmp_path / "k"
    script = (
        "import os, signal\nfrom semgen.manifests import ops\n"
        "real, n = ops.link_or_copy, [0]\n"
        "def link(src, dst):\n"
        "    n[0] += 1\n"
        "    if n[0] == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(src, dst)\n"
        "ops.link_or_copy = link\n"
        f"ops.merge([{str(a.root)!r}, {str(b.root)!r}], {str(out)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / PARTIAL_NAME).exists() and not (out / "metadata.jsonl").exists()
    assert main(["merge", str(a.root), str(b.root), "--out", str(out)]) == 0
    assert (out / "metadata.jsonl").read_bytes() == ref and not (out / PARTIAL_NAME).exists()
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        p.name for p in (tmp_path / "ref").rglob("*") if p.is_file())
