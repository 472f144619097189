"""Config objects of curate, export and train (semgen.configs): one-line errors naming the field, JSON round trips,
the recorded settings, and the keyword form that callers used before configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from curation_synth import lines, make_dataset

from semgen.classifier.export_config import ExportConfig
from semgen.curation.curate import curate
from semgen.curation.curate_config import CurateConfig
from semgen.errors import SemgenError
from semgen.manifests import DatasetDir


@pytest.mark.parametrize("values,message", [
    ({"per_class": -5}, "--per-class must be a positive integer, got -5 (CurateConfig.per_class)"),
    ({"per_class": True}, "--per-class must be a positive integer, got True"),
    ({"workers": 2.5}, "--workers must be a positive integer, got 2.5"),
    ({"max_local": float("nan")}, "--max-local must be a finite number, got nan (CurateConfig.max_local)"),
    ({"rms_floor": -0.1}, "--rms-floor must be >= 0, got -0.1"),
    ({"phash_radius": -2}, "--phash-radius must be >= -1, got -2"),
    ({"z_max": 0}, "--z-max must be > 0, got 0"),
    ({"dihedral": "no"}, "--no-dihedral must be true or false, got 'no' (CurateConfig.dihedral)"),
    ({"cache": 3}, "--cache / --no-cache must be true or false, got 3"),
    ({"hash_radiuss": 3}, "--hash-radiuss is not a setting (CurateConfig.hash_radiuss)"),
    ({"input": None}, "INPUT must be a path, got None (CurateConfig.input)"),
])
def test_curate_config_names_the_bad_field(values, message):
    with pytest.raises(SemgenError) as e:
        CurateConfig.make(**{"input": "in", "out": "out", **values})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("values,message", [
    ({"calib_max": 0}, "--calib-max must be a positive integer, got 0 (ExportConfig.calib_max)"),
    ({"latency_runs": -3}, "--latency-runs must be a positive integer, got -3"),
    ({"tolerance": float("nan")}, "--tolerance must be a finite number, got nan (ExportConfig.tolerance)"),
    ({"tolerance": float("inf")}, "--tolerance must be a finite number, got inf"),
    ({"seed": -1}, "--seed must be >= 0, got -1"),
    ({"qat": "yes"}, "--qat / --ptq must be true or false, got 'yes'"),
    ({"calib": []}, "--calib must be one or more paths, got []"),
    ({"run_dir": None}, "RUN_DIR must be a path, got None (ExportConfig.run_dir)"),
])
def test_export_config_names_the_bad_field(values, message):
    with pytest.raises(SemgenError) as e:
        ExportConfig.make(**{"run_dir": "run", **values})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_configs_are_frozen_and_refuse_a_missing_field():
    cfg = ExportConfig(run_dir="run")
    with pytest.raises(Exception):
        cfg.tolerance = 0.5  # a config is a value: a changed copy is model_copy(update=...) / make()
    with pytest.raises(SemgenError, match=r"^--out is required \(CurateConfig.out\)$"):
        CurateConfig.make(input="in")


def test_config_json_round_trip(tmp_path):
    cur = CurateConfig.make(input=tmp_path / "in", out=tmp_path / "out", reference=tmp_path / "ref", per_class=3,
                            cache=tmp_path / "c.sqlite", phash_radius=-1, z_max=4.5, dihedral=False, strict=True)
    exp = ExportConfig.make(run_dir=tmp_path / "run", calib=[tmp_path / "a", "b=2"], data=tmp_path / "t",
                            tolerance=-1.0, max_tries=5, qat=False, allow_a16w8=False)
    for cfg in (cur, exp, CurateConfig(input="i", out="o"), ExportConfig(run_dir="r")):
        text = cfg.to_json()
        plain = json.loads(text)  # plain JSON: paths as text, tuples as lists
        assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in plain.values())
        back = type(cfg).from_json(text)
        assert back == cfg and back.to_json() == text
        assert type(cfg).make(**plain) == cfg
    assert exp.calib == (str(tmp_path / "a"), "b=2") and cur.cache == str(tmp_path / "c.sqlite")
    with pytest.raises(SemgenError, match=r"--tolerance must be a finite number"):
        ExportConfig.from_json(exp.to_json().replace('"tolerance": -1.0', '"tolerance": "x"'))


def test_keyword_form_is_a_thin_shim(tmp_path):
    """``curate(dir, out, **kw)`` and ``export_run(run, calib, **kw)`` build the same config;
    None means the default, and a config plus keywords is a mistake."""
    from semgen.classifier.export import export_run

    assert CurateConfig.coerce("in", out="out", per_class=None, hash_radius=None, cache=False) == \
        CurateConfig(input="in", out="out", cache=False)
    cfg = ExportConfig(run_dir="run", calib=("c",))
    assert ExportConfig.coerce(cfg) is cfg
    with pytest.raises(TypeError, match="set data in it instead"):
        export_run(cfg, data="d")
    with pytest.raises(SemgenError, match="--calib-max must be a positive integer, got 0"):
        export_run("run", "c", calib_max=0)  # the keyword form validates the same way, before any work


def test_curate_records_its_settings_as_the_config(tmp_path):
    ds = make_dataset(tmp_path / "in", [("a", "bridge", lines(64, bridge=(20, 15))), ("b", "clean", lines(64))])
    bands = tmp_path / "bands.json"
    bands.write_text('{"z_max": 5}')
    cfg = CurateConfig(input=str(ds.root), out=str(tmp_path / "o"), config=str(bands), per_class=1, cache=False,
                       hash_radius=12)
    res = curate(cfg)
    rec = DatasetDir.open(tmp_path / "o").read_info()["configs"]["curate"]
    assert rec == res.config and json.loads(json.dumps(rec)) == rec
    assert rec["thresholds"]["z_max"] == 5 and rec["input"] == str(Path(ds.root).resolve())
    assert not set(CurateConfig.RUN_ONLY) & set(rec)  # workers, cache, ... do not decide the output
    # the record is the config, less what only says how the run went
    fields = {k: v for k, v in rec.items() if k in CurateConfig.model_fields}
    again = CurateConfig.make(out=cfg.out, cache=False, **fields)
    assert again == cfg.model_copy(update={"input": str(Path(ds.root).resolve()), "config": str(bands.resolve())})
    # the keyword form writes the same decision into another dir
    res2 = curate(ds.root, tmp_path / "o2", config=bands, per_class=1, cache=False, hash_radius=12)
    assert [it.id for it in res2.kept] == [it.id for it in res.kept] and len(res.kept) == 2


# --- semgen train (TrainConfig) -------------------------------------------------------------------
from semgen.classifier.augment import NO_AUGMENT, AugmentConfig  # noqa: E402
from semgen.classifier.distill import DistillConfig  # noqa: E402
from semgen.classifier.qat import QATConfig  # noqa: E402
from semgen.classifier.train_config import TrainConfig  # noqa: E402


@pytest.mark.parametrize("values,message", [
    ({"epochs": 0}, "--epochs must be >= 1, got 0 (TrainConfig.epochs)"),
    ({"lr": -1}, "--lr must be > 0, got -1 (TrainConfig.lr)"),
    ({"lr": float("nan")}, "--lr must be a finite number, got nan (TrainConfig.lr)"),
    ({"val_fraction": 1.0}, "--val-fraction must be < 1, got 1.0 (TrainConfig.val_fraction)"),
    ({"batch_size": 1}, "--batch must be >= 2, got 1 (TrainConfig.batch_size)"),
    ({"size": 16}, "--size must be >= 32, got 16 (TrainConfig.size)"),
    ({"epochs": 2.5}, "--epochs must be an integer, got 2.5 (TrainConfig.epochs)"),
    ({"num_threads": -1}, "--threads must be >= 0, got -1 (TrainConfig.num_threads)"),
    ({"progress": "no"}, "--no-progress must be true or false, got 'no' (TrainConfig.progress)"),
    ({"data": []}, "DATA must be one or more dataset dirs, got [] (TrainConfig.data)"),
    ({"colour": 1}, "--colour is not a setting (TrainConfig.colour)"),
])
def test_train_config_errors_are_one_line_naming_the_field(values, message):
    with pytest.raises(SemgenError) as e:
        TrainConfig.make(**{"data": "d", "out": "o", **values})
    assert str(e.value) == message


def test_train_config_json_round_trip_keeps_nested_settings():
    cfg = TrainConfig(data=[("a", 2), Path("b"), "c=0.5"], out=Path("o"), val=["v"], classes=["bridge", "clean"],
                      augment=NO_AUGMENT, qat=True, heads="hierarchical", init="semgen", mixup=0,
                      distill=DistillConfig(["t"], transfer=["x=2"]))
    assert cfg.data == (("a", 2), "b", "c=0.5") and cfg.out == "o" and cfg.qat == QATConfig()
    assert cfg.mixup == 0 and isinstance(cfg.mixup, int)  # kept as given: the run's request records it so
    back = TrainConfig.from_json(cfg.to_json())
    assert back == cfg and back.augment == NO_AUGMENT and json.loads(cfg.to_json())["qat"]["weight_bits"] == 8
    assert TrainConfig.from_json(TrainConfig(data="d", out="o").to_json()) == TrainConfig(data="d", out="o")
    assert TrainConfig(data="d", out="o", qat=False).qat is None
    with pytest.raises(SemgenError, match=r"^augment is not a AugmentConfig: .*\(TrainConfig.augment\)$"):
        TrainConfig.make(data="d", out="o", augment={"flips": True})


def test_train_keyword_and_config_forms_are_the_same_run(tmp_path):
    from semgen.classifier import train_classifier

    ds = make_dataset(tmp_path / "d", [(f"b{i}", "bridge", lines(48, bridge=(10 + i, 12))) for i in range(4)]
                      + [(f"c{i}", "clean", lines(48)) for i in range(4)])
    kw = dict(arch="mobilenetv3_small_050", size=32, batch_size=4, num_threads=1, progress=False, epochs=1,
              min_epoch_images=8, seed=2, val_fraction=0.5, warmup_epochs=0, augment=AugmentConfig(erase_p=0))
    s1 = train_classifier(ds.root, tmp_path / "kw", **kw)
    cfg = TrainConfig(data=ds.root, out=str(tmp_path / "cfg"), **kw)
    s2 = train_classifier(cfg)
    req = [json.loads((tmp_path / r / "config.json").read_text())["request"] for r in ("kw", "cfg")]
    assert req[0] == req[1] and req[0]["warmup_epochs"] == 0 and req[0]["augment"]["erase_p"] == 0
    assert (tmp_path / "kw/model.safetensors").read_bytes() == (tmp_path / "cfg/model.safetensors").read_bytes()
    assert s1["best_epoch"] == s2["best_epoch"]
    # the finished keyword run is the config's run: matched by its request, nothing trained again
    again = train_classifier(cfg.model_copy(update={"out": str(tmp_path / "kw")}))
    assert again == json.loads((tmp_path / "kw/summary.json").read_text())
    with pytest.raises(SemgenError, match=r"^--epochs must be >= 1, got 0 \(TrainConfig.epochs\)$"):
        train_classifier(cfg, epochs=0)  # keywords with a config replace its settings, validated again
    with pytest.raises(SemgenError, match=r"^--epochs must be >= 1, got 0 \(TrainConfig.epochs\)$"):
        train_classifier(ds.root, tmp_path / "x", epochs=0)  # the keyword form validates the same way
