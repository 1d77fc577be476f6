"""Performance model: hand-computed cycle counts on small layers (our dataflow and the paper's
baseline), its beat counts equal the RTL schedules', buffer budgets, whole-network invariants,
CLI errors."""

import subprocess
import sys

import numpy as np
import pytest

from hw.config import AcceleratorConfig, ConfigError
from sim import dataflow, perf
from sim.schedule import conv_reduction, depthwise, depthwise_beats, reduction_beats, rmac_reduction_beats

ONE_CORE = AcceleratorConfig(cores=1)  # (8x8+8x8)x1


def row(op, cin, cout, k, stride, groups, h_in, w_in, h_out, w_out, macs, heads=0, index=0, name="l"):
    return dict(index=index, name=name, op=op, cin=cin, cout=cout, kernel=k, stride=stride, groups=groups,
                h_in=h_in, w_in=w_in, h_out=h_out, w_out=w_out, heads=heads, macs=macs, params=0)


def test_paper_pointwise_16_to_16_on_8x8():
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
    x 9 taps = 72 beats on the R-MAC engine, plus its latency 9 (multiply, 3 adder levels,
    accumulate, hold, requantizer 3), read off the RMacEngine component."""
    r = row("dw", 16, 16, 3, 2, 16, 8, 8, 4, 4, 16 * 16 * 9)
    assert perf.rmac_dw_beats(16, 4, 4, 3, ONE_CORE) == 72
    label, cycles = perf.map_depthwise(r, ONE_CORE)
    assert perf.rmac_latency(ONE_CORE) == 9
    assert cycles == 72 + 9 and "R-MAC SA" in label


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
    free (32), so both engines take it: 48 + 16 = 64, plus R-MAC and MAT latencies 9 + 8."""
    vk = row("matmul_vk", 8, 9, 1, 1, 1, 16, 1, 16, 1, 2 * 9 * 8 * 16, heads=2)
    vkq = row("matmul_q", 8, 9, 1, 1, 1, 16, 1, 16, 1, 2 * 9 * 8 * 16, heads=2)
    label, cycles = perf.map_attention(vk, vkq, ONE_CORE)
    assert cycles == 64 + 9 + 8


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


