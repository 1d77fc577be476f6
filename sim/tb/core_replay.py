"""cocotb testbench of the core replay (``python -m sim.replay``): the ops of a golden export,
their operands preloaded side by side in the buffers of ``sim.core_top`` (``$readmemh``), each run
as its commands (a fused depthwise -> pointwise pair together), its results read back through the
host port and compared with the export element by element. One JSON line per op goes to TRIO_REPLAY_OUT.

Environment (set by ``sim.replay``): TRIO_REPLAY_JOBS (pickled [(op index, relocated CorePlan,
expected result)]), TRIO_CONFIG (configuration JSON), TRIO_ADDR_BITS, TRIO_REPLAY_OUT.
"""

import json
import os
import pickle

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.utils import get_sim_time

from hw.config import AcceleratorConfig
from hw.core import ComputingCore
from sim.core_bench import run_plan
from sim.replay import compare

PERIOD_NS = 10


class CocotbDriver:
    def __init__(self, dut):
        self.dut = dut

    def set(self, name, value):
        getattr(self.dut, name).value = value

    def get(self, name):
        return int(getattr(self.dut, name).value)

    async def cycle(self):
        await FallingEdge(self.dut.clk)

    async def wait_idle(self):
        """Clock edges until ``busy`` reads low at a falling edge (without a Python step per cycle)."""
        if not int(self.dut.busy.value):
            return 0
        t0 = get_sim_time("ns")
        await FallingEdge(self.dut.busy)
        await FallingEdge(self.dut.clk)
        return round((get_sim_time("ns") - t0) / PERIOD_NS)


@cocotb.test()
async def replay(dut):
    cfg = AcceleratorConfig.from_json(os.environ["TRIO_CONFIG"])
    addr_bits = int(os.environ["TRIO_ADDR_BITS"])
    with open(os.environ["TRIO_REPLAY_JOBS"], "rb") as f:
        jobs = pickle.load(f)
    core = ComputingCore(cfg, addr_bits)
    core._MustUse__silence = True  # read for its layouts and overheads only
    shapes = core.buffer_layouts()

    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    for name in ("cmd__valid", "cmd__payload", "host_sel", "host_addr", "host_wdata", "host_we", "host_rsel",
                 "host_raddr"):
        getattr(dut, name).value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    drv = CocotbDriver(dut)
    with open(os.environ["TRIO_REPLAY_OUT"], "w") as out:
        for index, plan, expected in jobs:
            got, cycles = await run_plan(drv, shapes, addr_bits, plan)
            if isinstance(index, tuple):  # a fused pair: a row per op, the cycles on the second
                rows = [dict(index=index[0], rtl=None, fused_with=index[1], **compare(expected[0], got[0])),
                        dict(index=index[1], rtl=cycles, pair=True, **compare(expected[1], got[1]))]
            else:
                rows = [dict(index=index, rtl=cycles, **compare(expected, got))]
            for row in rows:
                out.write(json.dumps(row) + "\n")
            out.flush()
