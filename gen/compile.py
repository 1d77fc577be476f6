"""Compile a quantized network to a program of the accelerator (``hw.isa``).

    python -m gen.compile --quantized q.pt --config tiny --out build/program

The program folder holds ``program.bin`` (the instructions), ``weights.bin`` (the weights
region: weight chunks and requantization parameters in the buffers' word formats, each word on
whole DRAM beats), ``host.npz`` (the parameters of the host steps) and ``layout.json`` (the
configuration and its hash, the segments, where every layer's output lives in the activations
region and how to read it, the host steps). ``runtime.Program`` reads it.

This version runs layer by layer: per op, LOADs of its inputs (from the activations region; a
first input the op before it has just written stays where it is in buffer B and is not
loaded), weights and parameters into the buffers at the places its core plan
(``sim.core_ops.plan``) wants, moved after the last op's in every buffer, its COMPUTE commands,
and a STORE of its output to the activations region, where the host (and the testbench) can
read every layer. Every instruction carries the dependency tokens of its buffer and DRAM
accesses (``gen.tokens``), so the controller's queues overlap the DMA with the core. The
head's host step (LayerNorm + Hardswish between the linears) ends a segment: the runtime runs
it and starts the next segment.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gen.tokens import Access, TokenError, assign_tokens
from hw.accelerator import Accelerator, silenced
from hw.command import CommandError, Op, cdiv
from hw.config import ConfigError
from hw.controller import QUEUE_DEPTH
from hw.isa import INSTRUCTION_BITS, Buffer, Opcode, dma_port, encode
from hw.registers import REGIONS, VERSION
from sim.core_ops import (
    UnsupportedOp,
    by_rows,
    group_rows,
    head_groups,
    input_words,
    pack_words,
    pixel_parallel,
    plan,
    split,
    split_heads,
    tensor_words,
)
from sim.dataflow import core_cycles, host_im2col

__all__ = ["compile_network", "CompileError", "Program", "FORMAT", "main"]

FORMAT = 1  # layout.json format
MAX_ROW_WORDS = 4096  # words per DMA row (LOAD/STORE row_beats is 16 bits)


class CompileError(Exception):
    """The network cannot be compiled for the configuration; the message says why."""


@dataclass
class Program:
    instructions: list = field(default_factory=list)  # bytes each
    weights: bytearray = field(default_factory=bytearray)
    layout: dict = field(default_factory=dict)
    host: dict = field(default_factory=dict)  # arrays of host.npz
    accesses: list = field(default_factory=list)  # per instruction, its gen.tokens.Access list (not written)

    def write(self, out):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "program.bin").write_bytes(b"".join(self.instructions))
        (out / "weights.bin").write_bytes(bytes(self.weights))
        np.savez(out / "host.npz", **self.host)
        (out / "layout.json").write_text(json.dumps(self.layout, indent=1))


def _trace_ops(frozen, image):
    """[(op dict as the export writes it, [input arrays], output)] of one run of the integer model;
    the frozen op's own fields (the host steps' parameters) are kept beside the exported ones."""
    from quant.integer import IntegerModel, _params
    from sim.replay import op_dict

    seen = []

    def trace(r, ins, out, extra):
        arrays = {"y": np.asarray(out), **{k: np.asarray(v) for k, v in ins.items()},
                  **{k: np.asarray(v) for k, v in extra.items() if v is not None}, **_params(r)}
        d = op_dict(dict(kind=r["kind"], act=r.get("act")), arrays)
        seen.append(({**r, **d}, list(ins.values()), out))

    IntegerModel(frozen).run(image, trace)
    return seen


def _head_rounds(r, ins, whole, cfg, aux_depth):
    """(cores, heads per core, rounds, plan) of an attention whose sum k and vk chunks go to the
    cores' aux buffers of ``aux_depth`` words: cut into groups of as many heads as fit one aux
    buffer (at most a share of ``cfg.cores``: ``head_groups``), which run on the cores at once, in
    rounds when there are more groups than cores (``split_heads``: every core runs the same
    commands on its own heads); (1, None, 1, ``whole``) for branches of unequal heads, which run
    whole on one core."""
    d = int(np.asarray(r["dim"]))
    counts = {np.asarray(x).shape[0] // (3 * d) for x in ins}
    if len(counts) == 1:
        nh, = counts
        for heads in range(head_groups(r, ins, cfg.cores)[1] or nh, 0, -1):
            p = split_heads(r, ins, heads, 0, cfg)
            if len(p.writes["w"][1]) <= aux_depth:
                groups = -(-nh // heads)
                cores = min(groups, cfg.cores)
                return cores, heads, -(-groups // cores), p
        what = f"{len(split_heads(r, ins, 1, 0, cfg).writes['w'][1])} for one head"
    else:
        if len(whole.writes["w"][1]) <= aux_depth:
            return 1, None, 1, whole
        what = f"{len(whole.writes['w'][1])} for its heads"
    raise CommandError(f"its sum k and vk chunks ({what}) exceed the aux buffer's {aux_depth} words; "
                       f"use a configuration with a larger aux_kib")


def _check_direction(op, mem):
    """A transfer the buffer takes (``hw.isa.DIRECTIONS``): the compiler never emits another."""
    if op not in Buffer.of(mem).directions:
        raise AssertionError(f"{Opcode(op).name} on buffer {mem.upper()}, which takes "
                             f"{' and '.join(o.name for o in Buffer.of(mem).directions)} only")


class _Emitter:
    def __init__(self, acc):
        self.acc = acc
        self.cfg = acc.config
        self.beat_bytes = self.cfg.axi_bits // 8
        self.beats = acc.word_beats
        self.shapes = acc.shapes
        self.instructions = []  # (opcode, fields, [Access]) until ``encoded``
        self.weights = bytearray()
        self.activation_bytes = 0
        self.zero_offset, self.zero_words = 0, 0

    def emit(self, op, accesses=(), **fields):
        self.instructions.append((op, fields, list(accesses)))

    def encoded(self, segments):
        """The instructions as bytes, with the dependency tokens of their buffer accesses."""
        ops = [op for op, _, _ in self.instructions]
        try:
            waits, signals = assign_tokens(ops, [a for _, _, a in self.instructions], segments, QUEUE_DEPTH)
        except TokenError as e:
            raise CompileError(str(e)) from None
        return [encode(op, self.acc.addr_bits, index=i, wait=waits[i], signal=signals[i], **fields)
                for i, (op, fields, _) in enumerate(self.instructions)]

    def port(self, mem, core):
        """The DMA engine that moves ``mem`` (of ``core`` for B): ``hw.isa.dma_port``."""
        return dma_port(Buffer.of(mem), core, self.acc.config.axi_ports)

    def ports(self, op, mem, core, lo, hi):
        """The token accesses of a transfer's B ports: of each half of core ``core``'s B that
        words [lo, hi) lie in, port A for a LOAD (its writes), port B for a STORE (its reads)
        (``hw.core_slice.B_SIDES``) -- so the DMA never meets a COMPUTE on a port
        (``_port_accesses``) and moves words of a half's port for one transfer at a time."""
        if mem != "b":
            return []
        half = self.acc.memory_depths["b"] // 2
        side = "A" if op == Opcode.LOAD else "B"
        return [Access(f"b{core}.{side}{h}", 0, 1, True) for h in range(2)
                if lo < (h + 1) * half and h * half < hi]

    def word_bytes(self, mem):
        return self.beats[mem] * self.beat_bytes

    def transfer(self, op, mem, region, offset, buf_addr, words, core=0):
        """LOAD or STORE of ``words`` consecutive words (of core ``core``'s pixel group, for
        buffer B), in rows of at most MAX_ROW_WORDS."""
        _check_direction(op, mem)
        done = 0
        while done < words:
            n = min(MAX_ROW_WORDS, words - done)
            at = offset + done * self.word_bytes(mem)
            load = op == Opcode.LOAD  # buffer words written, DRAM bytes read (a STORE: the reverse)
            access = [Access(_mem(mem, core), buf_addr + done, buf_addr + done + n, load),
                      Access(f"dram.{region}", at, at + n * self.word_bytes(mem), not load)]
            access += self.ports(op, mem, core, buf_addr + done, buf_addr + done + n)
            self.emit(op, access, region=REGIONS.index(region), buffer=Buffer.of(mem),
                      port=self.port(mem, core), core=core, offset=offset + done * self.word_bytes(mem),
                      row_beats=n * self.beats[mem], rows=1, stride=0, buf_addr=buf_addr + done, buf_stride=0)
            done += n

    def transfer_2d(self, op, mem, region, offset, buf_addr, row_words, rows, stride_words, buf_stride,
                    core=0):
        """LOAD or STORE of ``rows`` rows of ``row_words`` words, ``stride_words`` apart in DRAM and
        ``buf_stride`` apart in the buffer (of core ``core``'s pixel group, for B)."""
        _check_direction(op, mem)
        wb = self.word_bytes(mem)
        if row_words > MAX_ROW_WORDS or rows >= 1 << 16:
            raise CompileError(f"a 2-D transfer of {rows} rows of {row_words} words does not fit the DMA's "
                               f"counts")
        load = op == Opcode.LOAD  # the bounding ranges: conservative for the tokens
        dram_end = offset + ((rows - 1) * stride_words + row_words) * wb
        end = buf_addr + (rows - 1) * buf_stride + row_words
        access = [Access(_mem(mem, core), buf_addr, end, load),
                  Access(f"dram.{region}", offset, dram_end, not load)]
        access += self.ports(op, mem, core, buf_addr, end)
        self.emit(op, access, region=REGIONS.index(region), buffer=Buffer.of(mem), port=self.port(mem, core),
                  core=core,
                  offset=offset, row_beats=row_words * self.beats[mem], rows=rows, stride=stride_words * wb,
                  buf_addr=buf_addr, buf_stride=buf_stride)

    def weights_words(self, mem, values):
        """Append packed words to the weights region; returns the byte offset."""
        offset = len(self.weights)
        wb = self.word_bytes(mem)
        for v in pack_words(self.shapes[mem], values):
            self.weights += v.to_bytes(wb, "little")
        return offset

    def zeros(self, words):
        """The offset of at least ``words`` zero words of buffer B in the weights region (one
        block, grown when a larger one is asked for)."""
        if self.zero_words < words:
            self.zero_words = max(words, 2 * self.zero_words)
            self.zero_offset = self.weights_words("b", [np.zeros(self.cfg.t, np.int64)] * self.zero_words)
        return self.zero_offset

    def activation(self, words, mem):
        offset = self.activation_bytes
        self.activation_bytes += -(-words * self.word_bytes(mem) // 4096) * 4096  # 4 KiB apart
        return offset


def _mem(mem, core):
    """The name ``gen.tokens`` knows a buffer by: buffer B per core (its pixel group)."""
    return f"b{core}" if mem == "b" else mem


def _passes(p, depth, name):
    """[(commands, {memory: (base, words to load there)})]: the plan as it is, or -- a reduction
    whose weight chunks or parameters do not fit buffer C -- in weight passes: output tiles in
    groups whose chunks and parameters fit half of W and Q (whole groups of a grouped conv), each
    loaded into the half the pass before did not use and then run as the same command over its
    tiles, writing its words of every output pixel."""
    loads = {m: p.writes[m] for m in ("w", "q") if m in p.writes}
    if p.kind == "attn":  # its W chunks are written by its own ATTN_VK commands
        loads.pop("w", None)
    c = p.command
    if all(base + len(items) <= depth[m] for m, (base, items) in loads.items()) or c.op != Op.REDUCE:
        return [(p.all_commands(), loads)]
    assert all(base == 0 for base, _ in loads.values()), "weight passes start from a plan at 0"
    loads = {m: items for m, (_, items) in loads.items()}
    unit = c.group_tiles if c.group_cw else 1  # a grouped conv's pass takes whole groups
    halves = 2  # passes alternate between the halves of W and Q: the next loads while one runs
    per = min(depth["w"] // 2 // c.chunks, depth["q"] // 2) // unit * unit
    if per < 1:
        halves, per = 1, min(depth["w"] // c.chunks, depth["q"]) // unit * unit
    if per < 1:
        raise CompileError(f"op {name}: one output tile's {c.chunks} weight chunks do not fit buffer W "
                           f"({depth['w']} words)")
    out = []
    for k, t0 in enumerate(range(0, c.tiles, per)):
        n = min(per, c.tiles - t0)
        groups = t0 // unit if c.group_cw else 0
        wb, qb = (k % halves) * (depth["w"] // 2), (k % halves) * (depth["q"] // 2)
        cmd = replace(c, tiles=n, w_base=wb, q_base=qb, out_base=c.out_base + t0,
                      in_base=c.in_base + groups * c.group_cw)
        out.append(([cmd], {"w": (wb, loads["w"][t0 * c.chunks:(t0 + n) * c.chunks]),
                            "q": (qb, loads["q"][t0:t0 + n])}))
    return out


def _b_regions(p):
    """(inputs, output) of plan ``p`` in buffer B as words [lo, hi), None where it has none."""
    base, items = p.writes.get("b", (0, []))
    ins = (base, base + len(items)) if len(items) else None
    out = (p.out_base, p.out_base + p.out_words) if p.out_mem == "b" and p.out_words else None
    return ins, out


def _half_loads(p, core, half):
    """Per half of B (lower, upper), the accesses a cycle of each side of its ports
    (``hw.core_slice.B_SIDES``: port A takes engine 0's read, port B the write and engine 1's
    read) that plan ``p``'s commands make at most, as ``p`` is placed: a command's reads in its
    inputs' words (``ComputingCore.b_accesses``: the first on A, a second on B), its write in its
    output's."""
    ins, out = _b_regions(p)
    loads = [[0, 0], [0, 0]]
    for c in p.all_commands():
        reads, writes = core.b_accesses(c)
        for h in range(2):
            lo, hi = h * half, (h + 1) * half
            touch = [bool(r and r[0] < hi and lo < r[1]) for r in (ins, out)]
            side = [int(touch[0] and reads >= 1),
                    int(touch[0] and reads >= 2) + int(touch[1] and writes >= 1)]
            loads[h] = [max(x, y) for x, y in zip(loads[h], side, strict=True)]
    return loads


def _place_b(p, off, last, depth, core):
    """(``relocate`` offsets for buffer B, the first input's kept address or None) of plan ``p``:
    its inputs (from 0) and output where no side of a half of B takes more than its one port in
    a cycle (``_half_loads``), the first input left at ``off`` if it can be (the op before wrote
    it there). Of the places that allow, the one that waits least for the op before (``last``:
    its inputs' and output's regions, ``_b_regions``, and its ``_half_loads``): first, for its
    STORE -- writing over its output, or taking port B of a half the STORE reads; then, for its
    COMPUTE -- a LOAD over its inputs or into a half whose port A it takes; then the lowest
    addresses."""
    half = depth // 2
    ins, out = _b_regions(p)
    n_in = ins[1] if ins else 0  # an unplaced plan's inputs start at 0
    n_out = out[1] - out[0] if out else 0
    last_in, last_out, last_loads = last
    # where a region may start: a half's bottom or the top of the op before's regions; where
    # none of those allow, also right after the inputs (the output) or so that it ends at a
    # half's top
    starts = {0, half} | {r[1] for r in (last_in, last_out) if r and r[1] < depth}

    def over(a, b):
        return bool(a and b and a[0] < b[1] and b[0] < a[1])

    halves = [(0, half), (half, depth)]
    best = None
    keeps = (True, False) if off is not None else (False,)
    for keep, more in [(keep, more) for more in (False, True) for keep in keeps]:
        in_starts = sorted(starts | ({x - n_in for x in (half, depth) if x >= n_in} if more else set()))
        for in_at in ([off] if keep else in_starts):
            out_starts = sorted(starts | ({in_at + n_in} | {x - n_out for x in (half, depth) if x >= n_out}
                                          if more else set()))
            for out_at in (out_starts if out else [0]):
                mine_in = (in_at, in_at + n_in) if n_in else None
                mine_out = (out_at, out_at + n_out) if out else None
                if max(in_at + n_in, out_at + n_out) > depth or over(mine_in, mine_out):
                    continue
                shift = {"b": in_at} | ({"out": out_at - p.out_base} if out else {})
                loads = _half_loads(p.relocate(shift), core, half)
                if max(max(x) for x in loads) > 1:
                    continue
                loaded = None if keep else mine_in  # a kept input is the op before's output
                port_b = [halves[h] for h in range(2) if loads[h][1]]
                store = any(over(x, last_out) for x in [mine_out, loaded] + port_b)
                busy_a = [halves[h] for h in range(2) if last_loads[h][0]]
                compute = any(over(loaded, x) for x in [last_in] + busy_a)
                score = (store, compute, in_at, out_at)
                if best is None or score < best[0]:
                    best = (score, shift)
        if best:
            return best[1], (off if keep else None)
    raise CompileError(f"its inputs ({n_in} words) and output ({n_out} words) do not fit buffer B's "
                       f"{depth} words with each port of a half taken at most once a cycle")


def _port_accesses(loads, cores):
    """The token accesses of a COMPUTE's B ports: the ports (``b<core>.A<half>``, ``.B<half>``) its
    commands take (``loads``: ``_half_loads``) on each of its ``cores`` -- a LOAD waits for port A
    of the halves it writes, a STORE for port B of those it reads (``_Emitter.ports``)."""
    return [Access(f"b{j}.{'AB'[side]}{h}", 0, 1, True) for h, sides in enumerate(loads)
            for side in range(2) if sides[side] for j in range(cores)]


def _load_rows(em, whole, t, b_base, per, n_cores, first=0):
    """LOADs of a depthwise or generic conv's input rows cut over the cores (``sim.core_ops.split``): each
    core's own rows and halo rows from the tensor, zero rows (from the weights region's zero
    block) above and below it; core j takes row group ``first + j``."""
    c = whole.command
    rows = per // c.out_w
    above, below = group_rows(whole)
    row = c.in_w * c.in_cw
    wb = em.word_bytes("b")
    for j in range(n_cores):
        g = first + j
        y0 = g * rows * c.stride - above
        y1 = (g + 1) * rows * c.stride + below
        lo, hi = max(0, y0), min(c.in_h, y1)
        em.transfer(Opcode.LOAD, "b", "activations", t["offset"] + lo * row * wb, b_base + (lo - y0) * row,
                    (hi - lo) * row, core=j)
        for z0, z1 in ((y0, lo), (max(hi, y0), y1)):
            if z1 > z0:
                em.transfer(Opcode.LOAD, "b", "weights", em.zeros((z1 - z0) * row), b_base + (z0 - y0) * row,
                            (z1 - z0) * row, core=j)


def _row_rounds(whole, p, per, cfg, core, half):
    """(output pixels per row group, rounds, plan) of an op cut by rows (``by_rows``) over the
    cores it has a group of ``per`` pixels for: ``p`` in one round; or -- where a core's input
    rows would not fit half of buffer B and the command reads two words a cycle (the window fill
    on both ports of its input's half: ``_place_b``) -- in row groups small enough, as many at
    once as there are cores, in rounds."""
    c = whole.command
    out_h = c.pixels // c.out_w
    cores = n = cdiv(out_h, per // c.out_w)
    while len(p.writes["b"][1]) > half and core.b_accesses(p.command)[0] >= 2 and per > c.out_w:
        n += 1
        per = cdiv(out_h, n) * c.out_w
        p = split(whole, per, cfg)
    return per, cdiv(cdiv(out_h, per // c.out_w), cores), p


def _accesses(p, cores):
    """The buffer words an op's commands read (its operands) and write (its results; an
    attention's vk chunks in W) on each of its ``cores``."""
    out = [Access(_mem(mem, j), base, base + len(items), p.kind == "attn" and mem == "w")
           for mem, (base, items) in p.writes.items() for j in range(cores if mem == "b" else 1)]
    return out + [Access(_mem(mem, j), base, base + words, True) for mem, base, words, _ in p.outputs()
                  for j in range(cores if mem == "b" else 1)]


def _groups(p, cores, resident=None):
    """(cores, output pixels per core) of an op: a ``pixel_parallel`` plan cut into equal groups
    of consecutive pixels (a depthwise conv: of whole rows) over as many cores as have a pixel,
    else (1, None): core 0 alone. A pointwise op or an add keeps the groups its first input was
    left in (``resident``) when they cover its pixels, so that the input stays where it is."""
    if cores == 1 or not pixel_parallel(p):
        return 1, None
    c = p.command
    if by_rows(p):
        out_h = c.pixels // c.out_w
        rows = -(-out_h // cores)
        return -(-out_h // rows), rows * c.out_w
    n, per = resident or (1, None)
    if per and (n - 1) * per < c.pixels <= n * per:
        return n, per
    per = -(-c.pixels // cores)
    return -(-c.pixels // per), per


def _input_packing(r, x, cfg):
    """How the host lays out the network's input for its first op (``input_words``)."""
    if r["kind"] == "conv":
        k = r["w"].shape[2]
        if k > 1 and host_im2col(x.shape[0], k, r["groups"], cfg):
            return [int(k), int(r["stride"]), int(r["pad"])]
    return None


def compile_network(frozen, image_shape, config, seed=0, progress=None, model=None):
    """The ``Program`` of the frozen integer model ``frozen`` (``quant.integer.freeze``) for images
    of ``image_shape`` (C, H, W) on ``config``; ``model``: its name (``quant.model``), recorded in the
    layout for the runtime's image preprocessing. Raises CompileError."""
    try:
        acc = silenced(Accelerator(config))
    except ConfigError as e:
        raise CompileError(str(e)) from None
    cfg, lanes = acc.config, config.s
    image = np.random.default_rng(seed).normal(size=image_shape)  # any image: layouts, not values
    ops = _trace_ops(frozen, image)
    em = _Emitter(acc)
    tensors, segments, host_steps, op_rows, host = {}, [], [], [], {}
    resident = {}  # the tensor the last op left in buffer B, and its word address
    cursor = {mem: 0 for mem in ("w", "q", "o")}  # the end of the last op's words in each buffer
    last_b = (None, None, [[0, 0], [0, 0]])  # the last op's regions of B (inputs, output), port loads
    seg_start = 0
    depth = acc.memory_depths
    half = depth["b"] // 2  # a half of buffer B: two true dual port RAMs a core (``CoreSlice``)
    for n_op, (r, ins, out) in enumerate(ops):
        if progress:
            progress(n_op + 1, len(ops), r["name"])
        kind = r["kind"]
        if kind == "input":
            host["input_scale"] = np.asarray(r["scale"], np.float64)
            continue
        fixed = set()  # memories the plan is placed in already
        try:
            whole = plan(r, [np.asarray(x, np.int64) for x in ins], cfg)  # checked once cut
            n_cores, per = _groups(whole, cfg.cores, resident.get(r["srcs"][0], (None, None))[1])
            # the lockstep group: cores 0 .. n_cores - 1
            p = whole if per is None else split(whole, per, cfg)
            heads, rounds = None, 1
            if per is not None and by_rows(whole):  # row groups in rounds where one's input overfills
                per, rounds, p = _row_rounds(whole, p, per, cfg, acc.core, half)
            if kind == "attn" and acc.aux_depth:  # its sum k and vk chunks in the aux buffers
                n_cores, heads, rounds, p = _head_rounds(r, ins, whole, cfg, acc.aux_depth)
                p, fixed = p.relocate({"w": acc.aux_base}), {"w"}
            for c in p.all_commands():
                c.check(acc.addr_bits)
        except (UnsupportedOp, CommandError) as e:
            raise CompileError(f"op {r['name']} ({kind}): {e}") from None
        grouping = (n_cores, per)
        # a first input its producer just left in B (cut the same way over the cores) is read
        # where it is (no LOAD); other operands go after the last op's (``cursor``), so that
        # their LOADs overlap its COMPUTE
        need = p.words_needed()
        off, by = resident.get(r["srcs"][0], (None, None))
        keep = by == grouping and (per is None or not by_rows(whole)) and heads is None  # by rows: halos
        try:
            shift, off = _place_b(p, off if keep else None, last_b, depth["b"], acc.core)
        except CompileError as e:
            raise CompileError(f"op {r['name']} ({kind}): {e}") from None
        single = len(_passes(p, depth, r["name"])) == 1
        for mem in need:
            if mem not in shift and mem not in fixed and mem in ("w", "q") and single:
                shift[mem] = cursor[mem] if cursor[mem] + need[mem] <= depth[mem] else 0
        p = p.relocate(shift)
        last_b = (*_b_regions(p), _half_loads(p, acc.core, half))
        passes = _passes(p, depth, r["name"])
        for mem, top in p.words_needed().items():
            if mem in shift and mem in cursor and mem not in fixed:
                cursor[mem] = top
        for mem, (base, items) in passes[-1][1].items():  # the last weight pass's words
            cursor[mem] = base + len(items)
        for mem, top in p.words_needed().items():
            if mem in ("w", "q") and len(passes) > 1 or mem in fixed:
                continue  # loaded pass by pass; in the aux buffers
            if top > depth[mem]:
                raise CompileError(f"op {r['name']} ({kind}) needs {top} words of buffer {mem.upper()}, "
                                   f"{config.name} has {depth[mem]}; use a configuration with larger buffers")
        first = len(em.instructions)
        # inputs: from the activations region, where their producers (or the host) put them; cut
        # over the cores, each core loads its pixels' words
        b_base = p.writes.get("b", (0, []))[0]
        b_words = whole.writes.get("b", (0, []))[1]
        pixels = whole.command.pixels
        wb = em.word_bytes("b")
        at = 0  # words of the plan's inputs placed so far
        head_inputs = []  # (branch, tensor) of an attention cut by heads
        row_inputs = []  # the input of an op cut by rows
        for i, (src, x) in enumerate(zip(r["srcs"], ins, strict=True)):
            x = np.asarray(x, np.int64)
            x = x.reshape(-1, 1, 1) if x.ndim == 1 else x  # a vector: one pixel
            packing = _input_packing(r, x, cfg)  # how this op wants it: unrolled by the host, or plain
            if src not in tensors:  # the network's input, written by the host
                words = len(input_words(x, packing, lanes))
                tensors[src] = dict(offset=em.activation(words, "b"), words=words, mem="b", host=True,
                                    shape=list(x.shape), packing=packing)
            t = tensors[src]
            if t.get("packing") is not None and packing is None:
                raise CompileError(f"op {r['name']}: reads the unrolled network input")
            want = input_words(x, t.get("packing") if t.get("host") else None, lanes)
            got = np.asarray(b_words[at:at + len(want)]).reshape(-1, lanes) if len(want) else want
            if t["words"] != len(want) or not np.array_equal(got, want):
                raise CompileError(f"op {r['name']} ({kind}) reads {src} in a layout its producer does not "
                                   f"write (channels not a multiple of {lanes} per group)")
            if off is None or at:  # all but a first input the op before left in place
                if per is None and heads is None:
                    em.transfer(Opcode.LOAD, "b", "activations", t["offset"], b_base + at, t["words"])
                elif heads is not None:  # loaded round by round, below
                    head_inputs.append((i, t))
                elif by_rows(whole):  # loaded round by round, below
                    row_inputs.append(t)
                else:
                    cw = t["words"] // pixels
                    for j in range(n_cores):
                        n = min(per, pixels - j * per)
                        em.transfer(Opcode.LOAD, "b", "activations", t["offset"] + j * per * cw * wb,
                                    b_base + i * per * cw, n * cw, core=j)
            at += t["words"]
        if at != len(b_words):
            raise CompileError(f"op {r['name']} ({kind}): its inputs take {len(b_words)} words, not {at}")
        core_model = []
        accesses = _accesses(p, n_cores) + _port_accesses(last_b[2], n_cores)
        (mem, obase, owords, _), = p.outputs()
        owords = whole.out_words
        dst = r["dst"]
        tensors[dst] = dict(offset=em.activation(owords, mem), words=owords, mem=mem,
                            shape=list(whole.out_shape), kind=whole.kind, groups=whole.groups, op=r["name"],
                            cores=n_cores)
        if heads is not None:  # an attention's heads per branch; a head's output and q/k/v words
            nh, dw = whole.groups // 2, -(-int(np.asarray(r["dim"])) // lanes)
            d3 = 3 * dw
        for k in range(rounds):  # cut by heads or rows: round k runs groups k * n_cores + j
            groups = []  # (core, first head, heads) of each group of this round
            for j in range(n_cores if heads is not None else 0):
                h0 = (k * n_cores + j) * heads
                if h0 < nh:
                    groups.append((j, h0, min(nh, h0 + heads) - h0))
            for i, t in head_inputs:  # each core's heads of the branch
                for j, h0, n in groups:
                    em.transfer_2d(Opcode.LOAD, "b", "activations", t["offset"] + h0 * d3 * wb,
                                   b_base + i * pixels * heads * d3, n * d3, pixels, nh * d3, heads * d3,
                                   core=j)
            pixel_groups = []  # (core, group) of this round of an op cut by pixels or rows
            if heads is None and per is not None:
                pixel_groups = [(j, k * n_cores + j) for j in range(n_cores)
                                if (k * n_cores + j) * per < pixels]
            for t in row_inputs:
                _load_rows(em, whole, t, b_base, per, len(pixel_groups), first=k * n_cores)
            active = len(groups) if heads is not None else len(pixel_groups) or n_cores
            for command, loads in passes:
                for m_w, (base, items) in loads.items() if k == 0 else ():  # loaded once
                    em.transfer(Opcode.LOAD, m_w, "weights", em.weights_words(m_w, items), base, len(items))
                mine = [a for a in accesses if a.mem not in loads]  # this pass's weights and parameters
                mine += [Access(m_w, base, base + len(items), False) for m_w, (base, items) in loads.items()]
                for c in command:
                    em.emit(Opcode.COMPUTE, mine, cores=(1 << active) - 1, command=c.value(acc.addr_bits))
                    core_model.append(core_cycles(cfg, c, acc.core))
            for j, g in pixel_groups:  # each core's pixels
                at_j = tensors[dst]["offset"] + g * per * p.command.out_cw * em.word_bytes(mem)
                em.transfer(Opcode.STORE, mem, "activations", at_j, obase,
                            min(per, pixels - g * per) * p.command.out_cw, core=j)
            for j, h0, n in groups:  # each core's heads of each branch into their place in every pixel
                for b in range(2):
                    at_j = tensors[dst]["offset"] + (b * nh + h0) * dw * wb
                    em.transfer_2d(Opcode.STORE, "b", "activations", at_j, obase + b * heads * dw, n * dw,
                                   pixels, 2 * nh * dw, 2 * heads * dw, core=j)
        if heads is None and per is None:  # (cut by heads or pixels: stored round by round, above)
            em.transfer(Opcode.STORE, mem, "activations", tensors[dst]["offset"], obase, owords)
        resident = {dst: (obase, grouping)} if mem == "b" and rounds == 1 else {}
        if mem == "b":  # the next op reads it as plain words: check the producer writes them
            y = np.asarray(out, np.int64)
            if y.ndim == 3 and owords != len(tensor_words(y, lanes)):
                users = [u["name"] for u, _, _ in ops if dst in u.get("srcs", [])]
                if users:
                    raise CompileError(f"op {r['name']} writes {dst} with padded groups; "
                                       f"{users[0]} cannot read it")
        op_rows.append(dict(name=r["name"], kind=kind, dst=dst, first=first, last=len(em.instructions) - 1,
                            segment=len(segments), core_cycles=core_model))
        if kind == "linear":  # a host step follows: the logits, or LayerNorm + Hardswish
            key = f"step{len(host_steps)}"
            for name in ("acc_scale", "ln_weight", "ln_bias", "ln_eps", "out_scale"):
                if r.get(name) is not None:
                    host[f"{key}_{name}"] = np.asarray(r[name], np.float64)
            step = dict(key=key, src=dst, post=r.get("post") is not None, segment=len(segments))
            if step["post"]:
                nxt = [u for u, _, _ in ops if dst in u.get("srcs", [])]
                q = np.asarray(out)
                words = len(tensor_words(q.reshape(-1, 1, 1), lanes))
                step["dst"] = f"{dst}.host"
                tensors[step["dst"]] = dict(offset=em.activation(words, "b"), words=words, mem="b", host=True,
                                            shape=[q.size, 1, 1], packing=None)
                for u in nxt:
                    u["srcs"] = [step["dst"] if s == dst else s for s in u["srcs"]]
            host_steps.append(step)
            em.emit(Opcode.END)
            segments.append([seg_start, len(em.instructions) - seg_start])
            seg_start = len(em.instructions)
    if seg_start != len(em.instructions):
        em.emit(Opcode.END)
        segments.append([seg_start, len(em.instructions) - seg_start])
    layout = dict(
        format=FORMAT, version=VERSION, config=json.loads(config.to_json()), config_hash=config.hash,
        instruction_bytes=INSTRUCTION_BITS // 8, axi_bits=config.axi_bits, word_beats=acc.word_beats,
        lanes=lanes, segments=segments,
        regions=dict(program=len(em.instructions) * INSTRUCTION_BITS // 8, weights=len(em.weights),
                     activations=em.activation_bytes),
        tensors=tensors, ops=op_rows, host_steps=host_steps, model=model, input_shape=list(image_shape),
    )
    return Program(em.encoded(segments), em.weights, layout, host, [a for _, _, a in em.instructions])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gen.compile", description=__doc__.split("\n")[0])
    p.add_argument("--quantized", required=True, help="what python -m quant calibrate wrote (q.pt)")
    p.add_argument("--config", default="tiny", help="preset, NxM+TxSxL or config.json (default tiny)")
    p.add_argument("--out", required=True, help="program folder to write")
    a = p.parse_args(argv)
    from gen.cli import load_config

    try:
        cfg = load_config(a.config)
        frozen, shape, meta = load_frozen(a.quantized)
        prog = compile_network(frozen, shape, cfg, model=meta["model"])
    except (CompileError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    prog.write(a.out)
    lay = prog.layout
    print(f"wrote {a.out}: {len(prog.instructions)} instructions in {len(lay['segments'])} segments, "
          f"{len(lay['ops'])} ops, weights {len(prog.weights):,} B, "
          f"activations {lay['regions']['activations']:,} B "
          f"(config {cfg.name} [{cfg.hash}])")
    return 0


def load_frozen(path):
    """(frozen ops, input image shape, the file's metadata) of a quantized model file;
    CompileError if unreadable."""
    from quant.__main__ import _load_quantized
    from quant.integer import freeze
    from quant.model import ModelError, get_spec

    try:
        prog, meta = _load_quantized(path)
    except ModelError as e:
        raise CompileError(str(e)) from None
    spec = get_spec(meta["model"])
    return freeze(prog), (spec.in_channels, meta["resolution"], meta["resolution"]), meta


if __name__ == "__main__":
    sys.exit(main())
