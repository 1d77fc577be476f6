"""The performance model of a program on the accelerator top (``hw.accelerator``): the
controller's dispatcher and its three queues (``hw.controller``), stepped cycle by cycle -- and
skipping the cycles in which nothing but a running unit's count changes -- with the units as
timed boxes:

- the DMA readers, one per AXI port (``AcceleratorConfig.axi_ports``): a command accepted in
  cycle ``a`` (an instruction fetch, on engine 0, or a LOAD of ``n`` beats) is done, and the
  reader free, in cycle ``a + dram_latency + n``;
- the DMA writers, one per port: a STORE of ``n`` beats accepted in cycle ``a`` is done in cycle
  ``a + 2 * dram_latency + n`` (the data, then the write response);
- the cores: a command accepted in cycle ``a`` leaves them idle in cycle ``a + core_cycles``
  (``sim.dataflow.core_cycles``, recorded by the compiler per layer).

Each port has its own AXI RAM in the testbench, so the engines do not slow one another; on a
board they share the DDR (``sim.perf``'s ``--dram-gbs``).

The controller itself is modelled state by state: FETCH (the fetch takes engine 0's reader
before a LOAD), FETCH_WAIT, DECODE (the push into a full queue waits), BARRIER (SYNC, END: every
queue empty and idle); COMPUTE's IDLE (the head starts once its tokens and the cores are there),
RUN, RETIRE; LOAD's and STORE's engines FREE (the head starts once its tokens are there and the
engine of its port is free), RUN, DONE, and the transfers in flight, which retire in program
order; one trace entry per cycle (COMPUTE, LOAD, STORE in that order; signals then count from
the next cycle); the queues' FIFOs (``SyncFIFOBuffered``: an instruction pushed in cycle ``d``
is at the head in ``d + 2``).

Times count the busy cycles from START, as the registers' counters do: an instruction's time is
its trace stamp (``TRACE_CYCLE``), a segment's the CYCLES counter. A layer's cycles are the
growth of the latest stamp over its instructions (``op_cycles``), the same for the RTL's trace.

The DRAM latency is a parameter (``dram_latency``): the AXI RAM model of the testbench answers
after ``SIM_DRAM_LATENCY`` cycles; a board's DDR takes more.
"""

from collections import deque

from hw.controller import QUEUE_DEPTH, TRACE_ORDER
from hw.isa import INSTRUCTION_BITS, Opcode, Queue, Token, decode

__all__ = ["program_cycles", "op_cycles", "SIM_DRAM_LATENCY"]

SIM_DRAM_LATENCY = 3


class _Fifo:
    """``amaranth.lib.fifo.SyncFIFOBuffered``: an inner FIFO of depth - 1 and the head register."""

    def __init__(self, depth):
        self.inner, self.head, self.depth = deque(), None, depth

    def w_rdy(self):
        return len(self.inner) < self.depth - 1

    def step(self, write, read):
        """One clock edge: ``write`` (an item or None) pushed, the head popped if ``read``."""
        moved = False
        if self.inner and (self.head is None or read):
            self.head, moved = self.inner.popleft(), True
        elif read:
            self.head = None
        if write is not None:
            self.inner.append(write)
        return moved or read or write is not None


