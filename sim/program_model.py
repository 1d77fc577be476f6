"""The performance model of a program on the accelerator top (``hw.accelerator``, this version:
one core, instructions in order): the cycles of every instruction from its kind and size, the
core commands' cycles from ``sim.dataflow.core_cycles`` (recorded by the compiler per layer).

Per instruction, from the cycle the previous one retired:
- fetch: ``FETCH_ISSUE`` + the DRAM's read latency + the instruction's beats;
- LOAD / STORE: wait until the core is idle, then ``DMA_ISSUE`` + latency + beats (+ the write
  response for a STORE);
- COMPUTE: the core takes the command when it is idle (``HANDOVER``); it runs for its
  ``core_cycles`` while the next instructions are fetched;
- SYNC: wait until the core is idle; END: the same, and the run ends in that cycle.

Times count the busy cycles from START, as the registers' counters do: an instruction's time is
its trace stamp (``TRACE_CYCLE``), a segment's the CYCLES counter.

The DRAM latency is a parameter (``dram_latency``): the AXI RAM model of the testbench answers
after ``SIM_DRAM_LATENCY`` cycles; a board's DDR takes more, and then this model says what
the in-order controller loses to it.
"""

from hw.isa import INSTRUCTION_BITS, Opcode, decode

__all__ = ["program_cycles", "SIM_DRAM_LATENCY"]

FETCH_ISSUE = 2  # FETCH state -> burst on ar
DMA_ISSUE = 1
HANDOVER = 1
SIM_DRAM_LATENCY = 3


def program_cycles(prog, cfg, dram_latency=SIM_DRAM_LATENCY):
    """{"ops": {layer name: cycles}, "segments": [cycles], "total": cycles} of ``prog`` (a
    ``gen.compile.Program`` or ``runtime.Program``)."""
    lay = prog.layout
    size = lay["instruction_bytes"]
    raw = b"".join(prog.instructions) if isinstance(prog.instructions, list) else prog.instructions
    fetch = FETCH_ISSUE + dram_latency + INSTRUCTION_BITS // cfg.axi_bits
    compute = {}
    for op in lay["ops"]:
        cmds = iter(op["core_cycles"])
        for i in range(op["first"], op["last"] + 1):
            if raw[i * size] == Opcode.COMPUTE:
                compute[i] = next(cmds)
    ends = {}
    seg_cycles = []
    for start, length in lay["segments"]:
        t, core_free = -1, 0  # trace stamps count the busy cycles before the retiring one
        for i in range(start, start + length):
            op, _, body = decode(raw[i * size:(i + 1) * size])
            t += fetch
            if op in (Opcode.LOAD, Opcode.STORE):
                beats = body["row_beats"] * body["rows"]
                response = dram_latency if op == Opcode.STORE else 0
                t = max(t, core_free) + DMA_ISSUE + dram_latency + beats + response
            elif op == Opcode.COMPUTE:
                accept = max(t, core_free)
                t = accept + HANDOVER
                core_free = accept + compute[i]
            elif op == Opcode.END:  # retires in its decode cycle, once the core is idle
                t = max(t, core_free)
            else:  # SYNC
                t = max(t, core_free) + 1
            ends[i] = t
        seg_cycles.append(t + 1)
    out = {}
    for op in lay["ops"]:
        start = lay["segments"][op["segment"]][0]
        before = ends[op["first"] - 1] if op["first"] > start else 0
        out[op["name"]] = ends[op["last"]] - before
    return dict(ops=out, segments=seg_cycles, total=sum(seg_cycles), instructions=ends)
