"""The configs moved onto semgen.configs.Config (pretrain, ablation, diffusion train, augment / QAT /
distill) record exactly what the dataclasses before them recorded, so existing runs resume and cached
ablation cells are found. ``fixtures/config_records.json`` was written by the code before the move
(at b438f53): a tiny ``semgen pretrain`` run's state.json, the request of out/pt/lite0_in_fine_38400,
ablation ``config.json`` and cells, the diffusion ``train_config.json``, and the classifier records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semgen.errors import SemgenError

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "config_records.json").read_text())


def _rooted(obj, root: Path):
    """The fixture's ``{ROOT}`` placeholders as paths under ``root``."""
    return json.loads(json.dumps(obj).replace("{ROOT}", str(root)))


def _pretrain_config(args):
    from semgen.cli import build_parser
    from semgen.pretrain.commands import config_from_args

    return config_from_args(build_parser().parse_args(["pretrain", "--out", "unused", *args]))


@pytest.mark.parametrize("run", ["pretrain_cli", "pretrain_lite0_38400"])
def test_pretrain_request_is_the_old_state_json_request(run):
    """The same flags give the request that the old code stored in state.json (byte for byte)."""
    old = FIXTURE[run]
    cfg = _pretrain_config(old["args"])
    assert cfg.to_dict() == old["state_config"]
    assert json.dumps(cfg.to_dict()) == json.dumps(old["state_config"])  # key order and int / float kept
    if run == "pretrain_cli":
        assert json.dumps(cfg.to_dict()) == old["state_config_text"] == old["config_json_pretrain_text"]


def test_pretrain_request_with_data_and_ints(tmp_path):
    (tmp_path / "d").mkdir()
    from semgen.pretrain import PretrainConfig

    old = FIXTURE["pretrain_data"]
    cfg = PretrainConfig(**_rooted(old["kwargs"], tmp_path.resolve()))
    assert json.dumps(cfg.to_dict()) == _rooted(old["request_text"], tmp_path.resolve())
    assert cfg.aux_weight == 2 and isinstance(cfg.aux_weight, int)
    assert PretrainConfig.from_json(cfg.to_json()) == cfg


def test_a_run_started_by_the_old_code_resumes(tmp_path):
    """A run dir whose state.json holds the old code's request is resumed, not refused."""
    from semgen.pretrain import pretrain

    old = FIXTURE["pretrain_cli"]
    cfg = _pretrain_config(old["args"])
    run = tmp_path / "r"
    pretrain(run, cfg, workers=0, threads=1, stop_after=1, progress=False)
    state = run / (run / "LATEST").read_text().strip() / "state.json"
    d = json.loads(state.read_text())
    d["config"] = json.loads(old["state_config_text"])  # what the old code wrote
    state.write_text(json.dumps(d))
    res = pretrain(run, cfg, workers=0, threads=1, progress=False)
    assert res["done"] and res["step"] == cfg.steps == 2
    with pytest.raises(SemgenError, match="other settings"):
        pretrain(run, cfg.model_copy(update={"lr": 0.002}), workers=0, threads=1, progress=False)


@pytest.mark.parametrize("name", sorted(FIXTURE["ablation"]))
def test_ablation_config_and_cells_are_the_old_ones(name, tmp_path):
    from semgen.ablation.config import AblationConfig, build_config
    from semgen.ablation.matrix import expand

    old = FIXTURE["ablation"][name]
    root = tmp_path.resolve()
    cfg = build_config(_rooted(old["raw"], root), preset=old["preset"])
    assert json.dumps(cfg.to_dict()) == _rooted(old["to_dict_text"], root)
    # the cell keys hash these values as given
    assert json.dumps(cfg.classifier) == old["classifier_text"] and json.dumps(cfg.finetune) == old["finetune_text"]
    assert [f"{s.arm.name}|{s.shots}|{s.seed}|{s.init.name}" for s in expand(cfg)] == old["cells"]
    back = AblationConfig.from_json(cfg.to_json())
    assert back == cfg and back.to_dict() == cfg.to_dict()


def test_diffusion_train_config_json_is_the_old_one(tmp_path):
    from semgen.generators.diffusion.train import TrainConfig, resolve_compute

    root = tmp_path.resolve()
    cfg = TrainConfig(data=[(str(root / "d"), 1.0), (str(root / "d"), 2.5)], out=str(root / "m"), resolution=32,
                      steps=5, batch=2, lr=1e-3, init=None, num_threads=1, progress=False,
                      command="semgen diffuse train ...", extra={"fp16_weights": False})
    _, resolved = resolve_compute(cfg)
    assert json.dumps(resolved.identity()) == _rooted(FIXTURE["diffusion_identity_text"], root)
    assert cfg.device == "auto" and resolved.device == "cpu"  # resolving makes a new config
    ints = TrainConfig(data=[(str(root / "d"), 1)], out="m", lr=1, warmup=0, ema_decay=0, p_drop=0, seed=7)
    assert json.dumps(resolve_compute(ints)[1].identity()) == _rooted(FIXTURE["diffusion_identity_int_text"], root)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert TrainConfig(data=[f"{root}/d=2.5"], out="m").data == ((f"{root}/d", 2.5),)


