"""cocotb testbench of a whole network on the accelerator (``python -m sim.net``): the runtime
(``runtime.Runtime``) drives the generated top through ``runtime.sim_backend.SimBackend`` --
DRAM as cocotbext-axi's AxiRam, registers through its AxiLiteMaster -- image after image; after
each run every layer's output region in DRAM is compared with the integer model's tensor and
the logits with its logits. One JSON line per layer and image goes to TRIO_NET_OUT.

Environment (set by ``sim.net``): TRIO_NET_JOB (a pickled dict: program folder, images, golden
tensors per image, DRAM size, back-pressure, seed), TRIO_NET_OUT.
"""

import json
import os
import pickle

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer

from hw.registers import BY_NAME
from runtime import Program, RunError, Runtime
from runtime.sim_backend import SimBackend
from sim.program_model import op_cycles
from sim.replay import compare


@cocotb.test()
async def net(dut):
    with open(os.environ["TRIO_NET_JOB"], "rb") as f:
        job = pickle.load(f)
    out = open(os.environ["TRIO_NET_OUT"], "a")  # noqa: SIM115 (lines are flushed as they come)

    def emit(**row):
        out.write(json.dumps(row) + "\n")
        out.flush()

    Clock(dut.clk, 5, unit="ns").start()
    dut.rst.value = 1
    be = SimBackend(dut, job["dram_size"], job["back_pressure"], job["seed"])
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    prog = Program(job["program"])
    rt = Runtime(be, prog)
    await rt.load()
    current = [0]  # the image being run

    async def progress():  # what a host would see: the trace count, every 200k cycles
        while True:
            await Timer(200_000 * 5, "ns")
            emit(image=current[0], progress=await be.read_reg(BY_NAME["TRACE_COUNT"].offset),
                 of=len(prog.instructions) // prog.layout["instruction_bytes"])

    cocotb.start_soon(progress())
    for i, (image, (golden, logits)) in enumerate(zip(job["images"], job["golden"], strict=True)):
        current[0] = i
        try:
            res = await rt.infer(image)
        except RunError as e:
            emit(image=i, error=str(e))
            break
        cycles = op_cycles(prog.layout, [{idx: cyc for idx, _, cyc in seg} for seg in res.stamps])
        for op in prog.ops:
            got = await rt.read_tensor(op["dst"])
            emit(image=i, op=op["name"], kind=op["kind"], cycles=int(cycles[op["name"]]),
                 **compare(golden[op["dst"]], got))
        logits_ok = bool(np.array_equal(np.asarray(res.logits), np.asarray(logits)))
        emit(image=i, logits=[float(v) for v in res.logits], logits_exact=logits_ok,
             segment_cycles=res.cycles,
             counters=res.counters, stamps=res.stamps)
    out.close()
