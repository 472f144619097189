"""Parameter ranges as data: ``--set name=lo:hi`` / ``name=a:2,b:1``, ``--profile FILE.yaml``, what a
run records and remaking an image from its record alone (issue 12, item 1)."""

import json
import math

import numpy as np
import pytest
import yaml

from semgen.cli import main
from semgen.errors import SemgenError
from semgen.generators.procedural.generation import generate, remake
from semgen.generators.procedural.params import split_sets
from semgen.generators.procedural.profile import (canonical_json, dump_profile, load_profile, sha256_json,
                                                  validate_profile)
from semgen.generators.procedural.registry import create_generator
from semgen.manifests import DatasetDir

N_DRAWS = 2000


def _draws(gen, name, pins=None, n=N_DRAWS):
    rng = np.random.default_rng(0)
    space = gen.space  # what gen.sample_params samples (built once: 2,000 draws stay fast)
    out = []
    for _ in range(n):
        p = space.sample(rng, pins)
        if name in p:
            out.append(p[name])
    return out


def test_range_override_changes_the_distribution_as_requested():
    base = create_generator("bridge")
    g = base.with_ranges({"bridge_width": {"range": [2.0, 2.4]}, "periods": {"range": [4.0, 16.0]}})
    w = np.asarray(_draws(g, "bridge_width", {"layout": "lines"}))
    assert len(w) == N_DRAWS and w.min() >= 2.0 and w.max() <= 2.4
    # uniform on [2, 2.4]: each fifth holds ~400 of 2000 draws (binomial sd ~18)
    counts = np.histogram(w, bins=5, range=(2.0, 2.4))[0]
    assert np.all(np.abs(counts - N_DRAWS / 5) < 80), counts
    # the default range is wider: [0.7, 2.5]
    w0 = np.asarray(_draws(base, "bridge_width", {"layout": "lines"}))
    assert w0.min() < 1.0 and (w0 < 2.0).mean() > 0.6
    # a log-sampled parameter stays log-sampled: half the draws below the geometric mean (8)
    per = np.asarray(_draws(g, "periods", {"layout": "lines"}))
    assert per.min() >= 4.0 and per.max() <= 16.0
    assert abs((per < 8.0).mean() - 0.5) < 0.04
    assert abs((per < 12.0).mean() - math.log(3) / math.log(4)) < 0.04  # not 2/3 as a linear range would give


def test_choice_weights_change_the_distribution_as_requested():
    pins, ranges = split_sets(["bridge_type=micro:3,footing:1", "n_bridges=2,3", "overlay_jpeg=true:1,false:3"])
    assert pins == {}
    g = create_generator("bridge").with_ranges(ranges)
    kinds = _draws(g, "bridge_type", {"layout": "lines"})
    assert "full" not in kinds
    assert abs(kinds.count("micro") / len(kinds) - 0.75) < 0.04  # sd ~0.01
    nb = _draws(g, "n_bridges", {"layout": "lines"})
    assert set(nb) == {2, 3} and abs(nb.count(2) / len(nb) - 0.5) < 0.04
    jp = _draws(g, "overlay_jpeg")
    assert abs(np.mean(jp) - 0.25) < 0.04


def test_overrides_take_the_same_uniforms():
    # only the overridden parameter's value changes: every other value of every draw is the same
    g0 = create_generator("bridge")
    g1 = g0.with_ranges({"bridge_neck": {"range": [0.5, 0.6]}})
    r0, r1 = np.random.default_rng(3), np.random.default_rng(3)
    s0, s1 = g0.space, g1.space
    for _ in range(200):
        a, b = s0.sample(r0), s1.sample(r1)
        assert a.keys() == b.keys()
        assert {k: v for k, v in a.items() if k != "bridge_neck"} == {k: v for k, v in b.items() if k != "bridge_neck"}


