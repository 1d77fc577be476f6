"""The computing core in the Amaranth simulator: every command kind it runs, bit-exact against
the golden functions, with the cycles the model counts."""

import numpy as np
import pytest

from hw.accelerator import one_pixel_beats
from hw.command import Command, CommandError, Op, Post, pixel_blocks
from hw.config import PRESETS, AcceleratorConfig, ConfigError
from hw.core import ComputingCore
from quant import arith
from sim.core_bench import run_amaranth
from sim.core_ops import UnsupportedOp, fused_plan, plan
from sim.dataflow import core_cycles, fused_core_cycles, reduction_engines

# Lanes that are not a power of two; pixel blocks of 2..4 as in tiny. And tiny with blocks of
# 3..5 pixels: uneven blocks (13 = 5 + 4 + 4), commands of fewer pixels than a block (padded).
THREE = AcceleratorConfig.parse("3x3+3x3x1").replace(block_min=2, block_max=4)
BLOCKS = PRESETS["tiny"].replace(block_min=3, block_max=5)
SHARED = PRESETS["tiny2"].replace(s=4, t=4, m=4, n=4, buffer_c_kib=64, aux_kib=2)  # a shared weight port
CONFIGS = [PRESETS["tiny"], THREE, BLOCKS]
IDS = ["tiny", "3x3", "tiny-blocks-3..5"]


def _ch(v):
    return np.asarray(v).reshape(-1, 1, 1)


