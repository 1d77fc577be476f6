"""Buffer B in two true dual port halves (``CoreSlice(b_halves=)``): the core's accesses are
served first, the DMA takes the ports left and waits otherwise, a third access of a half is
flagged; and ``buffer_ports`` counts the ports the memories really get."""

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from hw.config import PRESETS
from hw.core_slice import MEMORIES, CoreSlice
from quant import arith
from sim.core_ops import pack_words, plan, unpack_words

CFG = PRESETS["tiny"]
CFG_SHAPES = CoreSlice(CFG, 10).shapes
BITS = 10  # 1,024 words of B: halves of 512


def _dw_case():
    rng = np.random.default_rng(3)
    r = dict(kind="conv", w=rng.integers(-128, 128, size=(8, 1, 3, 3)),
             bias=rng.integers(-5000, 5000, size=8), stride=1, pad=1, groups=8, act=None,
             mult=rng.integers(1 << 14, 1 << 16, size=8), shift=rng.integers(14, 22, size=8))
    x = rng.integers(-128, 128, size=(8, 6, 6))
    acc = arith.conv2d_acc(x, r["w"], r["bias"], 1, 1, 8)
    return plan(r, [x], CFG, BITS), arith.requantize(acc, r["mult"][:, None, None], r["shift"][:, None, None])


def _run(p, traffic, out_at):
    """Load plan ``p`` (its output moved to word ``out_at``), run it while the host writes the
    words of ``traffic`` ({address: word}) into B and reads the plan's input words as the ports
    allow, then read the result and the words written. Returns (result, {address: word read
    while it ran}, {address: word read after}, cycles wready was low, cycles rready was low,
    cycles b_conflict was high)."""
    p = p.relocate({"out": out_at - p.out_base})
    dut = CoreSlice(CFG, BITS, cores=1, b_halves=True)
    shapes = dut.shapes
    got, after, stats = {}, {}, {"wready": 0, "rready": 0, "conflict": 0}
    result = []

    async def tb(ctx):
        async def write(mem, base, words):
            ctx.set(dut.host_sel, MEMORIES.index(mem))
            for k, w in enumerate(words):
                ctx.set(dut.host_addr, base + k)
                ctx.set(dut.host_wdata, w)
                ctx.set(dut.host_we, 1)
                await ctx.tick()
            ctx.set(dut.host_we, 0)

        for mem, (base, items) in p.writes.items():
            await write(mem, base, pack_words(shapes[mem], items))
        ctx.set(dut.cmd.payload.as_value(), p.command.value(BITS))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        inputs = range(p.writes["b"][0], p.writes["b"][0] + len(p.writes["b"][1]))
        todo_w, todo_r = sorted(traffic), list(inputs)
        may_write = True  # a write may be presented (wready was high a cycle ago)
        ctx.set(dut.host_sel, 0)
        ctx.set(dut.host_rsel, 0)
        while ctx.get(dut.busy) or todo_w or todo_r:
            written = todo_w and may_write
            if written:
                ctx.set(dut.host_addr, todo_w[0])
                ctx.set(dut.host_wdata, traffic[todo_w[0]])
            ctx.set(dut.host_we, bool(written))
            ready = todo_r[:1]  # the host's reads, when the port serves them
            ctx.set(dut.host_re, bool(ready))
            if ready:
                ctx.set(dut.host_raddr, ready[0])
            may_write = ctx.get(dut.host_wready)
            served = ready and ctx.get(dut.host_rready)
            stats["wready"] += not may_write
            stats["rready"] += bool(ready) and not served
            stats["conflict"] += ctx.get(dut.b_conflict)
            await ctx.tick()
            if written:
                todo_w.pop(0)
            if served:  # the word at the address presented before the edge
                got[todo_r.pop(0)] = ctx.get(dut.host_rdata) & ((1 << shapes["b"].size) - 1)
        ctx.set(dut.host_we, 0)
        ctx.set(dut.host_re, 1)
        words = []
        for k in range(p.out_words):
            ctx.set(dut.host_raddr, p.out_base + k)
            await ctx.tick()
            words.append(ctx.get(dut.host_rdata) & ((1 << shapes["b"].size) - 1))
        result.append(p.decode(unpack_words(shapes["b"], words)))
        for a in traffic:
            ctx.set(dut.host_raddr, a)
            await ctx.tick()
            after[a] = ctx.get(dut.host_rdata) & ((1 << shapes["b"].size) - 1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return result[0], got, after, stats["wready"], stats["rready"], stats["conflict"]


def test_the_dma_waits_for_the_ports_a_depthwise_conv_leaves():
    """A depthwise conv reads its input through both ports of the lower half (its window fill)
    and writes the upper: host writes and reads of the lower half wait for free ports and all
    land; the result is exact and no core access is dropped."""
    p, want = _dw_case()
    traffic = {a: (a * 0x9E3779B1) & ((1 << CFG_SHAPES["b"].size) - 1) for a in range(200, 260)}
    result, got, after, w_low, r_low, conflicts = _run(p, traffic, 512)
    assert (result == want).all()
    assert after == traffic
    base, items = p.writes["b"]
    assert got == {base + k: w for k, w in enumerate(pack_words(CFG_SHAPES["b"], items))}
    assert w_low > 0 and r_low > 0 and conflicts == 0


def test_a_third_access_of_a_half_is_flagged():
    """A residual add reads its two addends and writes its sum every cycle: with the sum in the
    addends' half (three accesses a cycle there) a core access is dropped and ``b_conflict``
    says so (the accelerator ends the run with B_PORTS); in the other half, none is."""
    rng = np.random.default_rng(4)
    add = dict(kind="add", mult_a=rng.integers(0, 1 << 16, size=4), mult_b=rng.integers(0, 1 << 16, size=4),
               shift=np.full(4, 16))
    a, b = rng.integers(-128, 128, size=(2, 4, 3, 3))
    p = plan(add, [a, b], CFG, BITS)
    want = arith.add_requantize(a, b, add["mult_a"][:, None, None], add["mult_b"][:, None, None], 16)
    result, *_, conflicts = _run(p, {}, 512)
    assert (result == want).all() and conflicts == 0
    *_, conflicts = _run(p, {}, 300)
    assert conflicts > 0


@pytest.mark.parametrize("halves", [False, True], ids=["one memory", "halves"])
def test_buffer_ports_are_the_elaborated_memories_ports(halves):
    """``CoreSlice.buffer_ports`` (what the generator reports and warns about) counts the ports
    the memories really get."""
    sl = CoreSlice(PRESETS["tiny"], addr_bits=8, mem_bits={"w": 6}, cores=2, aux_depth=4, b_halves=halves)
    m = sl.elaborate(None)
    b = ["mem_b_lo", "mem_b_hi", "mem_b1_lo", "mem_b1_hi"] if halves else ["mem_b", "mem_b1"]
    names = {"b": b, "w": ["mem_w"], "q": ["mem_q"], "o": ["mem_o"], "aux": ["aux0", "aux1"]}
    ports = sl.buffer_ports()
    assert set(ports) == set(names)
    for name, subs in names.items():
        assert ports[name].copies == len(subs)
        for sub in subs:
            mem = m.submodules[sub]
            assert (len(mem.write_ports), len(mem.read_ports)) == (ports[name].writes, ports[name].reads), sub
            assert (Shape.cast(mem.shape).width, mem.depth) == (ports[name].width, ports[name].depth), sub