@pytest.mark.parametrize("sets, msg", [
    (["bridge_width=0:9"], "--set bridge_width: range [0, 9] outside its limits [0.1, 6]"),
    (["bridge_width=2:1"], "--set bridge_width: range [2, 1] outside its limits"),
    (["periods=0:4"], "--set periods: range [0, 4] outside its limits [1.5, 80]"),
    (["bridge_wdth=1:2"], "--set bridge_wdth: unknown parameter (did you mean 'bridge_width'?)"),
    (["bridge_type=full:1,huge:2"], "--set bridge_type: choice 'huge' not one of full, micro, footing"),
    (["bridge_type=full:0"], "--set bridge_type: choice weights sum to 0"),
    (["bridge_type=1:2"], "--set bridge_type: choice '1' not one of full, micro, footing"),
    (["bridge_width=1,2"], "--set bridge_width: a float parameter takes a range, not choices"),
    (["bridge_width=a:b"], "--set bridge_width: range ['a', 'b'] is not two floats lo, hi"),
])
def test_bad_set_ranges_are_one_line_errors(sets, msg, capsys, tmp_path):
    args = ["procedural", "--class", "bridge", "--n", "1", "--size", "32", "--out", str(tmp_path / "o")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err
    assert not (tmp_path / "o" / "metadata.jsonl").exists()


PROFILE = {
    "version": 1,
    "classes": {
        "bridges": {"bridge_width": {"range": [2, 2.4]}, "layout": {"choices": {"lines": 3, "pads": 1}},
                    "overlay_jpeg": {"choices": {True: 1, False: 1}}, "n_bridges": {"value": 2}},
        "ler": {"dose": {"range": [4.0, 8.0]}},
    },
}


def test_profile_round_trips(tmp_path):
    p = validate_profile(PROFILE)
    assert list(p["classes"]) == ["bridge", "ler"]  # generator names, sorted
    assert p["classes"]["bridge"]["layout"] == {"choices": {"lines": 3.0, "contacts": 0.0, "pads": 1.0,
                                                            "logic": 0.0, "crosssection": 0.0}}
    assert p["classes"]["bridge"]["overlay_jpeg"] == {"choices": {"true": 0.5, "false": 0.5}}
    assert p["classes"]["bridge"]["n_bridges"] == {"value": 2}
    f = tmp_path / "p.yaml"
    dump_profile(p, f)
    again = load_profile(f)
    assert again == p and canonical_json(again) == canonical_json(p) and sha256_json(again) == sha256_json(p)
    assert validate_profile(json.loads(canonical_json(p))) == p  # the recorded JSON form too


@pytest.mark.parametrize("bad, msg", [
    ({"version": 1, "classes": {"bridge": {"bridge_width": {"range": [0.0, 9.0]}}}},
     "bridge: bridge_width: range [0, 9] outside its limits [0.1, 6]"),
    ({"version": 1, "classes": {"bridge": {"bridge_wdth": {"range": [1.0, 2.0]}}}},
     "bridge: bridge_wdth: unknown parameter (did you mean 'bridge_width'?)"),
    ({"version": 2, "classes": {}}, "unsupported profile version 2"),
    ({"version": 1, "classes": {}, "extra": 1}, "extra: Extra inputs are not permitted"),
    ({"version": 1, "classes": {"bridge": {"bridge_width": {"range": [1.0]}}}}, "bridge.bridge_width"),
    ({"version": 1, "classes": {"bridge": {"bridge_width": {"rnge": [1.0, 2.0]}}}}, "bridge.bridge_width"),
    ({"version": 1, "classes": {"brige": {}}}, "brige"),
    ([1, 2], "expected a mapping"),
])
def test_bad_profiles_are_one_line_errors(bad, msg, tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    args = ["procedural", "--class", "bridge", "--n", "1", "--size", "32", "--out", str(tmp_path / "o"),
            "--profile", str(f)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("semgen: error:") and msg in err and "\n" not in err, err
    assert not (tmp_path / "o" / "metadata.jsonl").exists()


def test_bad_yaml_and_missing_profile(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("version: 1\nclasses: {bridge: [\n")
    for path, msg in ((f, "not valid YAML"), (tmp_path / "none.yaml", "No such file")):
        assert main(["procedural", "--list", "--profile", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_and_profile_same_bytes_and_a_record_remakes_its_image(tmp_path):
    prof = validate_profile(PROFILE)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate("bridge", 4, a, seed=5, size=32, profile=prof, progress=False)
    generate("bridge", 4, b, seed=5, size=32, profile=prof, progress=False, workers=2)
    generate("bridge", 4, c, seed=5, size=32, progress=False)
    assert _files(a) == _files(b)
    assert _files(a) != _files(c)
    recs = DatasetDir(a).records()
    cfg = DatasetDir(a).read_info()["configs"]["procedural:bridge"]
    own = {"version": 1, "classes": {"bridge": prof["classes"]["bridge"]}}
    assert json.loads(cfg["profile"]) == own and cfg["profile_sha256"] == sha256_json(own)
    for rec in recs:
        assert rec["profile"] == cfg["profile"] and rec["profile_sha256"] == cfg["profile_sha256"]
        assert 2.0 <= rec["params"].get("bridge_width", 2.0) <= 2.4 and rec["params"].get("n_bridges", 2) == 2
        s = remake(rec)  # the record alone: generator, seed, width and profile
        from semgen.imageio import encode_png, sha256_bytes

        assert sha256_bytes(encode_png(s.image)) == rec["sha256"] and s.params == rec["params"]
    # a run without overrides records no profile (its bytes are those of before profiles)
    assert all("profile" not in r for r in DatasetDir(c).records())
    assert "profile" not in DatasetDir(c).read_info()["configs"]["procedural:bridge"]


def test_set_range_is_recorded_and_resume_checks_it(tmp_path, capsys):
    out = tmp_path / "o"
    base = ["procedural", "--class", "ler", "--n", "2", "--size", "32", "--out", str(out), "--no-progress"]
    assert main(base + ["--set", "dose=4:8"]) == 0
    rec = DatasetDir(out).records()[0]
    assert json.loads(rec["profile"])["classes"]["ler"]["dose"] == {"range": [4.0, 8.0]}
    assert 4.0 <= rec["params"]["dose"] <= 8.0
    capsys.readouterr()
    assert main(base + ["--set", "dose=4:9"]) == 2  # another range: not the same run
    assert "differs in: profile" in capsys.readouterr().err


def test_list_shows_effective_ranges(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    dump_profile(validate_profile(PROFILE), f)
    assert main(["procedural", "--list", "--class", "bridge", "--profile", str(f), "--set", "bridge_neck=0.1:0.2"]) == 0
    out = capsys.readouterr().out
    line = {}
    for ln in out.split("imaging parameters")[0].splitlines()[1:]:  # the class's table
        if ln.strip():
            line[ln.split()[0]] = ln
    assert "[2, 2.4] (--set 0.1..6)" in line["bridge_width"]
    assert "[0.1, 0.2]" in line["bridge_neck"]
    assert "= 2 (set)" in line["n_bridges"]
    assert "P(true)=0.50" in line["overlay_jpeg"]  # an imaging/overlay parameter the profile changes
    assert main(["procedural", "--list", "--class", "bridge"]) == 0
    line = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:] if ln.startswith("  ")}
    assert "[0.7, 2.5]" in line["bridge_width"]