def _conv_op(rng, cin, cout, k, stride, pad, groups, act):
    w = rng.integers(-128, 128, size=(cout, cin // groups, k, k))
    r = dict(kind="conv", w=w, bias=rng.integers(-5000, 5000, size=cout), stride=stride, pad=pad,
             groups=groups, act=act, mult=rng.integers(1 << 14, 1 << 16, size=cout),
             shift=rng.integers(14, 22, size=cout))
    if act == "hswish":
        r.update(h_mult=rng.integers(1 << 14, 1 << 16, size=cout), h_shift=rng.integers(12, 18, size=cout),
                 three=int(rng.integers(100, 2000)), offset=rng.integers(-(1 << 20), 1 << 20, size=cout),
                 shift=rng.integers(18, 26, size=cout))
    return r


def _golden(r, x):
    if r["kind"] == "linear":
        return arith.matmul_acc(x, r["w"].T, r["bias"])
    acc = arith.conv2d_acc(x, r["w"], r["bias"], r["stride"], r["pad"], r["groups"])
    if r["act"] == "hswish":
        return arith.hswish_requantize(acc, _ch(r["h_mult"]), _ch(r["h_shift"]), r["three"], _ch(r["offset"]),
                                       _ch(r["mult"]), _ch(r["shift"]))
    return arith.requantize(acc, _ch(r["mult"]), _ch(r["shift"]))


def _attention_case(rng, d, heads=2, hw=(3, 4)):
    """Both branches of a LiteMLA (direct and aggregated heads), golden from the integer model."""
    from quant.integer import IntegerModel

    brs = [rng.integers(-128, 128, size=(3 * d * heads,) + hw) for _ in range(2)]
    mult = lambda: int(rng.integers(1 << 15, 1 << 16))  # noqa: E731
    params = [dict(vk_mult=mult(), vk_shift=12, ks_mult=mult(), ks_shift=18, num_mult=mult(), num_shift=14)
              for _ in range(2)]
    want, _ = IntegerModel([])._attn(dict(dim=d, offset=[3, -2], branches=params), *brs)
    r = dict(kind="attn", dim=np.int64(d), log2_offset=np.array([3, -2]))
    for bi, b in enumerate(params):
        r.update({f"b{bi}_{k}": np.int64(v) for k, v in b.items()})
    return r, brs, want


def _cases(lanes, rng):
    """(name, op, inputs, golden) for every command kind on shapes that exercise padding, odd tiles
    and groups, at this lane count."""
    g = lanes * 2  # channels per group of the grouped conv: two words
    cases = []
    for name, args, hw in [("stem 3x3 s2", (3, 2 * lanes + 1, 3, 2, 1, 1, "hswish"), (7, 6)),
                           ("1-channel 3x3 s2: input unrolled by the host",
                            (1, lanes + 1, 3, 2, 1, 1, "hswish"), (5, 6)),
                           ("pw", (2 * lanes, 3 * lanes, 1, 1, 0, 1, None), (3, 5)),
                           ("pw hswish", (lanes + 1, 2 * lanes, 1, 1, 0, 1, "hswish"), (4, 4)),
                           ("pw, 2 pixels", (lanes, 3 * lanes, 1, 1, 0, 1, None), (1, 2)),
                           ("pw, 13 pixels", (2 * lanes, 3 * lanes - 1, 1, 1, 0, 1, "hswish"), (1, 13)),
                           ("grouped pw", (2 * g, 2 * g, 1, 1, 0, 2, None), (3, 3)),
                           ("grouped pw, unaligned groups of 3 tiles",
                            (3 * (lanes + 1), 3 * (2 * lanes + 1), 1, 1, 0, 3, None), (2, 3)),
                           ("grouped pw, one tile per group",
                            (4 * lanes, 4 * lanes, 1, 1, 0, 4, None), (2, 2)),
                           ("conv 3x3 s1", (lanes, lanes, 3, 1, 1, 1, None), (4, 5)),
                           ("depthwise 3x3 s1", (2 * lanes, 2 * lanes, 3, 1, 1, 2 * lanes, None), (5, 6)),
                           ("depthwise 3x3 s2 hswish", (lanes + 1, lanes + 1, 3, 2, 1, lanes + 1, "hswish"),
                            (7, 6)),
                           ("depthwise 5x5 s1", (lanes, lanes, 5, 1, 2, lanes, None), (6, 5)),
                           ("depthwise 5x5 s2", (2 * lanes, 2 * lanes, 5, 2, 2, 2 * lanes, None), (9, 7))]:
        r = _conv_op(rng, *args)
        x = rng.integers(-128, 128, size=(args[0],) + hw)
        cases.append((name, r, [x], _golden(r, x)))
    lin = dict(kind="linear", w=rng.integers(-128, 128, size=(3 * lanes + 1, 4 * lanes)),
               bias=rng.integers(-10 ** 6, 10 ** 6, size=3 * lanes + 1), post=None)
    x = rng.integers(-128, 128, size=4 * lanes)
    cases.append(("linear int32", lin, [x], _golden(lin, x)))
    c = 2 * lanes + 1
    add = dict(kind="add", mult_a=rng.integers(0, 1 << 16, size=c), mult_b=rng.integers(0, 1 << 16, size=c),
               shift=np.full(c, 16))
    a, b = rng.integers(-128, 128, size=(2, c, 3, 4))
    cases.append(("add", add, [a, b], arith.add_requantize(a, b, _ch(add["mult_a"]), _ch(add["mult_b"]),
                                                           _ch(add["shift"]))))
    for d in (2 * lanes, lanes + 1):  # word-aligned heads, and heads padded to whole words
        cases.append((f"attention, dim {d}", *_attention_case(rng, d)))
    # M tokens (lanes = M here): the vk serializer's rows take the post-processor on every cycle,
    # so the sums of k wait for the last rows (``sim.dataflow.core_beats``)
    cases.append((f"attention over M tokens, dim {3 * lanes}",
                  *_attention_case(rng, 3 * lanes, hw=(1, lanes))))
    # a depthwise conv straight after the attention: the R-MAC engine's results must not take
    # the finished attention command's post-processing
    dw = _conv_op(rng, lanes, lanes, 3, 1, 1, lanes, "hswish")
    x = rng.integers(-128, 128, size=(lanes, 4, 5))
    cases.append(("depthwise after attention", dw, [x], _golden(dw, x)))
    pool = dict(kind="pool", mult=np.int64(40000), shift=np.int64(20), hw=12)
    x = rng.integers(-128, 128, size=(c, 3, 4))
    cases.append(("pool", pool, [x], arith.requantize(arith.accumulate(x.reshape(c, -1)), 40000, 20)))
    return cases


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_every_command_kind_is_bit_exact_with_model_cycles(cfg):
    rng = np.random.default_rng(11)
    cases = _cases(cfg.s, rng)
    plans = [plan(r, ins, cfg, 10) for _, r, ins, _ in cases]
    results = run_amaranth(cfg, plans, 10)
    core = ComputingCore(cfg)
    for (name, _r, _, want), p, (got, cycles) in zip(cases, plans, results, strict=True):
        assert got.shape == want.shape, name
        bad = np.argwhere(got != want)
        assert not len(bad), f"{name}: first mismatch at {bad[0].tolist()}"
        assert cycles == sum(core_cycles(cfg, c, core) for c in p.all_commands()), name


def _fused_cases(lanes, rng):
    """(name, depthwise op, its input, pointwise op, golden depthwise output, golden pointwise)."""
    out = []
    for name, dwa, pwa, hw in [
            ("3x3 s1 hswish -> pw", (2 * lanes, 3, 1, 1, "hswish"), (3 * lanes, 1, None), (6, 5)),
            ("5x5 -> grouped pw (aggregation)", (4 * lanes, 5, 1, 2, None), (4 * lanes, 2, None), (5, 7)),
            ("3x3 s2 -> pw, 9 rows", (2 * lanes + 1, 3, 2, 1, "hswish"), (4 * lanes, 1, None), (17, 8))]:
        c = dwa[0]
        dw = _conv_op(rng, c, c, dwa[1], dwa[2], dwa[3], c, dwa[4])
        pw = _conv_op(rng, c, pwa[0], 1, 1, 0, pwa[1], pwa[2])
        x = rng.integers(-128, 128, size=(c,) + hw)
        y = _golden(dw, x)
        out.append((name, dw, x, pw, y, _golden(pw, y)))
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_depthwise_pointwise_band_pipeline_is_bit_exact_with_model_cycles(cfg):
    """The MAT engine runs the pointwise conv band by band while the R-MAC engine computes the
    depthwise conv (docs/architecture.md §7); both outputs bit-exact, the cycles the model's,
    faster than one after the other."""
    rng = np.random.default_rng(7)
    cases = _fused_cases(cfg.s, rng)
    plans = [fused_plan(dw, x, pw, y, cfg, 10) for _, dw, x, pw, y, _ in cases]
    assert all(p is not None for p in plans), [c[0] for c, p in zip(cases, plans, strict=True) if p is None]
    core = ComputingCore(cfg)
    results = run_amaranth(cfg, plans, 10)
    for (name, _, _, _, y, z), p, (got, cycles) in zip(cases, plans, results, strict=True):
        assert (got[0] == y).all() and (got[1] == z).all(), name
        cmds = p.commands
        assert cmds[1].follow and cmds[0].band < y.shape[1], name
        rest = cmds[2] if len(cmds) > 2 else None
        assert cycles == fused_core_cycles(cfg, cmds[0], cmds[1], rest, core), name
        one_by_one = sum(core_cycles(cfg, part.command, core) for part in p.parts)
        assert cycles < one_by_one, name


def test_weight_reuse_reads_each_chunk_once_per_pixel_block():
    """A reduction reads a weight chunk once per pixel block and engine, not once per pixel."""
    cfg = BLOCKS
    rng = np.random.default_rng(5)
    plans = [p for p in (plan(r, ins, cfg, 10) for name, r, ins, _ in _cases(cfg.s, rng)
                         if name.startswith(("pw", "conv", "stem")))]
    for p, (_, _, reads, _) in zip(plans, run_amaranth(cfg, plans, 10, weight_reads=True), strict=True):
        c = p.command
        if reduction_engines(c.chunks) == 1:  # one chunk: the MAT engine alone, one tile at a time
            counts = [c.pixels] * c.tiles
        else:
            pairs = -(-c.tiles // 2)
            counts = [c.split if c.tiles % 2 and k == pairs - 1 else c.pixels for k in range(pairs)]
        blocks = sum(pixel_blocks(n, cfg.block_max)[2] for n in counts)
        assert reads == 2 * c.chunks * blocks < 2 * c.chunks * sum(counts), c


@pytest.mark.parametrize("cfg", [THREE, BLOCKS, SHARED],
                         ids=["3x3 blocks 2-4", "tiny blocks 3-5", "4x4 shared"])
def test_engine_0_reads_weights_on_two_cycles_in_a_row_only_for_one_pixel(cfg):
    """The weight buffer's shared port (``CoreSlice(shared_w=)``) delays a host write by one cycle
    when it meets a ``w_rd0`` read and writes it on the next cycle without one: with blocks of two
    beats or more, every command kind and the depthwise-pointwise band pipeline leave one,
    except a one-pixel command (a linear) with one beat per chunk, which an accelerator with the
    shared port never runs: there it takes two (``hw.accelerator.one_pixel_beats``)."""
    assert one_pixel_beats(cfg) == (2 if cfg is SHARED else 1)
    rng = np.random.default_rng(7)
    cases = [(name, plan(r, ins, cfg, 10)) for name, r, ins, _ in _cases(cfg.s, rng)]
    cases += [(name, fused_plan(dw, x, pw, y, cfg, 10)) for name, dw, x, pw, y, _ in _fused_cases(cfg.s, rng)]
    runs = run_amaranth(cfg, [p for _, p in cases], 10, weight_reads=True)
    assert all(reads for _, _, reads, _ in runs)
    back = {name: b for (name, _), (_, _, _, b) in zip(cases, runs, strict=True) if b}
    assert list(back) == ([] if cfg is SHARED else ["linear int32"]), back


def test_extreme_operands_saturate_like_the_golden():
    cfg = PRESETS["tiny"]
    r = dict(kind="conv", w=np.full((4, 4, 1, 1), -128), bias=np.array([2 ** 31 - 1 - 4 * 128 * 128] * 4),
             stride=1, pad=0, groups=1, act=None, mult=np.full(4, 65535), shift=np.zeros(4, np.int64))
    x = np.full((4, 2, 2), -128)
    (got, _), = run_amaranth(cfg, [plan(r, [x], cfg, 8)], 8)
    assert (got == _golden(r, x)).all() and (got == 127).all()


def test_shapes_the_core_cannot_run_are_refused():
    rng = np.random.default_rng(1)
    dw = _conv_op(rng, 4, 4, 3, 1, 0, 4, None)
    with pytest.raises(UnsupportedOp, match="depthwise 3x3 stride 1 pad 0: the core runs"):
        plan(dw, [np.zeros((4, 3, 3), np.int64)], PRESETS["tiny"])
    r, brs, _ = _attention_case(rng, 4, hw=(1, 1))
    with pytest.raises(UnsupportedOp, match="attention over 1 tokens: the core's vk serializer needs"):
        plan(r, brs, PRESETS["tiny"])
    r, brs, _ = _attention_case(rng, 2, heads=1, hw=(16, 17))
    with pytest.raises(UnsupportedOp, match=r"over 272 tokens: the divisor buffer \(1 KiB\) holds 256"):
        plan(r, brs, PRESETS["tiny"])
    with pytest.raises(UnsupportedOp, match="softmax ops have no core command yet"):
        plan(dict(kind="softmax"), [], PRESETS["tiny"])


def test_core_parameter_errors():
    with pytest.raises(ConfigError, match="needs S = T = M = N"):
        ComputingCore(AcceleratorConfig.parse("8x8+8x4x1"))
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        ComputingCore("tiny")
    with pytest.raises(CommandError, match="command field pixels = 70000 does not fit 16 bits"):
        Command(Op.REDUCE, Post.REQUANT, pixels=70000).check(12)
    with pytest.raises(CommandError, match="in_base = 4096 does not fit 12 bits"):
        Command(Op.ADD, in_base=4096).check(12)


def _pixel_parallel_cases(lanes, rng):
    """Ops the compiler cuts by output pixels over the cores: (name, op, inputs, golden)."""
    out = []
    for name, args, hw in [("pw", (2 * lanes, 3 * lanes, 1, 1, 0, 1, None), (1, 13)),
                           ("pw hswish", (lanes + 1, 2 * lanes, 1, 1, 0, 1, "hswish"), (1, 11)),
                           ("grouped pw", (4 * lanes, 4 * lanes, 1, 1, 0, 2, None), (3, 3)),
                           ("depthwise 3x3 s1", (2 * lanes, 2 * lanes, 3, 1, 1, 2 * lanes, None), (7, 5)),
                           ("depthwise 3x3 s2", (lanes + 1, lanes + 1, 3, 2, 1, lanes + 1, "hswish"), (7, 6)),
                           ("depthwise 5x5 s1", (lanes, lanes, 5, 1, 2, lanes, None), (6, 5)),
                           ("depthwise 5x5 s2", (2 * lanes, 2 * lanes, 5, 2, 2, 2 * lanes, None), (9, 7)),
                           ("stem 3x3 s2", (3, 2 * lanes + 1, 3, 2, 1, 1, "hswish"), (7, 6)),
                           ("conv 3x3 s1", (lanes, lanes, 3, 1, 1, 1, None), (5, 4))]:
        r = _conv_op(rng, *args)
        x = rng.integers(-128, 128, size=(args[0],) + hw)
        out.append((name, r, [x], _golden(r, x)))
    c = lanes + 1
    add = dict(kind="add", mult_a=rng.integers(0, 1 << 16, size=c), mult_b=rng.integers(0, 1 << 16, size=c),
               shift=np.full(c, 16))
    a, b = rng.integers(-128, 128, size=(2, c, 2, 5))
    out.append(("add", add, [a, b], arith.add_requantize(a, b, _ch(add["mult_a"]), _ch(add["mult_b"]),
                                                         _ch(add["shift"]))))
    return out


@pytest.mark.parametrize("cores", [2, 3])
def test_cores_in_lockstep_compute_their_pixel_groups_bit_exact(cores):
    """``split`` plans on a CoreSlice of several cores: one command to all, each core's B holding
    its group (the last one short; a depthwise group: whole rows with halos), W and Q shared and
    multicast; every group's pixels equal the golden's, in the cycles of one core's command."""
    from sim.core_ops import by_rows, pixel_parallel, split

    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(5)
    cases = _pixel_parallel_cases(cfg.s, rng)
    plans, groups = [], []
    for _, r, ins, _ in cases:
        whole = plan(r, ins, cfg, 10)
        assert pixel_parallel(whole)
        c = whole.command
        rows = c.pixels // c.out_w
        per = -(-rows // cores) * c.out_w if by_rows(whole) else -(-c.pixels // cores)
        plans.append(split(whole, per, cfg))
        n = -(-c.pixels // per)  # groups: every core of them has a pixel
        groups.append([split(whole, per, cfg, j).writes["b"][1] for j in range(n)])
    core = ComputingCore(cfg)
    for (name, _, _, want), p, (got, cycles) in zip(cases, plans, run_amaranth(cfg, plans, 10, groups=groups),
                                                    strict=True):
        joined = np.concatenate([g.reshape(g.shape[0], -1) for g in got], axis=1)
        joined = joined[:, :want[0].size].reshape(want.shape)
        bad = np.argwhere(joined != want)
        assert not len(bad), f"{name}: first mismatch at {bad[0].tolist()}"
        assert cycles == core_cycles(cfg, p.command, core), name


def test_ops_that_need_other_pixels_are_not_cut():
    from sim.core_ops import pixel_parallel

    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(6)
    for name, r, ins, _ in _cases(cfg.s, rng):
        p = plan(r, ins, cfg, 10)
        assert pixel_parallel(p) == (r["kind"] not in ("linear", "attn", "pool")), name


@pytest.mark.parametrize("d", [4, 3])
def test_attention_cut_by_heads_uses_each_cores_aux_buffer(d):
    """A LiteMLA attention cut by heads over two cores (``split_heads``): the same commands on
    both, each core's vk chunks in its own aux buffer above W (``CoreSlice.aux_base``); the
    heads equal the golden's (word-aligned and padded heads)."""
    from sim.core_ops import head_groups, split_heads

    cfg = PRESETS["tiny"]
    r, brs, want = _attention_case(np.random.default_rng(8), d, heads=3)
    cores, per = head_groups(r, brs, 2)
    assert (cores, per) == (2, 2)
    mem_bits = {"w": 6}
    aux = 1 << mem_bits["w"]
    plans = [split_heads(r, brs, per, j, cfg).relocate({"w": aux}) for j in range(cores)]
    (got, cycles), = run_amaranth(cfg, plans[:1], 10, groups=[[p.writes["b"][1] for p in plans]],
                                  mem_bits=mem_bits, aux_depth=64)
    cwd = -(-d // cfg.s)
    heads = []
    for b in range(2):  # branch b's heads: core 0's, then core 1's (its second head past the last)
        for j in range(cores):
            heads += [got[j][(b * per + h) * d:(b * per + h + 1) * d] for h in range(per) if j * per + h < 3]
    np.testing.assert_array_equal(np.concatenate(heads), want)
    assert cycles == sum(core_cycles(cfg, c, ComputingCore(cfg)) for c in plans[0].all_commands())
    assert cwd * 2 * per * (1 + cwd) <= 64  # the vk chunks fit the aux buffer


def test_core_dsps_by_unit():
    """The paper's core: 32 DSP48E2 in the packed MAT engine, 64 in the R-MAC engine (one
    multiply-accumulate slice per R-MAC), 48 in the post-processing (the one PostProcessor and
    the residual adder): 144, so 16 cores take 2,304 of the ZCU102's 2,520."""
    core = ComputingCore(PRESETS["paper"])
    core._MustUse__silence = True
    assert core.dsps() == {"mat_engine": 32, "rmac_engine": 64, "post_processor": 32, "residual_adder": 16}
