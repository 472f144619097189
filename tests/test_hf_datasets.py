"""Dataset dirs load with Hugging Face ``datasets`` imagefolder (what the README says), and a loaded
row's metadata remakes its image bit for bit. Offline: the imagefolder builder ships with ``datasets``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semgen.generators.procedural.generation import generate, generate_one
from semgen.generators.procedural.registry import create_generator
from semgen.manifests import DatasetDir


@pytest.fixture
def load_imagefolder(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)

    def load(root):
        # a fresh cache per test: a cached Arrow file would hide what the loader makes of the dir
        return datasets.load_dataset("imagefolder", data_dir=str(root), split="train",
                                     cache_dir=str(tmp_path / "hf-cache"))
    return load


def test_generated_dir_loads_and_a_row_remakes_its_image(tmp_path, load_imagefolder):
    root = tmp_path / "gen"
    # seed 0: 5 of these 8 images' seeds were >= 2^63 before generator version 5 (read as float64)
    for label in ("bridge", "clean"):
        generate(label, 4, root, seed=0, size=32, progress=False)
    recs = {r["id"]: r for r in DatasetDir(root).records()}
    ds = load_imagefolder(root)
    assert len(ds) == len(recs) == 8
    assert ds.features["seed"].dtype == "int64"  # not float64: every seed is below 2^63
    for row in ds:
        rec = recs[row["id"]]
        assert row["seed"] == rec["seed"] and isinstance(row["seed"], int) and 0 <= row["seed"] < 2 ** 63
        gen = create_generator(row["generator"]["name"])
        assert row["generator"]["version"] == gen.version
        # the row's params (Arrow fills another class's parameters with None) fix every value
        params = {k: v for k, v in row["params"].items() if v is not None}
        assert params == rec["params"]
        again = generate_one(gen, row["seed"], row["width"], params)
        loaded = np.asarray(row["image"].convert("L"))
        np.testing.assert_array_equal(again.image, loaded)
        assert again.params == rec["params"]


def test_imported_imagefolder_dir_loads(tmp_path, load_imagefolder):
    from semgen.curation.importer import import_imagefolder

    src = tmp_path / "folder"
    rng = np.random.default_rng(0)
    arrays = {}
    for cls, n in (("bridges", 2), ("Normal", 3)):
        (src / cls).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 256, (24, 40), dtype=np.uint8)
            Image.fromarray(a).save(src / cls / f"{i}.png")
            arrays[(cls, i)] = a
    out = tmp_path / "imported"
    import_imagefolder(src, out)
    ds = load_imagefolder(out)
    assert len(ds) == 5
    assert sorted(ds["label"]) == ["bridge", "bridge", "clean", "clean", "clean"]
    recs = {r["source_file"]: r for r in DatasetDir(out).records()}
    for row in ds:
        rec = recs[row["source_file"]]
        assert row["label"] == rec["label"] and row["source"] == "real"
        cls, name = row["source_file"].split("/")
        np.testing.assert_array_equal(np.asarray(row["image"].convert("L")), arrays[(cls, int(name[:-4]))])
