"""Performance model: hand-computed cycle counts on small layers, its beat counts equal the RTL
schedules', whole-network invariants, CLI errors."""

import subprocess
import sys

import numpy as np
import pytest

from hw.config import AcceleratorConfig
from sim import perf
from sim.schedule import conv_reduction, depthwise, depthwise_beats, reduction_beats, rmac_reduction_beats

ONE_CORE = AcceleratorConfig(cores=1)  # (8x8+8x8)x1


def row(op, cin, cout, k, stride, groups, h_in, w_in, h_out, w_out, macs, heads=0, index=0, name="l"):
    return dict(index=index, name=name, op=op, cin=cin, cout=cout, kernel=k, stride=stride, groups=groups,
                h_in=h_in, w_in=w_in, h_out=h_out, w_out=w_out, heads=heads, macs=macs, params=0)


def test_pointwise_16_to_16_on_8x8():
    """1x1 conv 16 -> 16 on 8x8 pixels, one core: MAT 2 tiles x 64 rows x 2 chunks = 256 beats,
    R-MAC down-forward the same; both engines split the 64 rows 32/32: 128 beats, plus the MAT
    pipeline latency (multiply, 3 adder-tree levels, accumulate, requantize 3 = 8)."""
    assert perf.mat_beats(64, 16, 16, ONE_CORE) == 2 * 64 * 2
    assert perf.rmac_df_beats(64, 16, 16, ONE_CORE) == 2 * 64 * 2
    assert perf.both_beats(64, 16, 16, ONE_CORE) == (128, 32)
    label, cycles = perf.map_reduction(row("pw", 16, 16, 1, 1, 1, 8, 8, 8, 8, 16 * 16 * 64), ONE_CORE)
    assert cycles == 128 + 8
    assert perf.mat_latency(ONE_CORE) == 8


def test_depthwise_3x3_stride2():
    """3x3 DW, stride 2, 16 channels, 8x8 -> 4x4: 2 channel groups x 4 rows x 1 block of 8 pixels
    x 9 taps = 72 beats on the R-MAC engine, plus its latency 6."""
    r = row("dw", 16, 16, 3, 2, 16, 8, 8, 4, 4, 16 * 16 * 9)
    assert perf.rmac_dw_beats(16, 4, 4, 3, ONE_CORE) == 72
    label, cycles = perf.map_depthwise(r, ONE_CORE)
    assert cycles == 72 + 6 and "R-MAC SA" in label


def test_stem_conv_3x3():
    """3x3 conv 3 -> 16, 8x8 outputs, one core: K = 27 inputs in 4 chunks of 8 on both engines,
    2 output tiles; per row 8 beats on either engine, rows split 32/32: 256 beats + 8."""
    r = row("conv", 3, 16, 3, 2, 1, 16, 16, 8, 8, 16 * 27 * 64)
    assert perf.mat_beats(64, 27, 16, ONE_CORE) == 2 * 64 * 4
    assert perf.map_reduction(r, ONE_CORE)[1] == 256 + 8


def test_attention_pipeline():
    """Two heads of dim 8 over 16 pixels, one core. Per head the R-MAC engine computes v.k^T
    (8 rows x 16 pixels x 8 outputs: 1 tile x 8 x 2 chunks = 16 beats); the MAT engine
    q.[vk^T | sum k] (16 pixels x 8 inputs x 9 outputs: 2 tiles x 16 x 1 = 32 beats; 16 with
    both engines). Head 0's MatMul runs 16..48; head 1's starts at 48, after the R-MAC engine is
    free (32), so both engines take it: 48 + 16 = 64, plus R-MAC and MAT latencies 6 + 8."""
    vk = row("matmul_vk", 8, 9, 1, 1, 1, 16, 1, 16, 1, 2 * 9 * 8 * 16, heads=2)
    vkq = row("matmul_q", 8, 9, 1, 1, 1, 16, 1, 16, 1, 2 * 9 * 8 * 16, heads=2)
    label, cycles = perf.map_attention(vk, vkq, ONE_CORE)
    assert cycles == 64 + 6 + 8