def test_classifier_records_are_the_old_ones():
    from semgen.classifier.augment import NO_AUGMENT, AugmentConfig
    from semgen.classifier.distill import DistillConfig
    from semgen.classifier.qat import QATConfig
    from semgen.classifier.train_config import TrainConfig

    assert json.dumps(AugmentConfig().to_dict()) == FIXTURE["augment"]["default"]
    assert json.dumps(NO_AUGMENT.to_dict()) == FIXTURE["augment"]["none"]
    assert json.dumps(AugmentConfig(erase_p=0.25, crop_scale=(0.5, 1.0)).to_dict()) == FIXTURE["augment"]["erase"]
    assert json.dumps(QATConfig().to_dict()) == FIXTURE["qat"]["default"]
    assert json.dumps(QATConfig(epochs=2, lr=1e-3, weight_bits=7).to_dict()) == FIXTURE["qat"]["set"]
    assert json.dumps(DistillConfig().request()) == FIXTURE["distill"]["empty"]
    # the old dataclass let a transfer set without a teacher exist (the run refused it); its record:
    unchecked = DistillConfig.model_construct(teachers=(), temperature=2, weight=0.5, transfer=("x=2", "y"))
    assert json.dumps(unchecked.request()) == FIXTURE["distill"]["transfer"]
    cfg = TrainConfig(data="d", out="o", augment=NO_AUGMENT, qat=True, distill=DistillConfig(["t"], transfer=["x=2"]))
    assert cfg.to_json() == FIXTURE["classifier_trainconfig"]
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def _errors():
    from semgen.ablation.config import build_config
    from semgen.classifier.augment import AugmentConfig
    from semgen.classifier.distill import DistillConfig
    from semgen.classifier.qat import QATConfig
    from semgen.generators.diffusion.train import TrainConfig
    from semgen.pretrain import PretrainConfig

    abl = {"real": "r", "test": "t"}
    return [
        (PretrainConfig, dict(size=8), "--size must be >= 32, got 8 (PretrainConfig.size)"),
        (PretrainConfig, dict(batch_size=1), "--batch must be >= 2, got 1 (PretrainConfig.batch_size)"),
        (PretrainConfig, dict(labels="x"), "--labels must be one of fine, coarse, got 'x' (PretrainConfig.labels)"),
        (PretrainConfig, dict(data=["d"], data_fraction=1.0), "--data-fraction must be in (0, 1), got 1.0 (PretrainConfig)"),
        (QATConfig, dict(weight_bits=4), "--qat-weight-bits must be 8 or 7, got 4 (QATConfig.weight_bits)"),
        (QATConfig, dict(epochs=0), "--qat-epochs must be a positive integer, got 0 (QATConfig.epochs)"),
        (DistillConfig, dict(teachers=["t"], temperature=0),
         "--distill-temperature must be > 0, got 0 (DistillConfig.temperature)"),
        (DistillConfig, dict(transfer=["x"]),
         "--transfer needs --teacher (only a teacher can label the transfer images) (DistillConfig)"),
        (AugmentConfig, dict(crop_scale=(0.9, 0.5)), "augment crop_scale must be a range (low <= high), got (0.9, 0.5)"),
        (TrainConfig, dict(data="d", out="m", lr=-1), "--lr must be a positive number, got -1 (TrainConfig.lr)"),
        (TrainConfig, dict(data="d", out="m", steps=0), "--steps must be a positive integer, got 0 (TrainConfig.steps)"),
        (build_config, {"data": {**abl, "bootstrap": {"n": 50}}},
         "bootstrap n must be at least 100 for a 95 % interval"),
        (build_config, {"data": {**abl, "classifier": {"epoch": 3}}}, "classifier has unknown option(s) epoch; valid: arch"),
        (build_config, {"data": {**abl, "seeds": [1, 1, 2]}}, "seeds must be distinct (AblationConfig)"),
    ]


@pytest.mark.parametrize("case", range(14))
def test_errors_are_one_line_naming_flag_and_field(case):
    make, values, message = _errors()[case]
    with pytest.raises(SemgenError) as e:
        make(**values)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_positional_constructors_still_work():
    """The dataclasses took positional values; their callers (tests, bench) still may."""
    from semgen.ablation.config import SCRATCH, Arm, Init, Source
    from semgen.classifier.distill import DistillConfig

    assert DistillConfig(["t"], 2.0, 0.5) == DistillConfig(teachers=["t"], temperature=2.0, weight=0.5)
    assert Arm("mix", "p", 0.5).name == "mix[p,0.5]" and Init("scratch") == SCRATCH
    assert Source("p", "/d/p", None).amount is None
    with pytest.raises(TypeError, match="two values for teachers"):
        DistillConfig(["t"], teachers=["u"])
    with pytest.raises(SemgenError, match=r"unknown arm type 'nope'"):
        Arm("nope")
