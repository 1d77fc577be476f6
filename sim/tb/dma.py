"""cocotb testbench of the DMA engine (``sim.dma_top.DmaTop``) against cocotbext-axi's ``AxiRam``.

Every channel of the RAM pauses at random (reproducible from TRIO_SEED), and the buffer holds the
loads and the stores at random (``wr_ready``, ``rd_ready``). Random 2-D loads
(DRAM -> buffer) and stores (buffer -> DRAM), many of them across 4 KiB boundaries, round-trip
data that is compared byte for byte; the bursts seen on ar and aw are compared with
``hw.axi.bursts`` (the RAM model itself asserts that no burst crosses 4 KiB); loads and stores
overlap; with no back-pressure a load takes its beats plus a fixed latency; reads and writes
in a hole of the address map come back as SLVERR and set the engine's error output instead of hanging.

Environment (set by ``sim.dma_top.run_dma_cocotb``): TRIO_DMA_PARAMS, TRIO_SEED, TRIO_TRANSFERS.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiBus, AxiRam

from hw.axi import Resp, bursts
from hw.dma_reader import load_layout
from hw.dma_writer import store_layout

RAM_BYTES = 1 << 20
HOLE = RAM_BYTES - 4096  # the last page answers SLVERR (a hole in the address map)


def pack(layout, **fields):
    value = 0
    for name, field in layout:
        v = fields[name]
        assert 0 <= v < 1 << field.width, (name, v)
        value |= v << field.offset
    return value


def pauses(rng, rate):
    while True:
        yield rng.random() < rate


class Bench:
    def __init__(self, dut, p, rng):
        self.dut, self.p, self.rng = dut, p, rng
        self.beat = p["data_width"] // 8
        self.ram = AxiRam(AxiBus.from_prefix(dut, "axi_"), dut.clk, dut.rst, size=RAM_BYTES)
        self.seen = {"ar": [], "aw": []}
        for side, name in ((self.ram.read_if, "_read"), (self.ram.write_if, "_write")):
            setattr(side, name, self._holed(getattr(side, name)))
        self.load_l = load_layout(p["addr_width"], p["dim_bits"], p["buf_addr_width"])
        self.store_l = store_layout(p["addr_width"], p["dim_bits"], p["buf_addr_width"])

    @staticmethod
    def _holed(access):
        async def checked(address, arg):
            if address >= HOLE:
                raise ValueError(f"{address:#x} is in the hole")
            return await access(address, arg)
        return checked

    async def hold(self, name, rate):
        """The buffer's ``name`` (``wr_ready``: loads, ``rd_ready``: stores) low on a random
        ``rate`` of the cycles."""
        rng = random.Random(self.rng.random())
        signal = getattr(self.dut, name)
        while True:
            signal.value = int(rng.random() >= rate)
            await RisingEdge(self.dut.clk)

    def back_pressure(self, rate):
        ifs = self.ram.read_if, self.ram.write_if
        chans = [ifs[0].ar_channel, ifs[0].r_channel, ifs[1].aw_channel, ifs[1].w_channel, ifs[1].b_channel]
        for ch in chans:
            ch.set_pause_generator(pauses(random.Random(self.rng.random()), rate) if rate else None)
            if not rate:
                ch.pause = False  # clearing the generator leaves the last value

    async def monitor(self):
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            for ch in ("ar", "aw"):
                if int(getattr(d, f"axi__{ch}valid").value) and int(getattr(d, f"axi__{ch}ready").value):
                    self.seen[ch].append((int(getattr(d, f"axi__{ch}addr").value),
                                          int(getattr(d, f"axi__{ch}len").value) + 1))

    async def issue(self, kind, **fields):
        """Hand a command over; returns the cycle it was accepted."""
        d = self.dut
        layout = self.load_l if kind == "load" else self.store_l
        getattr(d, f"{kind}__payload").value = pack(layout, **fields)
        getattr(d, f"{kind}__valid").value = 1
        while True:
            await RisingEdge(d.clk)
            if int(getattr(d, f"{kind}__ready").value):
                break
        getattr(d, f"{kind}__valid").value = 0

    async def wait(self, kind, limit=200_000):
        d = self.dut
        for n in range(limit):
            await RisingEdge(d.clk)
            if not int(getattr(d, f"{kind}_busy").value):
                return n + 1, int(getattr(d, f"{kind}_error").value)
        raise AssertionError(f"{kind} still busy after {limit} cycles")

    def random_2d(self, limit_words):
        """A random 2-D shape and a DRAM start, often just below a 4 KiB boundary."""
        rng, beat = self.rng, self.beat
        rows = rng.randint(1, 4)
        row_beats = rng.randint(1, min(40, limit_words // rows))
        stride = row_beats * beat + rng.randint(0, 8) * beat
        span = (rows - 1) * stride + row_beats * beat
        if rng.random() < 0.5:
            addr = rng.randrange(4096, HOLE - span, 4096) - rng.randint(1, 20) * beat
        else:
            addr = rng.randrange(0, (HOLE - span) // beat) * beat
        return rows, row_beats, stride, addr


async def load_store_round_trip(bench, buf_base, check_bursts=True):
    """A random load into the buffer at ``buf_base`` and a store of the same words elsewhere."""
    p, rng, beat, ram = bench.p, bench.rng, bench.beat, bench.ram
    words = (1 << p["buf_addr_width"]) // 2
    rows, row_beats, stride, src = bench.random_2d(words)
    gap = rng.randint(0, max(0, words // rows - row_beats))
    dst_stride = row_beats + gap
    bench.seen["ar"].clear()
    await bench.issue("load", addr=src, row_beats=row_beats, rows=rows, stride=stride, dst=buf_base,
                      dst_stride=dst_stride)
    _, err = await bench.wait("load")
    assert err == Resp.OKAY, f"load error {Resp.NAMES[err]}"
    _, _, _, dst = bench.random_2d(words)
    out_stride = row_beats * beat + rng.randint(0, 4) * beat
    while dst + (rows - 1) * out_stride + row_beats * beat > HOLE:
        dst -= 4096
    want = [ram.read(src + r * stride, row_beats * beat) for r in range(rows)]  # dst may overlap src
    bench.seen["aw"].clear()
    await bench.issue("store", addr=dst, row_beats=row_beats, rows=rows, stride=out_stride, src=buf_base,
                      src_stride=dst_stride)
    _, err = await bench.wait("store")
    assert err == Resp.OKAY, f"store error {Resp.NAMES[err]}"
    for r in range(rows):
        got = ram.read(dst + r * out_stride, row_beats * beat)
        assert got == want[r], f"row {r} of a {rows}x{row_beats} transfer {src:#x} -> {dst:#x} differs"
    if check_bursts:
        assert bench.seen["ar"] == bursts(src, row_beats, rows, stride, beat, p["max_beats"])
        assert bench.seen["aw"] == bursts(dst, row_beats, rows, out_stride, beat, p["max_beats"])


@cocotb.test()
async def dma(dut):
    p = json.loads(os.environ["TRIO_DMA_PARAMS"])
    rng = random.Random(int(os.environ["TRIO_SEED"]))
    transfers = int(os.environ["TRIO_TRANSFERS"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.load__valid.value = 0
    dut.store__valid.value = 0
    dut.wr_ready.value = dut.rd_ready.value = 1
    dut.rst.value = 1
    bench = Bench(dut, p, rng)
    bench.ram.write(0, bytes(rng.getrandbits(8) for _ in range(RAM_BYTES)))
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    cocotb.start_soon(bench.monitor())
    beat = bench.beat

    # Random round trips under random back-pressure on every channel, the buffer holding the
    # loads and the stores on a random fifth of the cycles (``wr_ready``, ``rd_ready``).
    bench.back_pressure(0.3)
    holding = [cocotb.start_soon(bench.hold(name, 0.2)) for name in ("wr_ready", "rd_ready")]
    for _ in range(transfers):
        await load_store_round_trip(bench, buf_base=0)
    for h in holding:
        h.cancel()
    dut.wr_ready.value = dut.rd_ready.value = 1

    # A store and a load at the same time (different halves of the buffer).
    half = 1 << (p["buf_addr_width"] - 1)
    n = min(half, 64)
    src_a, src_b = 0, 4096 * 8 + 3 * beat
    out_a, out_b = RAM_BYTES // 2 - 2 * beat, RAM_BYTES // 2 + 4096 * 4
    await bench.issue("load", addr=src_a, row_beats=n, rows=1, stride=0, dst=0, dst_stride=0)
    await bench.wait("load")
    await bench.issue("store", addr=out_a, row_beats=n, rows=1, stride=0, src=0, src_stride=0)
    await bench.issue("load", addr=src_b, row_beats=n, rows=1, stride=0, dst=half, dst_stride=0)
    await RisingEdge(dut.clk)
    assert int(dut.store_busy.value) and int(dut.load_busy.value), "the load waited for the store"
    await bench.wait("store")
    await bench.wait("load")
    await bench.issue("store", addr=out_b, row_beats=n, rows=1, stride=0, src=half, src_stride=0)
    await bench.wait("store")
    assert bench.ram.read(out_a, n * beat) == bench.ram.read(src_a, n * beat)
    assert bench.ram.read(out_b, n * beat) == bench.ram.read(src_b, n * beat)

    # No back-pressure: a load streams one beat per cycle after a fixed latency.
    bench.back_pressure(0)
    beats = min(half, 128)
    await bench.issue("load", addr=0, row_beats=beats, rows=1, stride=0, dst=0, dst_stride=0)
    cycles, _ = await bench.wait("load")
    dut._log.info("load of %d beats without back-pressure: %d cycles", beats, cycles)
    assert beats <= cycles <= beats + 16, f"{beats} beats took {cycles} cycles"

    # Into the hole: SLVERR, reported, no hang.
    await bench.issue("load", addr=HOLE - 2 * beat, row_beats=4, rows=1, stride=0, dst=0, dst_stride=0)
    _, err = await bench.wait("load")
    assert err == Resp.SLVERR, f"load into the hole: {Resp.NAMES[err]}"
    await bench.issue("store", addr=HOLE, row_beats=4, rows=1, stride=0, src=0, src_stride=0)
    _, err = await bench.wait("store")
    assert err == Resp.SLVERR, f"store into the hole: {Resp.NAMES[err]}"
    # ... and the next command starts clean.
    await load_store_round_trip(bench, buf_base=0)
