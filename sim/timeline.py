"""DRAM and compute on one time line: the decoupled DMA of docs/architecture.md.

The DMA reads the program's weights into buffer C, a ring, in program order and as early as the
ring has room: a weight pass occupies its bytes from the start of its load to the end of the
compute that uses it, and a command (pass) starts when its weights are in and the previous
command is done. Spilled activations are read before their command and written after it; they
use DRAM bandwidth but not the ring. Bandwidth is min(AXI ports x width x clock, ``dram_gbs``),
one stream shared by reads and writes (DDR4 is one bus).

**Frames in flight (the head linears).** The linears (``Step.background``) need 4-9 MB of
weights for a few million MACs: on the array they would run at the DRAM's pace, 3 % utilization.
Instead core L-1 leaves the lockstep group after frame i's global pool and computes frame i's
linears alone, one weight chunk per beat from the DMA staging (output) buffer, whose read ports
carry the DRAM rate (64 B/cycle feeds one 8x8 engine), while cores 0..L-2 start frame i+1. The
linears' weights take the DMA whenever the foreground does not need it; while they stream (the
*window*), the foreground's commands run on L-1 cores. The host step between the linears
(LayerNorm + Hardswish on the int32 output of the first) is in neither the period nor the
latency: the runtime measures it.

Period: the foreground of frame i+1 measured from the end of frame i (two frames simulated back
to back, so prefetch crosses the frame boundary), or all DRAM bytes of a frame over the
bandwidth, whichever is larger. Latency of a lone frame: the foreground from a cold start on all
L cores, then the linears at the DRAM's pace.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Timing:
    period: float  # cycles per frame in steady state
    latency: float  # cycles of a lone frame, cold (without the host step)
    fg_period: float  # foreground, end of frame i to end of frame i+1
    window: float  # cycles the head core is away (linears streaming)
    dram_cycles: float  # all DRAM bytes of a frame / bandwidth
    bytes_per_cycle: float
    dram_bytes: int
    cycles: dict  # step index -> cycles in steady state (compute + stall; linears: DRAM time)
    stalls: dict  # step index -> cycles its compute waited for the DMA


def bytes_per_cycle(cfg, dram_gbs):
    return min(dram_gbs, cfg.axi_gbs) * 1e9 / (cfg.freq_mhz * 1e6)


def _passes(weights, compute, n):
    """(bytes, cycles) of each of a command's ``n`` weight passes."""
    per = -(-weights // n)
    return [(min(per, weights - i * per), compute / n) for i in range(n)]


def _run(steps, alt, cfg, bw, frames, bg_dma):
    """Foreground steps for ``frames`` frames; ``alt`` holds each step's compute on L-1 cores,
    used while the head core is away (until the DMA has had ``bg_dma`` idle cycles in the
    frame). Returns per frame (end, window end, {step: (start, end, stall)})."""
    cap = cfg.buffer_c_kib * 1024
    ring = deque()  # (compute end, bytes) of passes holding ring space
    used = 0
    dma = comp = 0.0
    out = []
    for _ in range(frames):
        f0 = comp
        busy = 0.0  # DMA busy time since f0 (loads issued this frame)
        window_end = None if bg_dma > 0 else f0
        rec = {}
        for j, st in enumerate(steps):
            away = window_end is None
            cyc = alt[j] if away else st.compute
            dma += st.dram_in / bw
            busy += st.dram_in / bw
            first = None
            stall = 0.0
            for wbytes, c in _passes(st.weights, cyc, st.passes):
                while ring and used + wbytes > cap:
                    end, b = ring.popleft()
                    used -= b
                    dma = max(dma, end)
                dma += wbytes / bw
                busy += wbytes / bw
                start = max(comp, dma)
                stall += start - comp
                comp = start + c
                ring.append((comp, wbytes))
                used += wbytes
                first = start if first is None else first
            dma += st.dram_out / bw
            busy += st.dram_out / bw
            if window_end is None and (comp - f0) - busy >= bg_dma:
                window_end = comp
            rec[j] = (first, comp, stall)
        out.append((comp, window_end if window_end is not None else comp, rec))
    return out


def simulate(steps, alt_steps, cfg, dram_gbs):
    """``steps``: one frame's program on L cores; ``alt_steps``: the same on L-1 cores."""
    bw = bytes_per_cycle(cfg, dram_gbs)
    fg = [i for i, s in enumerate(steps) if not s.background]
    bg = [i for i, s in enumerate(steps) if s.background]
    fg_steps = [steps[i] for i in fg]
    alt = [alt_steps[i].compute for i in fg]
    bg_bytes = sum(steps[i].weights + steps[i].dram_in + steps[i].dram_out for i in bg)
    bg_dma = bg_bytes / bw
    runs = _run(fg_steps, alt, cfg, bw, 2, bg_dma)
    (end0, _, _), (end1, wend1, rec) = runs
    fg_period = end1 - end0
    total_bytes = sum(s.weights + s.dram_in + s.dram_out for s in steps)
    dram_cycles = total_bytes / bw
    period = max(fg_period, dram_cycles)
    cold = _run(fg_steps, [s.compute for s in fg_steps], cfg, bw, 1, 0)[0][0]
    latency = cold + bg_dma
    cycles, stalls = {}, {}
    for j, i in enumerate(fg):
        s, e, st = rec[j]
        prev_end = rec[j - 1][1] if j else end0
        cycles[i] = e - prev_end
        stalls[i] = st
    for i in bg:
        s = steps[i]
        cycles[i] = max(s.compute, (s.weights + s.dram_in + s.dram_out) / bw)
        stalls[i] = cycles[i] - s.compute
    return Timing(period, latency, fg_period, wend1 - end0, dram_cycles, bw, total_bytes, cycles, stalls)
