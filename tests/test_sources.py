"""One data-source layer (issue 15): ``DIR[=W]`` parsing, dataset dirs and ImageFolders read the same way
by every command that reads images, and the one ``link_or_copy``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from semgen.errors import ManifestError, SemgenError
from semgen.imageio import encode_png, sha256_bytes
from semgen.manifests import DataSource, DatasetDir, TornLineWarning, iter_source, parse_source, read_source
from semgen.manifests.ops import link_or_copy

LABELS = {"bridge": 3, "clean": 2}


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return [encode_png(rng.integers(0, 255, (32, 32), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same images as a dataset dir and as an ImageFolder (with a labels.csv naming views)."""
    root = tmp_path_factory.mktemp("src")
    ds = DatasetDir.create(root / "ds")
    folder = root / "real" / "train"
    rows = ["file,label,view"]
    with ds.appender() as app:
        for k, (label, n) in enumerate(LABELS.items()):
            for i, data in enumerate(_images(n, k)):
                name = f"images/{label}/{label}_{i}.png"
                ds.write_file(name, data)
                app.append({"file_name": name, "label": label, "source": "procedural", "sha256": sha256_bytes(data),
                            "width": 32, "height": 32, "meta": {"view": "top-down"}})
                (folder / label).mkdir(parents=True, exist_ok=True)
                (folder / label / f"{label}_{i}.png").write_bytes(data)
                rows.append(f"train/{label}/{label}_{i}.png,{label},cross-section")
    ds.write_info(command="test")
    (root / "real" / "labels.csv").write_text("\n".join(rows) + "\n")
    return ds.root, folder


@pytest.mark.parametrize("arg, want", [
    ("d", (Path("d"), 1.0)), ("d=0.5", (Path("d"), 0.5)), ("a=b=2", (Path("a=b"), 2.0)),
    (("d", 3), (Path("d"), 3.0)), (DataSource(Path("d"), 2.0), (Path("d"), 2.0)), (Path("d"), (Path("d"), 1.0)),
])
def test_parse_source(arg, want):
    assert tuple(parse_source(arg)) == want


@pytest.mark.parametrize("arg, message", [
    ("d=half", r"^--data d=half: weight 'half' is not a number \(use DIR=WEIGHT\)$"),
    ("d=0", r"^--data d: weight must be a positive number, got 0$"),
    ("d=-1", r"weight must be a positive number, got -1"),
    ("d=nan", r"weight must be a positive number, got nan"),
    ("d=inf", r"weight must be a positive number, got inf"),
    ("=2", r"no DIR before '='"),
])
def test_parse_source_refuses_a_bad_weight(arg, message):
    with pytest.raises(SemgenError, match=message):
        parse_source(arg)


def test_a_path_with_equals_that_exists_is_a_path(tmp_path):
    d = tmp_path / "w=1"
    d.mkdir()
    assert parse_source(str(d)) == DataSource(d, 1.0)


def test_diffusion_data_refuses_a_bad_weight(pair):
    """The diffusion copy used to read ``DIR=half`` as a path named so, silently."""
    from semgen.generators.diffusion.data import load_training_set, parse_data_arg

    with pytest.raises(SemgenError, match="weight 'half' is not a number"):
        parse_data_arg(f"{pair[0]}=half")
    with pytest.raises(SemgenError, match="weight 'half' is not a number"):
        load_training_set([f"{pair[0]}=half"], 32)
    assert parse_data_arg(f"{pair[0]}=2") == (str(pair[0]), 2.0)


def test_dataset_dir_and_imagefolder_give_the_same_images(pair):
    ds, folder = pair
    a, b = read_source(ds), read_source(folder)
    key = lambda items: sorted((it.label, it.path.read_bytes()) for it in items)  # noqa: E731
    assert key(a) == key(b) and len(a) == 5
    assert all(it.line == k for k, it in enumerate(a, 1)) and all(it.line is None for it in b)
    assert a[0].record["source"] == "procedural"
    rec = next(it.record for it in b if it.path.name == "bridge_0.png")
    # an ImageFolder's made-up record: real, with the view its labels.csv names
    assert rec == {"file_name": "bridge/bridge_0.png", "label": "bridge", "source": "real", "view": "cross-section"}


