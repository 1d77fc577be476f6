"""The runtime's simulation backend: the generated accelerator under cocotb, DRAM as cocotbext-axi's
``AxiRam`` on each AXI4 manager port (one memory behind them all; optionally with random
back-pressure on every channel) and the host as its ``AxiLiteMaster`` on the register port."""

import logging
import random

from cocotb.triggers import RisingEdge, with_timeout
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from hw.axi import Resp
from runtime.runtime import RunError

__all__ = ["SimBackend"]


def _pauses(rng, rate):
    while True:
        yield rng.random() < rate


class SimBackend:
    """``dut``: the accelerator top (``hw.accelerator.Accelerator`` as Verilog, clock ``clk``,
    reset ``rst``); ``dram_size`` bytes of DRAM from address 0; ``back_pressure``: the chance per
    cycle that a channel of the RAM model pauses; ``timeout_ns``: how long ``wait_irq`` waits;
    ``hole``: an address range (start, end) whose reads and writes answer SLVERR."""

    def __init__(self, dut, dram_size=1 << 24, back_pressure=0.0, seed=0, timeout_ns=10**9, hole=None):
        self.dut = dut
        # one RAM model per AXI manager port (m_axi0, m_axi1, ...), all over port 0's memory
        self.rams = []
        while hasattr(dut, f"m_axi{len(self.rams)}__arvalid"):
            mem = self.rams[0].mem if self.rams else None
            self.rams.append(AxiRam(AxiBus.from_prefix(dut, f"m_axi{len(self.rams)}_"), dut.clk, dut.rst,
                                    size=dram_size, mem=mem))
        if not self.rams:
            raise RunError("the design has no AXI manager port m_axi0")
        self.ram = self.rams[0]
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        models = [self.axil.read_if, self.axil.write_if]
        models += [x for r in self.rams for x in (r.read_if, r.write_if)]
        for model in models:
            model.log.setLevel(logging.WARNING)  # not a line per burst: whole networks run millions
        self.dram_base, self.dram_size, self.timeout_ns = 0, dram_size, timeout_ns
        rng = random.Random(seed)
        for ram in self.rams:
            if hole is not None:  # [start, end): a hole in the address map, answering SLVERR
                for side, name in ((ram.read_if, "_read"), (ram.write_if, "_write")):
                    setattr(side, name, self._holed(getattr(side, name), *hole))
            if back_pressure:
                r, w = ram.read_if, ram.write_if
                for ch in (r.ar_channel, r.r_channel, w.aw_channel, w.w_channel, w.b_channel):
                    ch.set_pause_generator(_pauses(random.Random(rng.random()), back_pressure))

    @staticmethod
    def _holed(access, start, end):
        async def checked(address, arg):
            if start <= address < end:
                raise ValueError(f"{address:#x} is in the hole")
            return await access(address, arg)
        return checked

    async def write_mem(self, addr, data):
        self.ram.write(addr, data)

    async def read_mem(self, addr, n):
        return bytes(self.ram.read(addr, n))

    async def write_reg(self, offset, value):
        r = await self.axil.write(offset, int(value).to_bytes(4, "little"))
        if r.resp != Resp.OKAY:
            raise RunError(f"register write at {offset:#x} answered {Resp.NAMES[int(r.resp)]}")

    async def read_reg(self, offset):
        r = await self.axil.read(offset, 4)
        if r.resp != Resp.OKAY:
            raise RunError(f"register read at {offset:#x} answered {Resp.NAMES[int(r.resp)]}")
        return int.from_bytes(r.data, "little")

    async def wait_irq(self):
        if int(self.dut.irq.value):
            return
        try:
            await with_timeout(RisingEdge(self.dut.irq), self.timeout_ns, "ns")
        except Exception as e:  # noqa: BLE001 (cocotb's SimTimeoutError)
            raise RunError(f"no interrupt within {self.timeout_ns} ns ({type(e).__name__})") from None
