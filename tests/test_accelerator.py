"""The accelerator top (tiny2: two cores in lockstep): faults and the buffers' width adapter on
Icarus against cocotbext-axi;
the digits proxy whole on Verilator (python -m sim.net), bit-exact and on the model's cycles; the
runtime's refusals; the compiler's errors."""

import json
import re
import subprocess
import sys

import pytest

from hw.accelerator import Accelerator, one_pixel_beats, silenced
from hw.config import PRESETS, ConfigError
from sim.runner import run_testbench

pytestmark = pytest.mark.cocotb


def run(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def test_faults_and_width_adapter(tmp_path):
    cfg = PRESETS["tiny2"]
    tests, failed = run_testbench(Accelerator(cfg), "trio_accelerator", "sim.tb.accelerator",
                                  {"TRIO_CONFIG": cfg.to_json()}, tmp_path, ["accelerator (testbench)"])
    assert (tests, failed) == (1, 0), f"see {tmp_path}/sim.log"


def test_array_limits():
    with pytest.raises(ConfigError, match="at most 64 cores"):
        Accelerator(PRESETS["tiny"].replace(cores=65))
    acc = Accelerator(PRESETS["tiny2"])
    assert acc.memory_depths["b"] == Accelerator(PRESETS["tiny"]).memory_depths["b"]  # 64 KiB per core


def test_proxy_whole_network_bit_exact_on_the_model(proxy_quantized, tmp_path):
    rc, out, err = run("sim.net", "--quantized", str(proxy_quantized), "--data", "digits", "--images", "1",
                       "--config", "tiny2", "--sim", "verilator", "--build", str(tmp_path))
    assert rc == 0, out[-3000:] + err[-3000:]
    assert "40 of 40 layer outputs bit-exact; logits exact on 1 of 1 image(s)" in out
    assert "RTL vs model: +0.0 %" in out
    rows = [line for line in out.splitlines() if line.rstrip().endswith("bit-exact")]
    assert len(rows) == 40 and all("+0.0%" in r for r in rows), "\n".join(rows)
    lay = json.loads((tmp_path / "program" / "layout.json").read_text())
    assert lay["config_hash"] == PRESETS["tiny2"].hash
    assert {t.get("cores") for t in lay["tensors"].values() if "op" in t} == {1, 2}  # cut over both cores


def test_proxy_whole_network_with_the_shared_weight_port(proxy_quantized, tmp_path):
    """4x4 engines on a 64-bit AXI port: a weight word takes two DMA beats, so the weight buffer is
    one true dual port RAM whose host writes wait for engine 0's chunk reads
    (``CoreSlice(shared_w=)``); the attentions run in head rounds (a 128-chunk aux buffer)."""
    cfg = PRESETS["tiny2"].replace(s=4, t=4, m=4, n=4, buffer_c_kib=64, aux_kib=2)
    acc = silenced(Accelerator(cfg))
    assert acc.shared_w and acc.buffer_ports["w"].shared == 1 and one_pixel_beats(cfg) == 2
    (tmp_path / "c.json").write_text(cfg.to_json())
    rc, out, err = run("sim.net", "--quantized", str(proxy_quantized), "--data", "digits", "--images", "1",
                       "--config", str(tmp_path / "c.json"), "--sim", "verilator", "--build", str(tmp_path))
    assert rc == 0, out[-3000:] + err[-3000:]
    assert "40 of 40 layer outputs bit-exact; logits exact on 1 of 1 image(s)" in out
    assert "RTL vs model: +0.0 %" in out
    assert re.search(r"cycles per image: RTL ([\d,]+), model \1;", out), out  # to the cycle
    # every layer: the head linears at two beats per chunk, the last attention's 4 = M tokens
    rows = [line for line in out.splitlines() if line.rstrip().endswith("bit-exact")]
    assert len(rows) == 40 and all("+0.0%" in r for r in rows), "\n".join(rows)


def test_proxy_whole_network_with_row_rounds(proxy_quantized, tmp_path, monkeypatch):
    """Half of tiny2's buffer B (32 KiB a core): a depthwise conv's rows on a core would overfill
    half of B (its window fill takes both ports of its input's half), so the compiler cuts it
    into smaller row groups that run in rounds on the cores (``gen.compile._row_rounds``);
    bit-exact, on the model's cycles."""
    import gen.compile as gc

    cfg = PRESETS["tiny2"].replace(buffer_b_kib=64)
    real, rounds = gc._row_rounds, []
    monkeypatch.setattr(gc, "_row_rounds", lambda *a: rounds.append(real(*a)) or rounds[-1])
    frozen, shape, _ = gc.load_frozen(proxy_quantized)
    gc.compile_network(frozen, shape, cfg)
    assert max(r[1] for r in rounds) > 1  # (per, rounds, plan)
    (tmp_path / "c.json").write_text(cfg.to_json())
    rc, out, err = run("sim.net", "--quantized", str(proxy_quantized), "--data", "digits", "--images", "1",
                       "--config", str(tmp_path / "c.json"), "--sim", "verilator", "--build", str(tmp_path))
    assert rc == 0, out[-3000:] + err[-3000:]
    assert "40 of 40 layer outputs bit-exact; logits exact on 1 of 1 image(s)" in out
    assert re.search(r"cycles per image: RTL ([\d,]+), model \1;", out), out  # to the cycle


def test_net_errors(proxy_quantized, tmp_path):
    rc, _, err = run("sim.net", "--quantized", str(tmp_path / "none.pt"), "--build", str(tmp_path))
    assert rc == 2 and err.count("\n") == 1 and "not found" in err
    rc, _, err = run("sim.net", "--quantized", str(proxy_quantized), "--config", "2x2+2x2x65",
                     "--build", str(tmp_path))
    assert rc == 2 and "at most 64 cores" in err and err.count("\n") == 1
    rc, _, err = run("sim.net", "--quantized", str(proxy_quantized), "--images", "0")
    assert rc == 2 and "--images" in err


def test_compile_cli(proxy_quantized, tmp_path):
    rc, out, err = run("gen.compile", "--quantized", str(proxy_quantized), "--config", "tiny", "--out",
                       str(tmp_path / "p"))
    assert rc == 0, err
    assert "instructions in 2 segments, 40 ops" in out
    for name in ("program.bin", "weights.bin", "layout.json", "host.npz"):
        assert (tmp_path / "p" / name).is_file()
    rc, _, err = run("gen.compile", "--quantized", str(proxy_quantized), "--config", "8x8+8x8x2", "--out",
                     str(tmp_path / "q"))
    assert rc == 2 and err.startswith("error:") and not (tmp_path / "q").exists()