def test_every_reader_uses_the_layer(pair):
    """train/evaluate, diffuse train, ablate, curate and sheet see the same (image, label) pairs."""
    from semgen.ablation.subsets import load_pool
    from semgen.classifier.data import load_image_set
    from semgen.curation.curate import load_any_items
    from semgen.generators.diffusion.data import load_training_set
    from semgen.generators.procedural.sheet import images_by_class

    for root in pair:
        want = sorted((str(it.path), it.label) for it in read_source(root))
        s = load_image_set(str(root), size=32)
        assert sorted((f, s.classes[y]) for f, y in zip(s.files, s.labels.tolist())) == want
        assert sorted((it.path, it.label) for it in load_pool(root).items) == want
        assert sorted((it.path, it.label) for it in load_any_items(root)) == want
        assert sorted((str(p), c) for c, ps in images_by_class(root).items() for p in ps) == want
        ts = load_training_set([(root, 1.0)], 32)
        assert len(ts) == len(want) and sorted(p[-1] for p in ts.parts) == sorted(
            {"bridge": "bridge defect", "clean": "clean pattern, no defect"}[c] for _, c in want)


def test_bad_manifest_lines(tmp_path, pair):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(pair[0], root)
    lines = (root / "metadata.jsonl").read_text().splitlines()
    lines[1] = "not json"
    lines[2] = lines[2].replace('"label":"bridge"', '"label":"nonsense"')
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n" + '{"torn')
    got = []
    items = list(iter_source(root, on_bad=lambda n, obj, why: got.append((n, obj is None, why))))
    assert [it.line for it in items] == [1, 4, 5]
    assert [(n, unparsed) for n, unparsed, _ in got] == [(2, True), (3, False), (6, True)]
    assert "not canonical" in got[1][2] and "torn last line" in got[2][2]
    # without on_bad: an invalid record is an error naming its line; an unreadable one a warning
    with pytest.raises(ManifestError, match=r"metadata.jsonl:3: .*not canonical"), pytest.warns(TornLineWarning):
        list(iter_source(root))
    lines[2] = lines[0]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert len(list(iter_source(root))) == 4
    assert [x.category for x in w] == [TornLineWarning] and "metadata.jsonl:2: skipping unreadable line" in str(w[0].message)


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(SemgenError, match=r"^test set t .*nope does not exist$"):
        read_source(tmp_path / "nope", what="test set t")
    DatasetDir.create(tmp_path / "empty").write_info(command="test")
    with pytest.raises(SemgenError, match=r"^data .*empty holds no images$"):
        read_source(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(_images(1, 0)[0])
    assert [(it.label, it.record) for it in read_source(tmp_path / "flat", labels=False)] == [
        (None, {"file_name": "a.png"})]
    with pytest.raises(SemgenError, match="no images in class sub-folders"):
        read_source(tmp_path / "flat")


def test_link_or_copy(tmp_path, monkeypatch):
    src = tmp_path / "a.png"
    src.write_bytes(b"abc")
    dst = link_or_copy(src, tmp_path / "x" / "b.png")
    assert dst.read_bytes() == b"abc" and os.path.samefile(src, dst)
    assert link_or_copy(src, dst) == dst and sorted(os.listdir(dst.parent)) == ["b.png"]  # no temporary left

    def no_links(*a):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    dst2 = link_or_copy(src, tmp_path / "y" / "b.png")
    assert dst2.read_bytes() == b"abc" and not os.path.samefile(src, dst2)
    assert sorted(os.listdir(dst2.parent)) == ["b.png"]
