"""cocotb testbench for any stream unit of ``sim.units``: corner cases and random vectors with
random valid gaps and back-pressure, every output compared with the golden function.

Run through ``sim.runner`` (pytest and ``make sim`` both do), which sets:
TRIO_UNIT (registry name), TRIO_PARAMS (JSON constructor arguments), TRIO_VECTORS, TRIO_SEED.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from sim.bench import StreamBench
from sim.units import UNITS


@cocotb.test()
async def stream_matches_golden(dut):
    spec = UNITS[os.environ["TRIO_UNIT"]]
    unit = spec.build(json.loads(os.environ["TRIO_PARAMS"]), elaborated=False)
    bench = StreamBench(spec, unit, int(os.environ["TRIO_VECTORS"]), int(os.environ["TRIO_SEED"]))
    dut._log.info("%s %s: %d input beats (corner cases first), %d outputs expected, seed %s",
                  spec.name, unit.params, bench.total_in, bench.total, os.environ["TRIO_SEED"])

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    while not bench.done:
        await FallingEdge(dut.clk)
        valid, word, ready = bench.drive()
        dut.i__valid.value = valid
        dut.i__payload.value = word
        dut.o__ready.value = ready
        await ReadOnly()
        out_valid = int(dut.o__valid.value)
        # The payload is only defined (not X) while valid: read it on a transfer only.
        payload = dut.o__payload.value.to_unsigned() if out_valid and ready else 0
        bench.observe(int(dut.i__ready.value), out_valid, payload, ready)
    result = bench.check()
    dut._log.info("%d outputs bit-exact (from %d input beats) in %d cycles", result["vectors"],
                  result["beats"], result["cycles"])
