"""Diffusion training checkpoints are data, never code (issue 14, item 1), and a torn one is skipped."""

from __future__ import annotations

import os
import pickle

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from test_diffusion_pipeline import _cfg, _make_dataset  # noqa: E402

from semgen.errors import SemgenError  # noqa: E402


class _Evil:
    """Unpickling this creates ``marker`` (what a planted pickle running code would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(folder, marker):
    data = pickle.dumps(_Evil(marker))
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        (folder / name).write_bytes(data)


def _unet_weights(model_dir):
    from safetensors.torch import load_file

    return load_file(model_dir / "unet" / "diffusion_pytorch_model.safetensors")


def test_resume_never_unpickles_and_skips_bad_checkpoints(tmp_path, capsys):
    from semgen.generators.diffusion.train import train

    data = _make_dataset(tmp_path / "data")
    kw = dict(checkpoint_every=4, log_every=4)
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    train(_cfg(data, out, 4, **kw))
    ck = out / "checkpoints"
    assert sorted(p.name for p in (ck / "checkpoint-4").iterdir()) == [
        "ema.safetensors", "model.safetensors", "optimizer.safetensors", "semgen_state.json", "semgen_step.json"]
    _plant(ck / "checkpoint-4", marker)
    # a newer checkpoint in the old accelerate layout (pickles only) is skipped, never opened
    (ck / "checkpoint-6").mkdir()
    (ck / "checkpoint-6" / "semgen_step.json").write_text('{"step": 6}\n')
    _plant(ck / "checkpoint-6", marker)
    resumed = train(_cfg(data, out, 8, **kw))
    assert not marker.exists()
    assert resumed["step"] == 8 and resumed["trained_now"] == 4
    err = capsys.readouterr().err
    assert "checkpoint-6: an old pickle-based checkpoint" in err and "never loads pickle files" in err
    # the resumed run is the straight run, bit for bit (optimizer, LR schedule and EMA restored)
    straight = tmp_path / "straight"
    train(_cfg(data, straight, 8, **kw))
    wa, wb = _unet_weights(straight), _unet_weights(out)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

    # a torn model.safetensors in the newest checkpoint: back to the one before, with a warning
    shutil_ck8 = ck / "checkpoint-8" / "model.safetensors"
    shutil_ck8.write_bytes(shutil_ck8.read_bytes()[:100])
    again = train(_cfg(data, out, 12, **kw))
    assert again["trained_now"] == 8 and "checkpoint-8: unreadable" in capsys.readouterr().err

    # only unloadable checkpoints: a one-line error, nothing overwritten
    only_old = tmp_path / "old"
    (only_old / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (only_old / "checkpoints" / "checkpoint-4" / "semgen_step.json").write_text('{"step": 4}\n')
    _plant(only_old / "checkpoints" / "checkpoint-4", marker)
    with pytest.raises(SemgenError, match="no checkpoint in .* can be resumed") as ei:
        train(_cfg(data, only_old, 8, **kw))
    assert "\n" not in str(ei.value) and not marker.exists()
