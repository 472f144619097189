"""ONNX FP32 / INT8 export, the C header and prediction from every model kind (fast, offline)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest
import torch

from classifier_synth import SYNTH_CLASSES, make_dataset
from semgen.classifier import load_run, train_classifier
from semgen.classifier.data import load_image_set
from semgen.classifier.export import export_run, ort_logits, ort_session, read_metadata
from semgen.classifier.export_config import ExportConfig
from semgen.classifier.quantize import layer_groups, preprocessed_nodes, quantize_int8
from semgen.classifier.deploy import activation_peak, read_c_header
from semgen.classifier.predict import predict_files
from semgen.errors import SemgenError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    make_dataset(root / "train", n_per_class=16, seed=0)
    make_dataset(root / "test", n_per_class=10, seed=1)
    train_classifier(root / "train", root / "run", arch="mobilenetv3_small_050", size=32, batch_size=32,
                     epochs=3, lr=5e-3, min_epoch_images=192, num_threads=1, progress=False)
    res = export_run(root / "run", root / "train", data=root / "test", latency_runs=30)
    return root, res


def test_fp32_onnx_matches_pytorch(exported):
    root, res = exported
    run = root / "run"
    model, meta = load_run(run)
    s = load_image_set(root / "test", size=32, classes=meta["classes"])
    x = s.images.unsqueeze(1).float() / 255
    with torch.no_grad():
        want = model(x).numpy()
    got = ort_logits(ort_session(run / "model.onnx"), s.images)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    m = onnx.load(str(run / "model.onnx"))
    assert len(m.graph.initializer) > 0 and not any(t.data_location == 1 for t in m.graph.initializer)  # one file
    assert read_metadata(run / "model.onnx")["classes"] == list(SYNTH_CLASSES)
    assert res["fp32_vs_torch_max_abs_diff"] < 1e-4


def test_int8_is_quantised_and_reported(exported):
    root, res = exported
    run = root / "run"
    saved = json.loads((run / "export.json").read_text())
    assert saved["top1_agreement"] == res["top1_agreement"] and 0.0 <= res["top1_agreement"] <= 1.0
    assert res["n_eval"] == 30 and res["evaluated_on"] == "data"
    for kind in ("fp32", "int8"):
        assert 0 <= saved[kind]["accuracy"] <= 1 and saved[kind]["latency"]["median_ms"] > 0
    q = onnx.load(str(run / "model.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in int8_weights) > 0.9 * sum(p.numel() for p in load_run(run)[0].parameters() if p.ndim > 1)
    assert res["int8"]["bytes"] < 0.4 * res["fp32"]["bytes"]
    assert res["quantization"]["tries"][0]["calibration"] == "minmax"


def test_c_header_holds_the_exact_bytes_and_the_models_facts(exported, tmp_path):
    root, res = exported
    data = (root / "run" / "model.int8.onnx").read_bytes()
    header = root / "run" / "model_int8.h"
    assert read_c_header(header) == data
    text = header.read_text()
    assert f"semgen_model_int8_len = {len(data)}u;" in text
    act = res["quantization"]["activations"].split()[0]
    arena = activation_peak(root / "run" / "model.onnx")["peak_elements"] * {"uint8": 1, "uint16": 2}[act]
    assert res["c_header"]["tensor_arena_bytes"] == arena > 32 * 32
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build the header")
    src = tmp_path / "dump.c"
    src.write_text(f'#include <stdio.h>\n#include "{header}"\nint main(void){{'
                   'printf("%d %d %d %u %.6f %.6f %.9g %d\\n", SEMGEN_MODEL_INT8_INPUT_SIZE, '
                   "SEMGEN_MODEL_INT8_INPUT_CHANNELS, SEMGEN_MODEL_INT8_NUM_CLASSES, SEMGEN_MODEL_INT8_TENSOR_ARENA_BYTES, "
                   "SEMGEN_MODEL_INT8_INPUT_MEAN, SEMGEN_MODEL_INT8_INPUT_STD, SEMGEN_MODEL_INT8_INPUT_SCALE, "
                   "SEMGEN_MODEL_INT8_INPUT_ZERO_POINT);"
                   'for (int i = 0; i < SEMGEN_MODEL_INT8_NUM_CLASSES; i++) printf("%s\\n", semgen_model_int8_classes[i]);'
                   "fwrite(semgen_model_int8, 1, semgen_model_int8_len, stdout); return 0;}\n")
    subprocess.run([gcc, "-O0", "-Wall", "-Werror", "-Wno-unused-variable", "-o", str(tmp_path / "dump"), str(src)],
                   check=True)
    out = subprocess.run([str(tmp_path / "dump")], capture_output=True, check=True).stdout
    lines = out.split(b"\n", 1 + len(SYNTH_CLASSES))
    size, chans, k, arena_c, mean, std, scale, zp = lines[0].split()
    assert (int(size), int(chans), int(k), int(arena_c)) == (32, 1, len(SYNTH_CLASSES), arena)
    assert (float(mean), float(std)) == (0.5, 0.25)  # mobilenetv3_small_050's built-in normalisation
    from semgen.classifier.deploy import input_quantization

    q = input_quantization(root / "run" / "model.int8.onnx")
    assert float(scale) == pytest.approx(q["scale"], rel=1e-6) and int(zp) == q["zero_point"]
    assert [x.decode() for x in lines[1:-1]] == list(SYNTH_CLASSES)
    assert lines[-1] == data


def test_tensor_arena_estimate_on_a_graph_of_known_sizes(tmp_path):
    """x -> a = Relu(x) -> c = Relu(a) -> d = Add(a, c): a stays alive for the Add; at the Add a, c
    and d (8 floats each) are alive together: 24 elements, whatever came before."""
    from onnx import TensorProto, helper

    vi = (lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 8]))
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["c"]),
                           helper.make_node("Add", ["a", "c"], ["d"])], "g", [vi("x")], [vi("d")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "g.onnx"))
    r = activation_peak(tmp_path / "g.onnx")
    assert r == {"peak_elements": 24, "largest_tensor_elements": 8, "tensors": 4}


def test_export_reports_every_file(exported):
    root, res = exported
    rows = {d["file"]: d for d in res["files"]}
    assert set(rows) == {"model.onnx", "model.int8.onnx", "model_int8.h"}
    for name, d in rows.items():
        assert d["bytes"] == (root / "run" / name).stat().st_size and d["latency_ms_1_thread"] > 0
        assert d["ram_bytes"] > 0 and 0 <= d["agreement_with_fp32"] <= 1
    assert rows["model.onnx"]["ram_bytes"] == 4 * activation_peak(root / "run" / "model.onnx")["peak_elements"]
    assert rows["model_int8.h"]["flash_bytes"] == rows["model.int8.onnx"]["bytes"]
    assert rows["model.int8.onnx"]["agreement_with_fp32"] == res["top1_agreement"]


def test_predict_with_every_model_kind(exported):
    root, _ = exported
    run = root / "run"
    files = sorted((root / "test" / "images").rglob("*.png"))[::5]
    by_kind = {p: predict_files(p, files) for p in (run, run / "model.onnx", run / "model.int8.onnx")}
    torch_labels = [r["label"] for r in by_kind[run]]
    assert [r["label"] for r in by_kind[run / "model.onnx"]] == torch_labels
    for res in by_kind.values():
        assert all(r["label"] in SYNTH_CLASSES and 0 < r["confidence"] <= 1 for r in res)
    with pytest.raises(SemgenError, match="does not exist"):
        predict_files(root / "nope.onnx", files)


def test_layer_groups_and_keeping_nodes_float(exported, tmp_path):
    root, _ = exported
    fp32 = root / "run" / "model.onnx"
    groups = layer_groups(preprocessed_nodes(fp32))
    assert {"squeeze_excite", "hard_swish", "head", "stem"} <= set(groups)
    s = load_image_set(root / "train", size=32)
    out = quantize_int8(fp32, tmp_path / "q.onnx", s.images[:16], calibration="percentile",
                        nodes_to_exclude=groups["squeeze_excite"])
    q = onnx.load(str(out))
    # the SE gate stays float: no HardSigmoid consumes a dequantised tensor any more... but the
    # convolutions outside SE still get int8 weights
    n_int8 = sum(t.data_type == onnx.TensorProto.INT8 for t in q.graph.initializer)
    full = onnx.load(str(root / "run" / "model.int8.onnx"))
    assert 0 < n_int8 < sum(t.data_type == onnx.TensorProto.INT8 for t in full.graph.initializer)


def test_export_json_records_its_config(exported):
    """The keyword form built an ExportConfig; export.json holds it as plain JSON, which gives it back."""
    root, res = exported
    on_disk = json.loads((root / "run" / "export.json").read_text())
    assert on_disk["config"] == res["config"]
    cfg = ExportConfig.from_json(json.dumps(on_disk["config"]))
    assert cfg == ExportConfig(run_dir=str(root / "run"), calib=str(root / "train"), data=str(root / "test"),
                               latency_runs=30)
    assert on_disk["config"]["calib_max"] == 512 and on_disk["config"]["qat"] is None


def test_cli_builds_the_config_from_its_flags(exported, tmp_path, capsys):
    import semgen.cli

    root, _ = exported
    argv = ["export", root / "run", "--calib", root / "train", "--out", tmp_path, "--calib-max", "20",
            "--latency-runs", "2", "--no-auto-fix", "--no-a16w8", "--tolerance", "0.05", "--no-progress"]
    assert semgen.cli.main([str(a) for a in argv]) == 0
    cfg = ExportConfig.from_json(json.dumps(json.loads((tmp_path / "export.json").read_text())["config"]))
    assert cfg == ExportConfig(run_dir=root / "run", calib=root / "train", out=tmp_path, calib_max=20, latency_runs=2,
                               auto_fix=False, allow_a16w8=False, tolerance=0.05, progress=False)
    assert "wrote model.onnx" in capsys.readouterr().out


def test_auto_fix_runs_and_is_recorded(exported, tmp_path):
    root, _ = exported
    # an impossible tolerance forces every strategy to be tried, and the best one is still written
    cfg = ExportConfig(run_dir=root / "run", calib=root / "train", data=root / "test", out=tmp_path, tolerance=-1.0,
                       latency_runs=5, calib_max=40, max_tries=5)
    res = export_run(cfg)
    assert res["config"] == cfg.to_dict() and res["config"]["max_tries"] == 5
    q = res["quantization"]
    strategies = [t["strategy"] for t in q["tries"]]
    assert strategies[:3] == ["minmax", "percentile", "entropy"]
    assert len(strategies) == 5 and strategies[3].endswith("+float:squeeze_excite") and q["auto_fixed"]
    assert q["strategy"] in strategies and (tmp_path / "model.int8.onnx").exists()
    assert not (tmp_path / ".model.int8.try.onnx").exists()


def test_a16w8_keeps_int8_weights_with_16_bit_activations(exported, tmp_path):
    root, _ = exported
    s = load_image_set(root / "test", size=32, classes=list(SYNTH_CLASSES))
    out = quantize_int8(root / "run" / "model.onnx", tmp_path / "a16.onnx", s.images[:16], activations="uint16")
    q = onnx.load(str(out))
    types = {t.data_type for t in q.graph.initializer}
    assert onnx.TensorProto.INT8 in types and onnx.TensorProto.UINT16 in types  # weights / activation zero points
    assert max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) >= 21
    fp = ort_logits(ort_session(root / "run" / "model.onnx"), s.images).argmax(1)
    assert (ort_logits(ort_session(out), s.images).argmax(1) == fp).mean() >= 0.8


def test_evaluate_scores_the_exported_files_themselves(exported, capsys):
    from semgen.classifier.evaluate import evaluate_run
    from semgen.cli import main

    root, res = exported
    run = root / "run"
    for name, kind in (("model.int8.onnx", "int8"), ("model.onnx", "fp32")):
        m = evaluate_run(run / name, root / "test", n_boot=50)
        # the same images and argmax as the export's own comparison: the same figures
        assert m["accuracy"] == pytest.approx(res[kind]["accuracy"]) and m["macro_f1"] == pytest.approx(res[kind]["macro_f1"])
        stem = name.removesuffix(".onnx")
        assert m["metrics_file"] == str(run / f"metrics_{stem}.json") and m["checkpoint"] == str(run / name)
        assert json.loads((run / f"metrics_{stem}.json").read_text())["macro_f1"] == m["macro_f1"]
    assert not (run / "metrics.json").exists()  # the run's own figures are never overwritten by a file's
    assert main(["evaluate", str(run / "model.int8.onnx"), "--data", str(root / "test"), "--tta", "flips",
                 "--out-name", "metrics_tta-flips.json"]) == 0
    assert str(run / "metrics_tta-flips_model.int8.json") in capsys.readouterr().out
    with pytest.raises(SemgenError, match="auto reads a run dir"):
        evaluate_run(run / "model.int8.onnx", root / "test", reject_below="auto", target_precision=0.9)