def _segment(instrs, compute, cfg, latency, depth):
    """Trace stamps {index in the segment: cycle} and the CYCLES count of one segment."""
    beats = INSTRUCTION_BITS // cfg.axi_bits
    ports = cfg.axi_ports
    fifos = {q: _Fifo(depth) for q in Queue}
    counts = {t: 0 for t in Token}
    ex = {Queue.COMPUTE: dict(state="IDLE", idx=None)}
    # LOAD and STORE: per DMA engine FREE / RUN / DONE, and the cycle its reader (LOAD) or writer
    # (STORE) is free (a running transfer's end); the transfers in flight in program order
    # (engine, index)
    eng = {q: ["FREE"] * ports for q in (Queue.LOAD, Queue.STORE)}
    order = {q: deque() for q in eng}
    unit_free = {q: [0] * ports for q in eng}
    core_free = 0
    disp, pc, fetch_end = "FETCH", 0, 0
    stamps = {}
    t = 0
    n = len(instrs)
    while True:
        changed = False
        in_fetch = disp == "FETCH" and pc < n
        write = None
        pops = {q: False for q in Queue}
        give = {t_: 0 for t_ in Token}
        take = {t_: 0 for t_ in Token}
        nxt, eng_nxt, retired = {}, [], []

        def signal(q, idx, give=give, t=t):
            for tok in Token:
                if tok.src == q and instrs[idx][1] & tok:
                    give[tok] = 1
            stamps[idx] = t

        # retiring: one instruction per cycle, in TRACE_ORDER
        granted = False
        for q in TRACE_ORDER:
            if q == Queue.COMPUTE:
                e = ex[q]
                if e["state"] == "RETIRE" and not granted:
                    granted = True
                    signal(q, e["idx"])
                    nxt[q] = "IDLE"
                elif e["state"] == "RUN" and t >= core_free:
                    nxt[q] = "RETIRE"
            elif order[q] and eng[q][order[q][0][0]] == "DONE" and not granted:
                granted = True
                p, idx = order[q][0]
                signal(q, idx)
                eng_nxt.append((q, p, "FREE"))
                retired.append(q)
        for q, engines in eng.items():
            for p, state in enumerate(engines):
                if state == "RUN" and t >= unit_free[q][p]:
                    eng_nxt.append((q, p, "DONE"))
        waiting = {}
        for q in Queue:
            head = fifos[q].head
            ready = False
            if head is not None and (q != Queue.COMPUTE or ex[q]["state"] == "IDLE"):
                op, sig, wait, size, port = instrs[head]
                ready = all(counts[tok] for tok in Token if tok.dst == q and wait & tok)
                if q == Queue.COMPUTE:
                    unit = t >= core_free
                else:
                    unit = (eng[q][port] == "FREE" and t >= unit_free[q][port]
                            and not (q == Queue.LOAD and port == 0 and in_fetch))
                if ready and unit:
                    pops[q] = True
                    for tok in Token:
                        if tok.dst == q and wait & tok:
                            take[tok] = 1
                    if q == Queue.COMPUTE:
                        ex[q]["idx"] = head
                        core_free = t + compute[head]
                        nxt[q] = "RUN" if sig else "RETIRE"
                    else:
                        unit_free[q][port] = t + (latency if q == Queue.LOAD else 2 * latency) + size
                        eng_nxt.append((q, port, "RUN"))
                        order[q].append((port, head))
            if q == Queue.COMPUTE:
                waiting[q] = ex[q]["state"] == "IDLE" and not ready
            else:
                waiting[q] = not ready and not order[q] and all(state == "FREE" for state in eng[q])
        quiet = (t >= core_free and all(t >= x for f in unit_free.values() for x in f)
                 and all(waiting.values()))
        # the dispatcher
        if disp == "FETCH":
            if pc == n:
                raise ValueError("the segment has no END")
            if t >= unit_free[Queue.LOAD][0]:
                unit_free[Queue.LOAD][0] = fetch_end = t + latency + beats
                disp, changed = "FETCH_WAIT", True
        elif disp == "FETCH_WAIT":
            if t >= fetch_end:
                disp, changed = "DECODE", True
        elif disp == "DECODE":
            q = Queue.of(instrs[pc][0])
            if q is None:
                disp, changed = "BARRIER", True
            elif fifos[q].w_rdy():
                write, pc, disp, changed = (q, pc), pc + 1, "FETCH", True
        elif disp == "BARRIER":
            if quiet and all(f.head is None and not f.inner for f in fifos.values()):
                stamps[pc] = t
                if instrs[pc][0] == Opcode.END:
                    return stamps, t + 1
                pc, disp, changed = pc + 1, "FETCH", True
        # the clock edge
        for q in Queue:
            moved = fifos[q].step(write[1] if write and write[0] == q else None, pops[q])
            changed = changed or moved
        for tok in Token:
            counts[tok] += give[tok] - take[tok]
        for q, state in nxt.items():
            ex[q]["state"] = state
        for q in retired:
            order[q].popleft()
        for q, p, state in eng_nxt:
            eng[q][p] = state
        changed = changed or bool(nxt) or bool(eng_nxt)
        if changed:
            t += 1
        else:  # nothing moves until a running unit finishes
            later = [x for f in unit_free.values() for x in f if x > t]
            later += [x for x in (core_free, fetch_end) if x > t]
            if not later:
                raise ValueError(f"the program deadlocks at instruction {pc} of the segment")
            t = min(later)


def program_cycles(prog, cfg, dram_latency=SIM_DRAM_LATENCY, queue_depth=QUEUE_DEPTH):
    """{"ops": {layer name: cycles}, "segments": [cycles], "total": cycles, "stamps": [{index:
    cycle}] per segment} of ``prog`` (a ``gen.compile.Program`` or ``runtime.Program``)."""
    lay = prog.layout
    size = lay["instruction_bytes"]
    raw = b"".join(prog.instructions) if isinstance(prog.instructions, list) else prog.instructions
    compute = {}
    for op in lay["ops"]:
        cmds = iter(op["core_cycles"])
        for i in range(op["first"], op["last"] + 1):
            if raw[i * size] == Opcode.COMPUTE:
                compute[i] = next(cmds)
    seg_cycles, seg_stamps = [], []
    for start, length in lay["segments"]:
        instrs = []
        for i in range(start, start + length):
            op, h, body = decode(raw[i * size:(i + 1) * size])
            n = body["row_beats"] * body["rows"] if op in (Opcode.LOAD, Opcode.STORE) else 0
            instrs.append((op, h["signal"], h["wait"], n, body.get("port", 0)))
        mine = {i - start: c for i, c in compute.items() if start <= i < start + length}
        stamps, cycles = _segment(instrs, mine, cfg, dram_latency, queue_depth)
        seg_cycles.append(cycles)
        seg_stamps.append(stamps)
    return dict(ops=op_cycles(lay, seg_stamps), segments=seg_cycles, total=sum(seg_cycles), stamps=seg_stamps)


def op_cycles(layout, stamps):
    """{layer name: cycles} from per-segment trace stamps ({index in the segment: cycle}): the
    latest stamp over a layer's instructions, less the latest over the instructions before it in
    its segment (so the layers of a segment add up to its last stamp)."""
    out, latest = {}, {}
    for op in layout["ops"]:
        k = op["segment"]
        start = layout["segments"][k][0]
        seg = stamps[k]
        end = max([seg.get(i - start, -1) for i in range(op["first"], op["last"] + 1)] + [latest.get(k, 0)])
        out[op["name"]] = end - latest.get(k, 0)
        latest[k] = end
    return out