def test_paper_memory_bound_linear():
    cfg = AcceleratorConfig()
    r = row("linear", 1536, 1600, 1, 1, 1, 1, 1, 1, 1, 1536 * 1600)
    res = perf.simulate([r], cfg, perf.DDR4_GBS)[0]
    assert res.bound == "memory"
    # weights and per-channel parameters; the 1536- and 1600-byte vectors stay in buffer B
    assert res.dram_bytes == 1536 * 1600 + 1600 * dataflow.PARAM_BYTES
    assert res.cycles == -(-res.dram_bytes // (perf.DDR4_GBS * 1e9 / 200e6))
    batched = perf.simulate([r], cfg, batch=8)[0]
    assert batched.dram_bytes < res.dram_bytes / 7


@pytest.mark.parametrize("model", ["b1", "b2"])
def test_paper_network_invariants(model):
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
    assert "[ours dataflow]" in out and "frames in flight" in out and "BRAM36" in out
    assert (tmp_path / "b1-r224-8x8p8x8x16-ours.csv").exists()
    assert (tmp_path / "b1-r224-8x8p8x8x16-ours.png").exists()
    rc, out, err = run("--model", "b1", "--dataflow", "paper", "--dram-gbs", "17.064", "--out", str(tmp_path),
                       "--quiet")
    assert rc == 0, err
    assert "[paper dataflow]" in out and "BUDGET EXCEEDED" in out and "2,048 weight bytes per cycle" in out


@pytest.mark.parametrize("args, message", [
    (["--config", "16x16+16x16x32"], "needs 15360 DSP48E2 (12288 for 16384 int8 multipliers, 3072 for "
                                     "post-processing)"),
    (["--config", "8x8+8x8x0"], "cores must be"),
    (["--config", "nonsense"], "unknown configuration"),
    (["--model", "b9"], "unknown model"),
    (["--resolution", "100"], "unsupported resolution"),
    (["--dram-gbs", "0"], "must be positive"),
    (["--config", "4x4+4x4x24"], "needs 952 BRAM36"),
    (["--config", "8x8+8x4x16"], "needs S = M and T = N"),
    (["--dataflow", "ours", "--batch", "8"], "belong to --dataflow paper"),
])
def test_cli_errors(args, message):
    rc, out, err = run(*args)
    assert rc == 2 and message in err and "Traceback" not in err


# ---- our dataflow (docs/architecture.md) -----------------------------------------------------------

def test_pw_tile_with_weight_reuse():
    """1x1 conv 16 -> 16 on 64 pixels, one core: 2 output tiles of 8, 2 chunks of 8 inputs. The
    MAT engine takes tile 0, the R-MAC engine tile 1; each holds a weight chunk for a block of 16
    pixels (one beat per pixel), so 4 blocks x 2 chunks x 16 beats = 128 beats, plus the MAT
    latency 8 and the command overhead 16. Each engine reads one 64-byte chunk per 8+ beats:
    16 B/cycle from buffer C for the core; 8 input bytes per pixel (16 B per 2 chunks x 16 beats)."""
    m = dataflow.reduction(64, 2, 2, 16, ONE_CORE)
    assert (m.beats, m.go, m.gp, m.c_bytes, m.b_bytes) == (128, 1, 1, 16.0, 8.0)
    r = row("pw", 16, 16, 1, 1, 1, 8, 8, 8, 8, 16 * 16 * 64)
    assert dataflow.reduction_step(r, ONE_CORE).compute == 128 + 8 + dataflow.DISPATCH


@pytest.mark.parametrize("pixels, beats", [
    (20, 60),  # 3 tiles x 20 pixels = 60 tile-pixels, halved (tile 2 split 10/10), x 2 chunks
    (12, 48),  # 12 pixels cannot split into two blocks of >= 8: engines take 2 and 1 tiles
    (5, 29),   # a block of 5 pixels costs 8 beats (weight port), 2 tiles on the busier engine,
               # less the last block's 3 padding beats (no weight chunk follows them)
])
def test_odd_tiles_and_short_blocks(pixels, beats):
    assert dataflow.reduction(pixels, 2, 3, 16, ONE_CORE).beats == beats


def test_padded_pixels():
    assert [dataflow.padded_pixels(p, 8, 16) for p in (1, 8, 9, 16, 17, 49)] == [8, 8, 9, 16, 17, 49]
    assert dataflow.padded_pixels(11, 8, 10) == 16  # 11 fits neither one block (<= 10) nor two (>= 16)
    assert dataflow.padded_pixels(20, 8, 4) == 40  # buffer A holds 4 pixels: 5 blocks of 8 beats


def test_fused_band():
    """3x3 DW (16 channels, 4x8 output) into a 1x1 conv 16 -> 16, one core, bands of one row:
    DW per band 2 channel groups x 1 block x 9 taps = 18 beats (new input row: 10 pixels x 8
    channels = 80 B, under A's and B's ports in 9 cycles); PW per band on the MAT engine alone
    2 tiles x 8 pixels x 2 chunks = 32 beats. Bands 0 and 1 on the MAT (18..50, 50..82); the DW
    is done at 72, so the last two bands (16 pixels) run as one command on both engines: 32
    beats + 16 dispatch = 82 + 48 = 130; plus 4 band tokens x 4, R-MAC and MAT latencies 9 + 8,
    the command overhead 16: 179. Sequential would take DW 72 + 9 + 16 = 97 and PW 64 + 8 + 16 =
    88: 185. The step runs them one after the other all the same: the depthwise pixels (8 per
    block of 9 beats) and the pointwise results (one per 2 chunk beats) would bring the core's one
    post-processor 8/9 + 1/2 results per cycle."""
    dw = row("dw", 16, 16, 3, 1, 16, 4, 8, 4, 8, 16 * 9 * 32)
    pw = row("pw", 16, 16, 1, 1, 1, 4, 8, 4, 8, 16 * 16 * 32, index=1)
    assert dataflow.two_stage(4, 18, 32, 16) == 114
    assert dataflow.two_stage_filled(4, 18, 32, lambda left: 48) == (130, 0)
    assert dataflow.fused_dw_pw(dw, pw, ONE_CORE) == (179, "fused DW->PW, bands of 1 rows, DW 1x1 grid")
    assert dataflow.depthwise_step(dw, ONE_CORE).compute == 97
    assert dataflow.reduction_step(pw, ONE_CORE).compute == 88
    assert dataflow.band_post_load(ONE_CORE, 3, 1, 2) == 8 / 9 + 1 / 2
    step = dataflow.dw_pw_step(dw, pw, ONE_CORE)
    assert step.compute == 185 and step.macs == dw["macs"] + pw["macs"]
    assert step.mapping.startswith("sequential")


def test_filler_runs_in_the_waits():
    """Producer 10 per item, consumer 4 (2 on both engines). With 9 beats of independent work the
    MAT engines run it 0..9 while item 0 is produced, item 0 10..14, wait, item 1 20..24; item 2 is
    ready at 30 when the producer is done, so both engines take it: 32, no filler left. With 100
    beats the filler fills every wait (10 + 6 + 6) and 78 are left for the end."""
    assert dataflow.two_stage_filled(3, 10, 4, 2, filler=9) == (32, 0)
    assert dataflow.two_stage_filled(3, 10, 4, 2, filler=100) == (32, 78)


def test_attention_head_as_the_integer_model():
    """One B1 head (d = 16, n = 196 tokens) on one core, as quant/integer.py computes it and the
    core runs it. vk = v ReLU(K)^T: 2 x 2 blocks of 8 x 8 outer products on the R-MAC engine, one
    token per beat: 4 x 196 = 784 beats (Sigma k on the MAT engine alongside). q: 196 tokens x
    (1 divisor tile + 2 numerator tiles) = 3 tiles, reduction over d = 2 chunks: 3 x 196
    tile-pixels halved = 294 x 2 = 588 beats. Each command + its engine latency + 16."""
    cyc, vk, q = dataflow.attention_cycles(1, 16, 196, ONE_CORE)
    assert (vk.beats, q.beats) == (784, 588)
    assert cyc == 784 + 588 + dataflow.rmac_latency(ONE_CORE) + dataflow.mat_latency(ONE_CORE) + \
        2 * dataflow.DISPATCH


def test_layer_memory_bound_at_12_8():
    """A 1x1 conv 1024 -> 1024 on one pixel: 1 MiB of weights (+ 7 B per channel) at 12.8 GB/s =
    64 B/cycle is 16,496 cycles of DMA; its compute is a few thousand. It streams in 5 passes of
    at most half of buffer C (256 KiB), and the time line shows the stall."""
    cfg = AcceleratorConfig()
    r = row("pw", 1024, 1024, 1, 1, 1, 1, 1, 1, 1, 1024 * 1024, name="big")
    results, tot = perf.simulate_ours([r], cfg, 12.8)
    res = results[0]
    assert res.dram_bytes == 1024 * 1024 + 1024 * dataflow.PARAM_BYTES + 1024  # + the input pixel
    assert res.bound == "memory" and res.compute < 6000
    assert res.cycles >= (1024 * 1024 + 1024 * 7) / 64
    assert tot["cycles"] >= tot["dram_cycles"] == pytest.approx(res.dram_bytes / 64)
    assert "5 weight passes" in res.mapping


def test_head_linear_on_the_head_core():
    """The head linears run on core L-1 at the DRAM's pace (frames in flight): 1536 x 1600 weights
    + 7 B per channel + the int32 output to the host (4 B per channel) at 64 B/cycle = 38,675
    cycles, overlapped with the next frame."""
    cfg = AcceleratorConfig()
    rows = [row("pw", 64, 1536, 1, 1, 1, 7, 7, 7, 7, 64 * 1536 * 49, index=0, name="head.conv"),
            row("linear", 1536, 1600, 1, 1, 1, 1, 1, 1, 1, 1536 * 1600, index=1, name="head.linear")]
    results, tot = perf.simulate_ours(rows, cfg, 12.8)
    assert results[1].bound == "head core"
    assert results[1].cycles == (1536 * 1600 + 1600 * 7 + 1600 * 4) // 64 == 38_675
    assert tot["window"] > 0 and tot["latency_ms"] * 200e3 > tot["cycles"]


def test_head_linear_beats_per_chunk():
    """Two beats per chunk where the weight buffer's port is shared (the paper's configuration:
    512-bit words on 128-bit ports, aux buffers, blocks of 8 or more), else one; and one for a
    configuration the computing core cannot be (S != T), which the model still describes."""
    from hw.accelerator import one_pixel_beats
    from hw.config import PRESETS

    r = row("linear", 1536, 1600, 1, 1, 1, 1, 1, 1, 1, 1536 * 1600, index=0, name="head.linear")
    tiles, kc = 1600 // 8, 1536 // 8
    for cfg, beats in [(AcceleratorConfig(), 2), (PRESETS["tiny"], 1),
                       (AcceleratorConfig.parse("8x16+8x16x8"), 1)]:
        assert one_pixel_beats(cfg) == beats, cfg.name
        step = dataflow.linear_step(r, cfg)
        t, k = dataflow._tiles(r, cfg)
        assert step.compute == (t // 2 * k * beats - (beats - 1) + dataflow.mat_latency(cfg)
                                + dataflow.DISPATCH), cfg.name
    assert (tiles, kc) == dataflow._tiles(r, AcceleratorConfig())


def test_refused_for_lack_of_ports(tmp_path):
    """Buffer C of one BRAM36 has one 8-byte read port; the two engines of even one output group
    need 2 x 64 / 8 = 16 B/cycle of weights: no grid fits, the command is refused in one line."""
    cfg = AcceleratorConfig(buffer_c_kib=4)
    assert dataflow.buffers(cfg)["C"].read_bytes == 8
    with pytest.raises(ConfigError, match="no core grid fits the buffer ports"):
        dataflow.reduction(64, 2, 2, 16, cfg)
    path = tmp_path / "small-c.json"
    path.write_text(cfg.to_json())
    rc, out, err = run("--config", str(path), "--quiet", "--out", str(tmp_path))
    assert rc == 2 and "no core grid fits the buffer ports" in err and "Traceback" not in err


def test_buffer_budget_of_the_paper_configuration():
    cfg = AcceleratorConfig()
    bufs = {b.name: b for b in cfg.buffers()}
    assert {k: (b.banks, b.bram36) for k, b in bufs.items()} == {
        "B": (64, 512), "C": (32, 128), "output": (16, 16), "A": (4, 128), "aux": (2, 32), "divisor": (1, 16)}
    assert cfg.bram36 == 832 and all(b.read_bytes >= b.need_bytes for b in bufs.values())
    assert cfg.axi_gbs == pytest.approx(12.8)


@pytest.mark.parametrize("model", ["b1", "b2"])
def test_ours_network_invariants(model):
    cfg = AcceleratorConfig()
    rows = perf.workload(model, 224)
    results, tot = perf.simulate_ours(rows, cfg)
    assert tot["macs"] == sum(r["macs"] for r in rows)
    assert all(0 < r.util <= 1.0 for r in results)
    assert tot["cycles"] >= tot["macs"] / cfg.multipliers and tot["cycles"] >= tot["dram_cycles"]
    assert tot["latency_ms"] * cfg.freq_mhz * 1e3 >= tot["cycles"] * 0.99
    # every op is in exactly one step, in order
    names = [r["name"] for r in rows]
    assert [n for res in results for n in [res.name]] and len(results) < len(rows)
    assert sum(res.macs for res in results) == sum(r["macs"] for r in rows)
    assert names[0] == results[0].name
    # more DRAM bandwidth never makes it slower
    faster = perf.simulate_ours(rows, cfg, perf.DDR4_GBS)[1]
    assert faster["cycles"] <= tot["cycles"]


@pytest.mark.parametrize("changes, call, message", [
    (dict(divisor_kib=1), lambda cfg: dataflow.attention_step(
        row("matmul_vk", 16, 17, 1, 1, 1, 300, 1, 300, 1, 0, heads=2), None, cfg),
     "divisor buffer (1 KiB) cannot hold the int32 divisors of a head over 300 tokens"),
    (dict(buffer_a_kib=1), lambda cfg: dataflow.depthwise(64, 56, 56, 3, 2, cfg),
     "buffer A (1 KiB) cannot hold the line buffer of a 3x3 depthwise conv over 56 output columns"),
])
def test_capacity_refusals(changes, call, message):
    """Buffers too small for what a command must hold are one-line ConfigErrors naming the buffer."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(AcceleratorConfig(**changes))


def test_fused_band_needs_aux_room():
    """Each core's band of depthwise outputs waits in aux (double-buffered) on its way to B: with
    1 KiB of aux a 3x3 DW over 4 x 64 pixels and 16 channels has no band that fits (one row of
    one core's 2 channel groups is 2 x 64 x 8 = 1 KiB > 512 B), so the pair runs sequentially."""
    cfg = AcceleratorConfig(cores=1, aux_kib=1)
    dw = row("dw", 16, 16, 3, 1, 16, 4, 64, 4, 64, 16 * 9 * 256)
    pw = row("pw", 16, 16, 1, 1, 1, 4, 64, 4, 64, 16 * 16 * 256, index=1)
    assert dataflow.fused_dw_pw(dw, pw, cfg)[1] == "no fused mapping: line buffer or aux"
    assert dataflow.dw_pw_step(dw, pw, cfg).mapping.startswith("sequential")


def test_aggregation_overlaps_the_direct_heads():
    """B1 stage 2's LiteMLA: the 5x5 depthwise conv keeps the R-MAC engines busier than the
    grouped 1x1 keeps the MAT engines, so the direct heads' attention fills the MAT engines' waits:
    one step, faster than the aggregation and the attention one after the other."""
    cfg = AcceleratorConfig()
    rows = perf.workload("b1", 224)
    i = next(j for j, r in enumerate(rows) if r["op"] == "dw" and r["kernel"] == 5)
    dw, gpw, vk, q = rows[i:i + 4]
    step = dataflow.aggregation_attention_step(dw, gpw, vk, q, cfg)
    seq = dataflow.dw_pw_step(dw, gpw, cfg).compute + dataflow.attention_step(vk, q, cfg).compute
    assert step.compute < seq and "direct heads" in step.mapping
    assert step.macs == sum(r["macs"] for r in (dw, gpw, vk, q))


def test_stored_layer_tables_equal_the_models():
    import json

    from quant.model import build_model, layer_table

    stored = json.loads(perf.LAYER_TABLES.read_text())
    assert set(stored) == {"b1-r224", "b1-r288", "b2-r224", "b2-r256"}
    for key, rows in stored.items():
        model, res = key.split("-r")
        assert rows == layer_table(build_model(model), int(res)), key
