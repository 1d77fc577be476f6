"""The four auxiliary units in the Amaranth simulator: golden match, latency, parameter errors."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.accumulator import Accumulator
from hw.adder_tree import AdderTree
from hw.attention_output import AttentionOutput
from hw.config import AcceleratorConfig
from hw.dual_multiplier import product_dsps
from hw.hardswish import Hardswish
from hw.log2_quantizer import Log2Quantizer
from hw.mat_engine import MatEngine
from hw.post_processor import PostMode, PostProcessor
from hw.requantizer import Requantizer
from hw.residual_adder import ResidualAdder
from hw.rmac_engine import DOWN_FORWARD, RMacEngine, slice_tree
from hw.shifter_array import ShifterArray
from sim.bench import Mismatch, run_amaranth
from sim.units import TEST_CONFIGS, UNITS


@pytest.mark.parametrize("unit,params", TEST_CONFIGS, ids=[f"{u}-{i}" for i, (u, _) in
                                                           enumerate(TEST_CONFIGS)])
def test_unit_matches_golden_in_amaranth_sim(unit, params):
    result = run_amaranth(UNITS[unit], params, vectors=500, seed=7)
    assert result["beats"] >= 500  # input beats (the accumulator emits one output per group)


def _every_input(**ranges):
    """Corner function feeding every combination of the named fields' (lo, hi) ranges."""
    def corners(dut):
        grid = np.array(list(itertools.product(*(range(lo, hi + 1) for lo, hi in ranges.values()))))
        pad = (-len(grid)) % dut.lanes
        grid = np.concatenate([grid, grid[:pad]])
        return {k: grid[:, j].reshape(-1, dut.lanes) for j, k in enumerate(ranges)}
    return corners


@pytest.mark.parametrize("unit,params,ranges", [
    # every accumulator, multiplier and shift: shifts beyond the product's width, both bounds
    ("requantizer", dict(lanes=16, acc_bits=7, mult_bits=2, shift_bits=4, out_bits=3),
     dict(acc=(-64, 63), mult=(0, 3), shift=(0, 15))),
    ("shifter_array", dict(lanes=16, in_bits=7, shift_bits=3, out_bits=3),
     dict(x=(-64, 63), e=(-4, 3))),
])
def test_rounding_shift_is_exact_on_every_input(unit, params, ranges):
    """The trimmed shift window and its fit flag (hw/rounding.py) against the golden function on
    every input of a small configuration: every shift, every saturation edge."""
    spec = dataclasses.replace(UNITS[unit], corners=_every_input(**ranges))
    result = run_amaranth(spec, params, vectors=0, seed=1)
    assert result["beats"] * params["lanes"] >= math.prod(hi - lo + 1 for lo, hi in ranges.values())


@pytest.mark.parametrize("unit", ["log2_quantizer", "requantizer", "adder_tree", "shifter_array"])
def test_full_throughput_without_stalls(unit):
    params = AcceleratorConfig().unit_params()[unit]
    """With valid and ready always high, one vector per cycle: cycles = vectors + latency."""
    dut = UNITS[unit].build(params, elaborated=False)
    result = run_amaranth(UNITS[unit], params, vectors=200, seed=3, p_valid=1.0, p_ready=1.0)
    assert result["cycles"] == result["vectors"] + dut.latency


def _measured_latency(dut, payload=0):
    cycles = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.as_value(), payload)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for k in range(1, 20):
            if ctx.get(dut.o.valid):
                cycles.append(k)
                return
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return cycles[0]


