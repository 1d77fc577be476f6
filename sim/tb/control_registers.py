"""cocotb testbench of the register slave (``hw.control_registers``) driven by cocotbext-axi's
``AxiLiteMaster``; the testbench plays the controller (busy, finish, error, unit_busy, trace).

Checks, by register name from ``hw.registers``: version and configuration hash; every rw register
written and read back (and on its output), byte strobes; SLVERR on read-only writes and on
unmapped addresses; START as one pulse, ignored while busy; a run's counters, trace entries, DONE
and ERROR, the interrupt and its write-1-to-clear; SOFT_RESET.

Environment: TRIO_CONFIG_HASH (decimal), TRIO_SEED.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from hw.axi import Resp
from hw.registers import BY_NAME, COUNTERS, REGIONS, REGISTERS, VERSION, Control, ErrorCode, Irq, Status


class Host:
    def __init__(self, dut):
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axi_"), dut.clk, dut.rst)

    async def read(self, name_or_offset):
        off = BY_NAME[name_or_offset].offset if isinstance(name_or_offset, str) else name_or_offset
        r = await self.axil.read(off, 4)
        return int.from_bytes(r.data, "little"), r.resp

    async def value(self, name):
        v, resp = await self.read(name)
        assert resp == Resp.OKAY, f"read {name}: {resp}"
        return v

    async def write(self, name_or_offset, value, nbytes=4, byte=0):
        off = BY_NAME[name_or_offset].offset if isinstance(name_or_offset, str) else name_or_offset
        r = await self.axil.write(off + byte, value.to_bytes(nbytes, "little"))
        return r.resp


@cocotb.test()
async def registers(dut):
    rng = random.Random(int(os.environ["TRIO_SEED"]))
    config_hash = int(os.environ["TRIO_CONFIG_HASH"])
    Clock(dut.clk, 10, unit="ns").start()
    for name in ("busy", "finish", "error", "unit_busy", "trace__valid", "trace__payload"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    host = Host(dut)
    starts = []

    async def watch_start():
        while True:
            await RisingEdge(dut.clk)
            if int(dut.start.value):
                starts.append(1)
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    cocotb.start_soon(watch_start())

    assert await host.value("VERSION") == VERSION
    assert await host.value("CONFIG_HASH_LO") == config_hash & 0xFFFF_FFFF
    assert await host.value("CONFIG_HASH_HI") == config_hash >> 32

    # Every rw register: a random value written, read back, and on its output port.
    written = {}
    for reg in REGISTERS:
        if reg.access == "rw":
            width = 2 if reg.name == "IRQ_ENABLE" else 16 if reg.name == "TRACE_INDEX" else 32
            written[reg.name] = rng.getrandbits(width)
            assert await host.write(reg.name, written[reg.name]) == Resp.OKAY
    for name, v in written.items():
        assert await host.value(name) == v, name
    assert int(dut.program_length.value) == written["PROGRAM_LENGTH"]
    for region in REGIONS:
        want = written[f"{region.upper()}_BASE_HI"] << 32 | written[f"{region.upper()}_BASE_LO"]
        assert int(getattr(dut, f"{region}_base").value) == want, region
    # Byte strobes: one byte written, the others kept.
    await host.write("PROGRAM_LENGTH", 0xAB, nbytes=1, byte=2)
    v = written["PROGRAM_LENGTH"]
    assert await host.value("PROGRAM_LENGTH") == (v & ~0xFF0000) | 0xAB0000

    # Errors: a write to a read-only register, addresses outside the map.
    assert await host.write("VERSION", 0) == Resp.SLVERR
    assert await host.value("VERSION") == VERSION
    mapped = {r.offset for r in REGISTERS}
    hole = next(o for o in range(0, 4096, 4) if o not in mapped)
    assert (await host.read(hole))[1] == Resp.SLVERR
    assert (await host.read(0xFFC))[1] == Resp.SLVERR
    assert await host.write(0xFFC, 1) == Resp.SLVERR

    async def run(cycles, error, trace):
        """START, then `cycles` busy cycles with random unit activity and `trace` entries, then finish."""
        counts = {name: 0 for name in COUNTERS}
        starts.clear()
        assert await host.write("CONTROL", Control.START) == Resp.OKAY
        for _ in range(3):
            await RisingEdge(dut.clk)
        assert starts == [1], f"START gave {len(starts)} pulses"
        dut.busy.value = 1
        entries = []
        for c in range(cycles):
            bits = rng.getrandbits(len(COUNTERS) - 1)
            dut.unit_busy.value = bits
            t = c in trace
            dut.trace__valid.value = int(t)
            if t:
                op, index = rng.getrandbits(8), len(entries)
                dut.trace__payload.value = index << 8 | op
                entries.append((index << 8 | op, c))
            await RisingEdge(dut.clk)
            counts["cycles"] += 1
            for k, name in enumerate(COUNTERS[1:]):
                counts[name] += bits >> k & 1
        dut.trace__valid.value = 0
        dut.finish.value = 1
        dut.error.value = error
        dut.busy.value = 0
        await RisingEdge(dut.clk)
        dut.finish.value = 0
        return counts, entries

    # A run: counters, trace, DONE, the interrupt.
    assert await host.write("IRQ_ENABLE", Irq.DONE | Irq.ERROR) == Resp.OKAY
    assert await host.write("IRQ_STATUS", 3) == Resp.OKAY
    counts, entries = await run(200, ErrorCode.NONE, trace={5, 17, 18, 150})
    status = await host.value("STATUS")
    assert status & Status.DONE and not status & Status.BUSY and status >> Status.ERROR_SHIFT == 0
    for name, want in counts.items():
        assert await host.value(f"{name.upper()}_LO") == want, name
        assert await host.value(f"{name.upper()}_HI") == 0, name
    assert await host.value("TRACE_COUNT") == len(entries)
    for k, (opcode, cycle) in enumerate(entries):
        await host.write("TRACE_INDEX", k)
        assert await host.value("TRACE_OPCODE") == opcode
        assert await host.value("TRACE_CYCLE") == cycle
    assert int(dut.irq.value) == 1 and await host.value("IRQ_STATUS") == Irq.DONE
    assert await host.write("IRQ_STATUS", Irq.DONE) == Resp.OKAY
    assert int(dut.irq.value) == 0 and await host.value("IRQ_STATUS") == 0

    # START while busy is ignored.
    dut.busy.value = 1
    starts.clear()
    await host.write("CONTROL", Control.START)
    for _ in range(3):
        await RisingEdge(dut.clk)
    assert starts == []
    dut.busy.value = 0

    # A run that fails: ERROR in STATUS and IRQ_STATUS; a masked interrupt stays low.
    assert await host.write("IRQ_ENABLE", Irq.DONE) == Resp.OKAY
    await run(10, ErrorCode.LOAD_SLVERR, trace=set())
    status = await host.value("STATUS")
    assert status >> Status.ERROR_SHIFT == ErrorCode.LOAD_SLVERR and status & Status.DONE
    assert await host.value("IRQ_STATUS") == Irq.DONE | Irq.ERROR
    assert await host.write("IRQ_STATUS", Irq.DONE) == Resp.OKAY
    assert await host.value("IRQ_STATUS") == Irq.ERROR and int(dut.irq.value) == 0

    # SOFT_RESET clears status, interrupt status and counters; registers keep their values.
    assert await host.write("CONTROL", Control.SOFT_RESET) == Resp.OKAY
    assert await host.value("STATUS") == 0 and await host.value("IRQ_STATUS") == 0
    assert await host.value("CYCLES_LO") == 0
    assert await host.value("IRQ_ENABLE") == Irq.DONE
