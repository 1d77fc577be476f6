"""The DMA engine: its burst sequencer against ``hw.axi.bursts`` in amaranth.sim, and the whole
engine on Icarus against cocotbext-axi's AxiRam (random back-pressure, 4 KiB boundaries, errors)."""

import random

import pytest
from amaranth.sim import Simulator

from hw.axi import axi4, axi4_lite, bursts
from hw.burst_sequencer import BurstSequencer
from hw.dma import Dma
from sim.dma_top import DMA_TEST_PARAMS, run_dma_cocotb


def _sequence(dut, commands):
    """Every burst the sequencer emits for ``commands`` (a ready that drops at random)."""
    got = []
    rng = random.Random(1)

    async def bench(ctx):
        for addr, row_beats, rows, stride in commands:
            ctx.set(dut.cmd.payload, {"addr": addr, "row_beats": row_beats, "rows": rows, "stride": stride})
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            bursts_ = []
            for _ in range(10_000):
                ready = rng.random() < 0.7
                ctx.set(dut.burst.ready, ready)
                await ctx.delay(1e-9)
                if ready and ctx.get(dut.burst.valid):
                    b = ctx.get(dut.burst.payload)
                    bursts_.append((b.addr, b.beats))
                    last = b.last
                else:
                    last = False
                await ctx.tick()
                if last:
                    break
            ctx.set(dut.burst.ready, 0)
            assert not ctx.get(dut.busy)
            got.append(bursts_)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("beat_bytes,max_beats", [(16, 16), (4, 7), (64, 256)])
def test_burst_sequencer_matches_reference(beat_bytes, max_beats):
    rng = random.Random(beat_bytes)
    commands = []
    for _ in range(30):
        rows, row_beats = rng.randint(1, 4), rng.randint(1, 300)
        stride = (row_beats + rng.randint(0, 50)) * beat_bytes
        addr = rng.randrange(1, 1 << 12) * 4096 - rng.randint(0, 40) * beat_bytes
        commands.append((addr, row_beats, rows, stride))
    got = _sequence(BurstSequencer(32, beat_bytes, max_beats, 12), commands)
    for (addr, row_beats, rows, stride), seq in zip(commands, got, strict=True):
        assert seq == bursts(addr, row_beats, rows, stride, beat_bytes, max_beats)
        assert all(1 <= n <= max_beats and a // 4096 == (a + n * beat_bytes - 1) // 4096 for a, n in seq)


def test_parameter_errors():
    with pytest.raises(ValueError, match="Beat size"):
        BurstSequencer(beat_bytes=3)
    with pytest.raises(ValueError, match="Burst length"):
        BurstSequencer(max_beats=257)
    with pytest.raises(ValueError, match="AXI4 data width"):
        axi4(data_width=96)
    with pytest.raises(ValueError, match="AXI4-Lite data width"):
        axi4_lite(data_width=128)
    with pytest.raises(ValueError, match="Outstanding"):
        Dma(outstanding=0)


@pytest.mark.cocotb
@pytest.mark.parametrize("params", DMA_TEST_PARAMS, ids=["128bit", "32bit-short-bursts"])
def test_dma_against_axi_ram(params, tmp_path_factory):
    tests, failed, build = run_dma_cocotb(params, transfers=25, build_root=tmp_path_factory.mktemp("dma"))
    assert (tests, failed) == (1, 0), f"see {build}/sim.log"
