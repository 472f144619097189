"""bench/edge_table.py: the issue-13 goals read from a run's export.json, one by one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from bench_scripts import load_bench


def _bench():
    return load_bench("edge_table")


def _run(root: Path, name: str, *, bytes_, acts, f1, fake_f1, ms) -> Path:
    run = root / name
    run.mkdir()
    save_file({"conv.weight": np.zeros((8, 1, 3, 3), np.float32), "bn.running_mean": np.zeros(8, np.float32),
               "fc.weight": np.zeros((3, 8), np.float32), "fc.bias": np.zeros(3, np.float32)},
              str(run / "model.safetensors"))
    e = {"arch": "a", "data": ["test"], "fp32": {"macro_f1": fake_f1 - 0.02, "latency": {"median_ms": 1.0}},
         "int8": {"bytes": bytes_, "macro_f1": f1, "latency": {"median_ms": ms}},
         "quantization": {"activations": acts, "strategy": "qat", "qat": {"fake_quant_macro_f1": fake_f1}}}
    (run / "export.json").write_text(json.dumps(e))
    return run


def test_edge_table_goals(tmp_path, capsys):
    b = _bench()
    good = _run(tmp_path, "good", bytes_=590_000, acts="uint8 per-tensor", f1=0.52, fake_f1=0.525, ms=1.5)
    bad = _run(tmp_path, "bad", bytes_=610_000, acts="uint16 per-tensor", f1=0.45, fake_f1=0.47, ms=2.5)
    g = b.row(good, teacher_f1=0.56)
    assert g["params"] == 72 + 24 + 3  # BatchNorm statistics are not parameters
    assert all(g["goals"].values()) and set(g["goals"]) == {"size", "8-bit", "f1", "drop", "latency", "teacher"}
    # judged against the fake-quant model (0.47), not the plain FP32 file (0.45)
    assert b.row(bad)["goals"] == {"size": False, "8-bit": False, "f1": False, "drop": False, "latency": False}
    assert not b.row(good, teacher_f1=0.60)["goals"]["teacher"]  # 0.52 < 0.9 * 0.60
    assert b.main([str(good), str(bad)]) == 0
    out = capsys.readouterr().out
    assert "| all |" in out and "not: size, 8-bit, f1, drop, latency" in out
