"""The DMA engine on a buffer, and its cocotb run against cocotbext-axi's ``AxiRam``.

``DmaTop`` is a :class:`hw.dma.Dma` whose reader writes and whose writer reads one buffer memory
(``2**buf_addr_width`` words of ``data_width`` bits); ``run_dma_cocotb`` emits it and runs the
testbench ``sim.tb.dma`` on Icarus (or Verilator).
"""

import hashlib
import json
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import Dma

__all__ = ["DmaTop", "run_dma_cocotb", "DMA_TEST_PARAMS"]

# What tests/test_dma.py runs: the ZCU102's 128-bit HP port, and a narrow port with short bursts
# and few outstanding so that every limit is hit often.
DMA_TEST_PARAMS = [
    dict(addr_width=32, data_width=128, buf_addr_width=9, max_beats=16, outstanding=8, dim_bits=12,
         fifo_depth=4),
    dict(addr_width=32, data_width=32, buf_addr_width=9, max_beats=5, outstanding=2, dim_bits=12,
         fifo_depth=2),
]


class DmaTop(wiring.Component):
    """A :class:`Dma` with its buffer: the members of ``Dma`` except the buffer ports; the buffer
    honours ``wr_ready`` and ``rd_ready`` as a held port would (no write, the last word read)."""

    def __init__(self, **params):
        self._dma = Dma(**params)
        self._p = params
        sig = self._dma.signature.members
        super().__init__({name: Out(member.signature) if member.is_signature and member.flow == Out
                          else member for name, member in sig.items() if name not in ("wr", "rd")})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self._dma
        m.submodules.buf = buf = memory.Memory(shape=self._p["data_width"],
                                               depth=1 << self._p["buf_addr_width"], init=[])
        wr, rd = buf.write_port(), buf.read_port()
        # the buffer takes a write only while ``wr_ready`` and serves a read only while
        # ``rd_ready`` (a port held by another user), so an engine that ignores them fails
        m.d.comb += [wr.addr.eq(dma.wr.addr), wr.data.eq(dma.wr.data), wr.en.eq(dma.wr.en & self.wr_ready),
                     rd.addr.eq(dma.rd.addr), rd.en.eq(dma.rd.en & self.rd_ready), dma.rd.data.eq(rd.data)]
        for name, member in self.signature.members.items():
            ours, theirs = getattr(self, name), getattr(dma, name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(ours), theirs)
            elif member.flow == In:  # wr_ready, rd_ready: the buffer's holds on the loads and stores
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)  # the status outputs
        return m


def run_dma_cocotb(params, seed=2026, transfers=40, build_root=None, sim="icarus"):
    """Emit ``DmaTop(**params)`` and run ``sim.tb.dma``; return (tests, failed, build_dir)."""
    from sim.runner import ROOT, run_testbench

    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    build_dir = Path(build_root or ROOT / "build" / "sim") / f"dma-{key}"
    env = {"TRIO_DMA_PARAMS": json.dumps(params), "TRIO_SEED": str(seed), "TRIO_TRANSFERS": str(transfers)}
    tests, failed = run_testbench(DmaTop(**params), "trio_dma_top", "sim.tb.dma", env, build_dir,
                                  [f"dma {json.dumps(params)} (testbench)"], sim=sim)
    return tests, failed, build_dir
