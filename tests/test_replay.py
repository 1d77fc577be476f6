"""``python -m sim.replay`` on golden exports of the digits proxy and of EfficientViT-B1 (R64):
every op is bit-exact and takes the model's cycles, on the tiny configuration and a 3x3 one
(lanes that are not a power of two); a changed value is reported; errors are one line with exit
status 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hw.config import AcceleratorConfig

THREE = AcceleratorConfig.parse("3x3+3x3x1").replace(block_min=2, block_max=4)  # as tests/test_core.py

pytestmark = pytest.mark.cocotb


def run(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def proxy_export(proxy_quantized, tmp_path_factory):
    """The random-weight proxy (conftest) exported on one digit."""
    d = tmp_path_factory.mktemp("replay")
    rc, _, err = run("quant", "export", "--quantized", str(proxy_quantized), "--data", "digits",
                     "--out", str(d / "g"))
    assert rc == 0, err
    return d / "g"


@pytest.fixture(scope="module")
def b1_export(tmp_path_factory):
    """EfficientViT-B1 at R64 with random weights, calibrated on 4 generated digits, exported."""
    d = tmp_path_factory.mktemp("replay-b1")
    rc, _, err = run("quant", "calibrate", "--model", "b1", "--resolution", "64", "--random-weights",
                     "--data", "digits", "--calib", "4", "--iters", "0", "--out", str(d / "q.pt"))
    assert rc == 0, err
    rc, _, err = run("quant", "export", "--quantized", str(d / "q.pt"), "--data", "digits",
                     "--out", str(d / "g"))
    assert rc == 0, err
    return d / "g"


def _config_arg(config, tmp_path):
    if config == "3x3":  # lanes that are not a power of two, tiny's pixel blocks (see test_core)
        (tmp_path / "3x3.json").write_text(THREE.to_json())
        return str(tmp_path / "3x3.json")
    return config


@pytest.mark.parametrize("config", ["tiny"])  # B1 on 3x3: make replay (CI time)
def test_b1_replay_is_bit_exact_at_model_cycles(b1_export, config, tmp_path):
    rc, out, err = run("sim.replay", str(b1_export), "--config", _config_arg(config, tmp_path), "--sim",
                       "verilator", "--build", str(tmp_path / "b"))
    assert "102 of 102 ops bit-exact; 1 host ops skipped" in out, out + err
    assert "largest per-op difference 0.00 %" in out
    for name in ("input_stem.op_list.0", "depth_conv", "aggreg.0.0", "aggreg.0.1", ".attn", "head.op_list.2",
                 "head.op_list.3"):
        assert any(name in line and "bit-exact" in line for line in out.splitlines()), name
    assert "not run" not in out and rc == 0


def test_icarus_replays_the_same_ops(proxy_export, tmp_path):
    rc, out, err = run("sim.replay", str(proxy_export), "--ops", "3-4", "--sim", "icarus",
                       "--build", str(tmp_path / "b"))
    assert rc == 0 and "2 of 2 ops bit-exact; 0 host ops skipped" in out, out + err


@pytest.mark.parametrize("config", ["tiny", "3x3"])
def test_proxy_replay_is_bit_exact_at_model_cycles(proxy_export, config, tmp_path):
    rc, out, err = run("sim.replay", str(proxy_export), "--config", _config_arg(config, tmp_path),
                       "--sim", "verilator", "--build", str(tmp_path / "b"))
    kinds = [e["kind"] for e in json.loads((proxy_export / "manifest.json").read_text())["ops"]]
    run_ops = len([k for k in kinds if k in ("conv", "add", "pool", "linear", "attn")])
    assert run_ops == 40
    assert f"{run_ops} of {run_ops} ops bit-exact; 1 host ops skipped" in out, out + err
    assert "largest per-op difference 0.00 %" in out
    for kind in ("input_stem.op_list.0", "point_conv", "depth_conv", "aggreg.0.0", "aggreg.0.1", ".attn",
                 "head.op_list.1", "head.op_list.3", ".add"):
        assert any(kind in line and "bit-exact" in line for line in out.splitlines()), kind
    assert "not run" not in out and rc == 0
    fused = [line for line in out.splitlines() if "fused with op" in line]
    assert fused and f"({len(fused)} depthwise -> pointwise pairs as the band pipeline)" in out


def test_replay_reports_a_mismatch_with_index_expected_and_got(proxy_export, tmp_path):
    broken = tmp_path / "g"
    broken.mkdir()
    man = json.loads((proxy_export / "manifest.json").read_text())
    for e in man["ops"]:
        (broken / e["file"]).write_bytes((proxy_export / e["file"]).read_bytes())
    (broken / "manifest.json").write_text(json.dumps(man))
    # change one expected value of the first residual add and of the depthwise conv of the
    # first fused pair (ops 2 and 3 run as the band pipeline)
    for i in (2, 4):
        e = man["ops"][i]
        arrays = dict(np.load(proxy_export / e["file"]))
        arrays["y"] = arrays["y"].copy()
        arrays["y"][3, 2, 1] += 1
        np.savez_compressed(broken / e["file"], **arrays)
    rc, out, _ = run("sim.replay", str(broken), "--config", "tiny", "--ops", "2-4", "--sim", "verilator",
                     "--build", str(tmp_path / "b"))
    assert rc == 1
    assert "1 of 3 ops bit-exact" in out and "fused with op 3" in out, out
    for i, kind in ((2, "conv"), (4, "add")):
        name = man["ops"][i]["name"]
        assert f"MISMATCH op {i} {name} ({kind}): first differing index [3, 2, 1]: expected " in out


@pytest.mark.parametrize("args,msg", [
    (["/nonexistent"], "no manifest.json"),
    (["{g}", "--ops", "5-2"], "--ops '5-2': the export has ops 0..40"),
    (["{g}", "--ops", "x"], "expected A-B or A"),
    (["{g}", "--config", "8x8+8x4x1"], "needs S = T = M = N"),
    (["{g}", "--config", "fast"], "unknown configuration 'fast'"),
])
def test_replay_errors_are_one_line(proxy_export, args, msg):
    rc, out, err = run("sim.replay", *[a.format(g=proxy_export) for a in args])
    assert rc == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err