# Built inside the test, not at collection: a run that deselects it then builds nothing unused.
@pytest.mark.parametrize("cls,kwargs", [(Log2Quantizer, {}), (Requantizer, dict(lanes=2)),
                                        (ShifterArray, dict(lanes=2)), (AdderTree, dict(inputs=1)),
                                        (AdderTree, dict(inputs=2)), (AdderTree, dict(inputs=8)),
                                        (AdderTree, dict(inputs=9)), (AdderTree, dict(inputs=64)),
                                        (Hardswish, dict(lanes=2)), (ResidualAdder, dict(lanes=2)),
                                        (ResidualAdder, dict(lanes=2, requantize=False)),
                                        (AttentionOutput, dict(lanes=2))],
                         ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_latency_property_is_measured_latency(cls, kwargs):
    dut = cls(**kwargs)
    assert _measured_latency(dut) == dut.latency


def test_post_processor_latency_by_mode_is_measured_latency():
    """Each mode leaves from its own stage: 3 (requantize), 9 (Hardswish), 5 (attention)."""
    for mode in PostMode:
        dut = PostProcessor(lanes=2)
        beat = int(mode) << dut.i.payload.shape()["mode"].offset
        assert _measured_latency(dut, beat) == dut.latency_of(mode) == PostProcessor.LATENCIES[mode]
    assert [PostProcessor.LATENCIES[md] for md in PostMode] == [Requantizer.LATENCY, Hardswish.LATENCY,
                                                                 AttentionOutput.LATENCY]


def test_post_processor_with_same_latency_takes_every_mode_through_every_stage():
    """The core's one post-processor: every mode leaves after LATENCY cycles, so a depthwise
    pixel in Hardswish mode and a pointwise result requantized just after it cannot meet."""
    for mode in PostMode:
        dut = PostProcessor(lanes=2, same_latency=True)
        beat = int(mode) << dut.i.payload.shape()["mode"].offset
        assert _measured_latency(dut, beat) == dut.latency_of(mode) == PostProcessor.LATENCY
    with pytest.raises(TypeError, match="same_latency must be a bool"):
        PostProcessor(same_latency=1)


@pytest.mark.parametrize("params", [dict(lanes=8, width=8), dict(lanes=3, width=5, requantize=False),
                                    dict(lanes=2, width=1)])
def test_mat_engine_latency_is_measured_latency(params):
    dut = MatEngine(**params)
    layout = dut.i.payload.shape()
    one_beat = (1 << layout["first"].offset) | (1 << layout["last"].offset)
    assert _measured_latency(dut, one_beat) == dut.latency
    assert dut.latency == 2 + max(1, (params["width"] - 1).bit_length()) + (
        3 if params.get("requantize", True) else 0)


@pytest.mark.parametrize("params", [dict(lanes=8, rmacs=8), dict(lanes=3, rmacs=5, requantize=False),
                                    dict(lanes=1, rmacs=1), dict(lanes=2, rmacs=3, dsp_macs=True)])
def test_rmac_engine_latency_is_measured_latency(params):
    dut = RMacEngine(**params)
    layout = dut.i.payload.shape()
    for mode in (0, 1):  # the same latency in both modes
        beat = (1 << layout["first"].offset) | (1 << layout["last"].offset) | (
            mode << layout["mode"].offset)
        assert _measured_latency(dut, beat) == dut.latency
    assert dut.latency == 2 + max(1, (params["rmacs"] - 1).bit_length()) + (
        4 if params.get("requantize", True) else 0)  # hold register + requantizer


def test_depthwise_column_order_is_even_then_odd():
    from sim.schedule import kernel_column_order
    assert kernel_column_order(3, 1) == [[0, 1, 2]]
    assert kernel_column_order(3, 2) == [[0, 2], [1]]
    assert kernel_column_order(5, 2) == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError, match="stride must be 1 or 2, not 3"):
        kernel_column_order(3, 3)


def test_mat_engine_dsp_count():
    assert MatEngine(8, 8, packing=True).dsps == 32
    assert MatEngine(8, 8, packing=False).dsps == 64
    assert MatEngine(3, 5, packing=True).dsps == 10  # lane 2 unpaired
    assert RMacEngine(8, 8, packing=True).dsps == 32 and RMacEngine(8, 8, packing=False).dsps == 64
    assert RMacEngine(8, 8, packing=True, dsp_macs=True).dsps == 64  # one slice per R-MAC