def test_beats_equal_the_rtl_schedules():
    """The model's beat counts are the lengths of the beat streams the engines are tested with."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (20, 9, 11))
    w = rng.integers(-128, 128, (13, 20, 1, 1))
    red = conv_reduction("pw", x, w, np.zeros(13, np.int64), 1, 0, rng)
    cfg = AcceleratorConfig(n=5, m=3, t=8, s=4, cores=1)
    assert len(reduction_beats(red, cfg.s, cfg.t, False)[0]["a"]) == perf.mat_beats(99, 20, 13, cfg)
    rmac = rmac_reduction_beats(red, cfg.m, cfg.n, 5, False)[0]["y"]
    assert len(rmac) == perf.rmac_df_beats(99, 20, 13, cfg)
    for k, s in ((3, 1), (3, 2), (5, 1)):
        dw = depthwise("dw", rng.integers(-128, 128, (7, 10, 13)), rng.integers(-128, 128, (7, k, k)),
                       np.zeros(7, np.int64), s, k // 2, rng)
        ho, wo = dw.acc.shape[1:]
        beats = depthwise_beats(dw, cfg.m, cfg.n, 5, False)[0]["x"]
        assert len(beats) == perf.rmac_dw_beats(7, ho, wo, k, cfg)


def test_two_stage_pipeline():
    # producer 2 per item, consumer 5; producer done at 6; item 0 runs 2..7; items 1, 2 start
    # after the producer finished, so both engines take them at 3 each: 7 + 6 = 13
    assert perf.two_stage(3, 2, 5, 3) == 13
    # consumer faster than producer: waits for each item, ends one consumer time after the last
    assert perf.two_stage(4, 5, 2, 1) == 4 * 5 + 1
    assert perf.two_stage(0, 5, 2, 1) == 0


def test_memory_bound_linear():
    cfg = AcceleratorConfig()
    r = row("linear", 1536, 1600, 1, 1, 1, 1, 1, 1, 1, 1536 * 1600)
    res = perf.simulate([r], cfg)[0]
    assert res.bound == "memory"
    # weights and per-channel parameters; the 1536- and 1600-byte vectors stay in buffer B
    assert res.dram_bytes == 1536 * 1600 + 1600 * perf.PARAM_BYTES
    assert res.cycles == -(-res.dram_bytes // (perf.DDR4_GBS * 1e9 / 200e6))
    batched = perf.simulate([r], cfg, batch=8)[0]
    assert batched.dram_bytes < res.dram_bytes / 7


@pytest.mark.parametrize("model", ["b1", "b2"])
def test_network_invariants(model):
    cfg = AcceleratorConfig()
    rows = perf.workload(model, 224)
    results = perf.simulate(rows, cfg)
    tot = perf.totals(results, cfg)
    assert tot["macs"] == sum(r["macs"] for r in rows)
    assert all(0 < r.util <= 1.0 for r in results)
    assert tot["fps"] <= tot["peak_fps"] and tot["gmacs"] <= cfg.peak_gmacs
    assert tot["cycles"] >= tot["macs"] / cfg.multipliers
    proposal = perf.totals(perf.simulate(rows, cfg, fuse_mbconv=True, batch=8), cfg)
    assert proposal["cycles"] < tot["cycles"]


def run(*args):
    p = subprocess.run([sys.executable, "-m", "sim.perf", *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_cli(tmp_path):
    rc, out, err = run("--model", "b1", "--resolution", "224", "--config", "8x8+8x8x16", "--freq", "200",
                       "--out", str(tmp_path), "--quiet")
    assert rc == 0, err
    assert "MAC utilization" in out and "FPS" in out
    assert (tmp_path / "b1-r224-8x8p8x8x16.csv").exists() and (tmp_path / "b1-r224-8x8p8x8x16.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--config", "16x16+16x16x32"], "needs 8192 DSP48E2"),
    (["--config", "8x8+8x8x0"], "cores must be"),
    (["--config", "nonsense"], "unknown configuration"),
    (["--model", "b9"], "unknown model"),
    (["--resolution", "100"], "unsupported resolution"),
    (["--dram-gbs", "0"], "must be positive"),
])
def test_cli_errors(args, message):
    rc, out, err = run(*args)
    assert rc == 2 and message in err and "Traceback" not in err