def test_post_processing_dsp_counts():
    """Products as synthesis splits them (checked against Yosys by make resources: a 32 x 16
    requantizer product takes two DSP48E2, the Hardswish's 12 x 12 and 26 x 16 one each)."""
    assert [product_dsps(a, b) for a, b in ((32, 17), (12, 13), (26, 17), (8, 17), (27, 18), (18, 27),
                                            (28, 18), (54, 18), (30, 20))] == [2, 1, 1, 1, 1, 1, 2, 3, 4]
    assert PostProcessor(lanes=8).dsps == 32 and PostProcessor(lanes=3).dsps == 12
    assert ResidualAdder(lanes=8).dsps == 16


def test_adder_tree_latency_formula():
    assert [AdderTree(inputs=n).latency for n in (1, 2, 3, 4, 5, 8, 9, 16, 17)] == \
        [1, 1, 2, 2, 3, 3, 4, 4, 5]


def test_bench_catches_a_wrong_golden():
    spec = UNITS["adder_tree"]
    wrong = dataclasses.replace(spec, golden=lambda b, d: {"sum": spec.golden(b, d)["sum"] + (
        b["x"][:, 0] == 3)})
    with pytest.raises(Mismatch, match="mismatching outputs"):
        run_amaranth(wrong, dict(inputs=4, width=4, signed=False), vectors=300, seed=1)


@pytest.mark.parametrize("cls,kwargs,exc,msg", [
    (Log2Quantizer, dict(width=0), ValueError, "Divisor width must be an integer from 1 to 48, not 0"),
    (Log2Quantizer, dict(offset_bits=1), ValueError, "Offset width must be an integer from 2 to 16"),
    (Log2Quantizer, dict(lo=3, hi=3), ValueError, r"Clip range must be integers with lo < hi, not \(3, 3\)"),
    (Requantizer, dict(lanes=0), ValueError, "Lane count must be an integer from 1 to 256, not 0"),
    (Requantizer, dict(lanes="8"), ValueError, "Lane count must be an integer from 1 to 256, not '8'"),
    (Requantizer, dict(shift_bits=7), ValueError, "Shift width must be an integer from 1 to 6, not 7"),
    (Requantizer, dict(out_bits=1), ValueError, "Output width must be an integer from 2 to 32, not 1"),
    (AdderTree, dict(inputs=0), ValueError, "Input count must be an integer from 1 to 1024, not 0"),
    (AdderTree, dict(width=33), ValueError, "Input width must be an integer from 1 to 32, not 33"),
    (AdderTree, dict(signed=1), TypeError, "signed must be a bool, not 1"),
    (ShifterArray, dict(in_bits=1), ValueError, "Dividend width must be an integer from 2 to 32, not 1"),
    (ShifterArray, dict(shift_bits=7), ValueError, "Shift width must be an integer from 2 to 6, not 7"),
    (Hardswish, dict(hswish_bits=3), ValueError, "Pre-activation width must be an integer from 4 to 16"),
    (Hardswish, dict(offset_bits=33), ValueError, "Shift offset width must be an integer from 2 to 32"),
    (ResidualAdder, dict(in_bits=1), ValueError, "Addend width must be an integer from 2 to 16, not 1"),
    (Accumulator, dict(acc_bits=8), ValueError, "Accumulator width must be an integer from 16 to 48"),
    (Accumulator, dict(signed="no"), TypeError, "signed must be a bool, not 'no'"),
    (AttentionOutput, dict(dividend_bits=40), ValueError, "Dividend width must be an integer from 2 to 32"),
    (AttentionOutput, dict(lo=2, hi=1), ValueError, r"Clip range must be integers with lo < hi"),
    (PostProcessor, dict(lanes=0), ValueError, "Lane count must be an integer from 1 to 256, not 0"),
    (PostProcessor, dict(hswish_bits=17), ValueError, "Pre-activation width must be an integer from 4 to 16"),
    (PostProcessor, dict(offset_bits=1), ValueError, "Shift offset width must be an integer from 2 to 32"),
    (PostProcessor, dict(log2_offset_bits=17), ValueError, "Offset width must be an integer from 2 to 16"),
    (PostProcessor, dict(lo=-40, hi=1), ValueError, r"Clip range must be integers with lo < hi within \+-31"),
    (MatEngine, dict(lanes=0), ValueError, "Lane count must be an integer from 1 to 64, not 0"),
    (MatEngine, dict(width=65), ValueError, "Lane width must be an integer from 1 to 64, not 65"),
    (MatEngine, dict(acc_bits=8), ValueError, "Accumulator width must be an integer from 16 to 48"),
    (MatEngine, dict(packing="no"), TypeError, "packing must be a bool, not 'no'"),
    (MatEngine, dict(requantize=0), TypeError, "requantize must be a bool, not 0"),
    (RMacEngine, dict(lanes=65), ValueError, "Lane count must be an integer from 1 to 64, not 65"),
    (RMacEngine, dict(rmacs=0), ValueError, "R-MACs per lane must be an integer from 1 to 64, not 0"),
    (RMacEngine, dict(packing=None), TypeError, "packing must be a bool, not None"),
    (RMacEngine, dict(requantize="yes"), TypeError, "requantize must be a bool, not 'yes'"),
    (RMacEngine, dict(sa_bits=33), ValueError,
     "Self-accumulation width must be an integer from 16 to 32, not 33"),
])
def test_parameter_validation(cls, kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        cls(**kwargs)


def test_port_shapes_follow_parameters():
    q = Log2Quantizer(width=20, offset_bits=5, lo=-3, hi=5)
    assert q.o.payload.shape().size == 4
    assert q.i.payload.shape().size == 25
    r = Requantizer(lanes=3, acc_bits=20, mult_bits=9, shift_bits=5, out_bits=8)
    assert r.i.payload.shape().size == 3 * (20 + 9 + 5)
    assert AdderTree(inputs=9, width=8).out_bits == 12


def test_accumulator_latency_and_sums_over_beats():
    dut = Accumulator(lanes=1)
    layout = dut.i.payload.shape()
    one = (1 << layout["first"].offset) | (1 << layout["last"].offset) | 5
    assert _measured_latency(dut, one) == dut.latency == 1


@pytest.mark.parametrize("lanes,rmacs,block", [(8, 8, 4), (3, 5, 1), (2, 1, 2)])
def test_rmac_engine_on_dsp_slices_equals_the_fabric_engine(lanes, rmacs, block):
    """``dsp_macs`` (the computing core's engine: a multiply-accumulate slice per R-MAC, a slice
    tree per lane) against the packed, adder-tree engine the golden tests check: the same psums
    in the same cycles, on random and extreme beats of both modes (self-accumulations from 0,
    each from a valid first beat),
    loads, shifts, pixel-block slots and gaps between beats."""
    kw = dict(lanes=lanes, rmacs=rmacs, requantize=False, block=block, sa_bits=25)
    ref, dut = RMacEngine(**kw), RMacEngine(**kw, dsp_macs=True)
    rng = np.random.default_rng(lanes * 100 + rmacs)
    beats, mode = [], 0
    while len(beats) < 400:
        mode = int(rng.integers(0, 2)) if rng.random() < 0.3 else mode
        run = int(rng.integers(1, 12))
        for k in range(run):
            extreme = rng.random() < 0.2
            x = np.full((lanes, rmacs), -128) if extreme else rng.integers(-128, 128, (lanes, rmacs))
            y = np.full(rmacs, -128) if extreme else rng.integers(-128, 128, rmacs)
            bias = rng.integers(-2**20, 2**20, max(lanes, rmacs)) if mode == DOWN_FORWARD else \
                np.zeros(max(lanes, rmacs), dtype=np.int64)
            beats.append(dict(mode=mode, load=int(k == 0 or rng.random() < 0.2),
                              x=[[int(v) for v in row] for row in x], y=[int(v) for v in y],
                              bias=[int(v) for v in bias], first=int(k == 0), last=int(k == run - 1),
                              valid=int(k == 0 or rng.random() < 0.85),
                              **({"slot": int(rng.integers(0, block))} if block > 1 else {})))
    read = lambda ctx, e: (ctx.get(e.o.payload.mode), [[int(ctx.get(e.o.payload.acc[j][n]))  # noqa: E731
                                                        for n in range(rmacs)] for j in range(lanes)])
    want, got = _run_stream(ref, beats, read), _run_stream(dut, beats, read)
    assert len(want) > 20 and got == want


def _run_stream(engine, beats, read):
    """``engine`` in the Amaranth simulator on ``beats`` (a payload and ``valid`` per cycle, then
    12 idle cycles), its output always ready: [(cycle, ``read(ctx, engine)``)] of each output."""
    out = []

    async def bench(ctx):
        ctx.set(engine.o.ready, 1)
        for cycle, b in enumerate(beats + [dict(valid=0)] * 12):
            if b["valid"]:
                ctx.set(engine.i.payload, {k: v for k, v in b.items() if k != "valid"})
            ctx.set(engine.i.valid, b["valid"])
            await ctx.tick()
            if ctx.get(engine.o.valid):
                out.append((cycle, read(ctx, engine)))

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def test_slice_tree_sums_every_slice_once_at_the_adder_tree_depth():
    """Each slice's children sit one level below it, one on the cascade and one through C; every
    slice but the root is one child; the root at the adder tree's level."""
    for n in range(1, 65):
        levels = max(1, (n - 1).bit_length())
        tree = slice_tree(n, levels)
        children = [c for _, cas, thr in tree for c in (cas, thr) if c is not None]
        assert sorted(children) == sorted(set(children)) and len(children) == n - 1
        assert [lv for lv, _, _ in tree].count(levels) == 1
        assert all(tree[c][0] == lv - 1 for lv, cas, thr in tree for c in (cas, thr) if c is not None)
    assert [lv for lv, _, _ in slice_tree(8, 3)] == [0, 0, 0, 0, 1, 1, 2, 3]  # 7 cycles of delay
    with pytest.raises(ValueError, match="do not fit"):
        slice_tree(9, 2)


@pytest.mark.parametrize("lanes,width,packing,block", [(8, 8, True, 4), (3, 5, True, 1), (4, 16, True, 2),
                                                       (2, 3, False, 1), (1, 1, True, 1)])
def test_mat_engine_on_dsp_slices_equals_the_fabric_engine(lanes, width, packing, block):
    """``dsp_macs`` (the computing core's MAT engine: packed slice trees of at most 7 products,
    their fields split after) against the adder-tree engine the golden tests check: the same
    accumulators in the same cycles, on random beats and runs of -128 x -128 (the packed fields'
    worst case), pixel-block slots and gaps between beats."""
    kw = dict(lanes=lanes, width=width, packing=packing, requantize=False, block=block)
    ref, dut = MatEngine(**kw), MatEngine(**kw, dsp_macs=True)
    rng = np.random.default_rng(lanes * 100 + width)
    beats = []
    while len(beats) < 300:
        run = int(rng.integers(1, 10))
        extreme = rng.random() < 0.3
        for k in range(run):
            a = np.full(width, -128) if extreme else rng.integers(-128, 128, width)
            w = np.full((lanes, width), -128) if extreme else rng.integers(-128, 128, (lanes, width))
            beats.append(dict(a=[int(v) for v in a], w=[[int(v) for v in row] for row in w],
                              bias=[int(v) for v in rng.integers(-2**20, 2**20, lanes)],
                              first=int(k == 0), last=int(k == run - 1),
                              valid=int(k == 0 or rng.random() < 0.85),
                              **({"slot": int(rng.integers(0, block))} if block > 1 else {})))

    read = lambda ctx, e: [int(ctx.get(e.o.payload.acc[s])) for s in range(lanes)]  # noqa: E731
    want, got = _run_stream(ref, beats, read), _run_stream(dut, beats, read)
    assert len(want) > 20 and got == want
