"""Our dataflow (``--dataflow ours``): the accelerator that docs/architecture.md specifies and the
RTL issues build, counted cycle by cycle per command. The paper's dataflow stays in
``sim/perf.py`` as the baseline.

What is counted (each rule is a section of docs/architecture.md):

- **Lockstep cores.** Every command runs on all L cores at once; a core's share of the work is
  set by a grid G_o x G_p (output-channel groups x pixel groups, G_o * G_p <= L) that the
  compiler chooses per command. Cores of one output group receive the same weights (multicast
  from buffer C), cores of one pixel group the same inputs (multicast from buffer B through their
  staging buffer A). A command takes as long as its busiest core.
- **Weight reuse over pixel blocks.** An engine holds one weight chunk (S lanes x T) for a block
  of ``block_min..block_max`` pixels, with ``block_max`` psum registers per lane; a block of
  fewer than ``block_min`` pixels still takes ``block_min`` beats (the weight port delivers one
  chunk per ``block_min`` cycles). So an engine reads S*T/block_min weight bytes per cycle.
- **Two engines per core** take different output tiles of the same pixel blocks; an odd tile
  is split by pixels when its block count allows (each part at least ``block_min`` pixels).
- **Depthwise convs** run on the R-MAC engine (self-accumulation, the RTL's beat schedule): N
  channels x M output pixels of a row per block, k^2 beats, or more when the new input rows
  (line buffer in A: each input row is fetched from B once) exceed A's write port or B's read
  ports. A depthwise conv followed by a pointwise conv runs **fused in row bands**: the R-MAC
  engines compute band j while the MAT engines compute the pointwise conv of band j-1; once the
  depthwise conv is done the R-MAC engines join the pointwise conv (Fig. 9a/b).
- **Attention as the integer model computes it**: per head vk = ReLU(K)^T V (d x d, a reduction
  over the n tokens) on both engines while the adder tree sums ReLU(K) over tokens (Sigma k);
  vk and Sigma k are requantized to int8; then ReLU(Q) [vk | Sigma k] (d + 1 outputs per token):
  the numerator requantized to int16, the raw int32 divisor into the log2 quantizer, the shifter
  array divides. Two commands, all heads batched over the grid.
- **Per-command overhead**: the engine pipeline's fill/drain plus ``DISPATCH`` cycles (command
  broadcast to the cores and the end-of-command barrier), once per command and weight pass.
- **Buffers and ports** (``AcceleratorConfig.buffers``): a mapping whose reads exceed a buffer's
  ports is not used; a command with no usable mapping is refused (``ConfigError``). A command
  whose weights exceed half of buffer C runs in passes (inputs re-read from B each pass).
  Activations live in buffer B; a step whose live tensors (inputs, outputs, residual) exceed B
  spills its output to DRAM and reads it back.
- **DRAM** (``sim.timeline``): a decoupled DMA prefetches weights into buffer C (a ring) ahead of
  the compute, at min(AXI ports x width x clock, ``--dram-gbs``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from hw.command import block_beats, cdiv, split_pixels, tail_pad
from hw.config import ConfigError

DISPATCH = 16  # cycles per command: broadcast, per-core address setup, end-of-command barrier
BAND_SYNC = 4  # cycles per row band of a fused DW -> PW pair (token between the engines)
PARAM_BYTES = 4 + 2 + 1  # per output channel: int32 bias, u16 multiplier, shift byte
PORT_BYTES = 8  # a BRAM36 port: 64 data bits


def check_symmetric(cfg):
    if cfg.s != cfg.m or cfg.t != cfg.n:
        raise ConfigError(f"the ours dataflow pairs the two engines tile for tile and needs S = M and "
                          f"T = N, not {cfg.name}")


@functools.cache
def buffers(cfg):
    """``cfg.buffers()`` by name (computed once per configuration: every mapping reads it)."""
    return {b.name: b for b in cfg.buffers()}


@functools.cache
def _engine_latency(cfg, unit):
    from sim.units import UNITS

    engine = UNITS[unit].build(cfg.unit_params()[unit])
    engine._MustUse__silence = True  # read for its latency, not elaborated
    return engine.latency


def mat_latency(cfg):
    """The MAT engine's ``latency`` (last beat to int8 result), read off the component."""
    return _engine_latency(cfg, "mat_engine")


def rmac_latency(cfg):
    """The R-MAC engine's ``latency`` (last beat to the first int8 result), read off the component."""
    return _engine_latency(cfg, "rmac_engine")


# ---- reductions (conv, pw, gpw, linear, attention MatMuls) ---------------------------------------

def padded_pixels(p, lo, hi):
    """Beat slots for p pixels cut into blocks of at most hi pixels as the core cuts them
    (``hw.command.pixel_blocks``); a block of fewer than lo pixels costs lo (the weight port's
    rate)."""
    return block_beats(p, lo, hi)


def block_limit(cfg, in_bytes):
    """The largest pixel block of a reduction whose pixels bring ``in_bytes`` input bytes each:
    ``block_max``, or fewer when half of buffer A (double-buffered blocks) cannot stage them."""
    return min(cfg.block_max, buffers(cfg)["A"].kib * 1024 // 2 // max(1, in_bytes))


def reduction_beats(p, kc, tiles, lo, hi, engines=2, tail=True):
    """Beats of the busiest engine for ``tiles`` output tiles over ``p`` pixels, ``kc`` chunks
    each: tile pairs over padded pixel blocks; an odd last tile split by pixels between the
    engines when each half has ``lo`` pixels (``hw.command.pixel_loop``), else on the MAT engine
    alone. The last block's padding is not issued at the end of a command (``tail``;
    ``hw.command.tail_pad``)."""
    p_pad = padded_pixels(p, lo, hi)
    last = p if engines == 1 or tiles % 2 == 0 else split_pixels(p, lo)  # the last run's pixels
    if engines == 1:
        px = tiles * p_pad
    elif tiles % 2 == 0:
        px = tiles // 2 * p_pad
    elif last < p:
        px = tiles // 2 * p_pad + padded_pixels(last, lo, hi)
    else:
        px = cdiv(tiles, 2) * p_pad
    return px * kc - (tail_pad(last, lo, hi) if tail else 0)


@dataclass
class Mapping:
    beats: int  # per core, the busiest
    go: int = 1
    gp: int = 1
    engines: int = 2
    c_bytes: float = 0.0  # weight bytes per cycle read from buffer C
    b_bytes: float = 0.0  # input bytes per cycle read from buffer B

    @property
    def label(self):
        return f"{self.go}x{self.gp} grid, {'MAT+R-MAC' if self.engines == 2 else 'MAT'}"


def reduction(p, kc, tiles, in_bytes, cfg, engines=2):
    """Best lockstep mapping of a reduction: ``p`` pixels (rows), ``tiles`` output tiles of S
    channels, ``kc`` chunks of T inputs per tile, ``in_bytes`` input bytes per pixel (what A
    stages per pixel). Returns a ``Mapping`` (beats of the busiest core's busiest engine)."""
    bufs = buffers(cfg)
    engines = min(engines, reduction_engines(kc))
    hi = block_limit(cfg, in_bytes)
    if hi < 1:
        raise ConfigError(f"buffer A ({bufs['A'].kib} KiB) cannot stage one pixel of {in_bytes} input bytes")
    w_eng = cfg.s * cfg.t / cfg.block_min
    best = None
    refused = None
    for go in range(1, cfg.cores + 1):
        if go > tiles:
            break
        gp = min(cfg.cores // go, p)
        tiles_c, p_c = cdiv(tiles, go), cdiv(p, gp)
        p_pad = padded_pixels(p_c, cfg.block_min, hi)
        beats = reduction_beats(p_c, kc, tiles_c, cfg.block_min, hi, engines)
        m = Mapping(beats, go, gp, engines, go * engines * w_eng, gp * in_bytes * p_pad / max(1, beats))
        if m.c_bytes > bufs["C"].read_bytes or m.b_bytes > bufs["B"].read_bytes:
            refused = m
            continue
        if best is None or m.beats < best.beats:
            best = m
    if best is None:
        m = refused
        raise ConfigError(f"{cfg.name}: no core grid fits the buffer ports: the smallest needs "
                          f"{m.c_bytes:.0f} B/cycle of weights from buffer C ({bufs['C'].read_bytes} B/cycle "
                          f"in {bufs['C'].banks} banks of {bufs['C'].kib} KiB) and {m.b_bytes:.0f} B/cycle "
                          f"of inputs from buffer B ({bufs['B'].read_bytes}); enlarge the buffers or "
                          f"raise block_min")
    return best


def weight_passes(w_bytes, tiles, cfg):
    """Output tiles per weight pass and the pass count of a command: each pass's weights fit
    half of buffer C (the other half is being filled for the next pass or command)."""
    want = max(1, cdiv(w_bytes, buffers(cfg)["C"].kib * 1024 // 2))
    per = cdiv(tiles, min(tiles, want))
    return per, cdiv(tiles, per)


def pass_tiles(tiles, per, passes):
    """Output tiles of each weight pass: ``per`` each, the last one what is left."""
    return [min(per, tiles - i * per) for i in range(passes)]


def passes_cycles(p, kc, tiles_per_pass, in_bytes, cfg, engines=2):
    """Cycles of reduction passes over ``tiles_per_pass`` output tiles each, every pass paying the
    MAT latency and the dispatch: (cycles, Mapping of the first pass)."""
    maps = [reduction(p, kc, t, in_bytes, cfg, engines) for t in tiles_per_pass]
    return sum(m.beats + mat_latency(cfg) + DISPATCH for m in maps), (maps[0] if maps else None)


def reduction_cycles(p, kc, tiles, in_bytes, w_bytes, cfg, engines=2):
    """Cycles of a reduction command, in weight passes: (cycles, Mapping of the first pass)."""
    per, passes = weight_passes(w_bytes, tiles, cfg)
    return passes_cycles(p, kc, pass_tiles(tiles, per, passes), in_bytes, cfg, engines)


def core_beats(cfg, command):
    """Beats of one core command (``hw.command.Command``) as the model counts them on one core:
    a reduction by :func:`reduction` (a linear: ``min_beats`` per chunk per engine,
    ``hw.accelerator.one_pixel_beats``), an add or a pool one buffer word per beat."""
    from hw.command import Op

    c = command
    if c.op == Op.DW:
        return depthwise_core_beats(cfg, c)
    if c.op == Op.ATTN_VK:  # outer products on the R-MAC engine: one token per beat and block
        # with M tokens a block's M vk rows leave the serializer during the next block's M beats,
        # taking the post-processor on every cycle, so the sums of k (one per word of k, waiting
        # in the MAT engine's queue) leave after the last block's rows: cwg - 1 cycles beyond the
        # overhead (equal to the RTL for cwg 1..3: test_core's attention over M tokens)
        return c.cwg * c.cwg * c.pixels + (c.cwg - 1 if c.pixels == cfg.m else 0)
    if c.op in (Op.REDUCE, Op.ATTN_Q):
        if c.pixels == 1:  # a linear: tile pairs, ``min_beats`` per chunk (two on a shared weight port)
            engines = reduction_engines(c.chunks)
            return reduction_beats(1, c.chunks, c.tiles, c.min_beats, 1, engines) + rmac_last_results(c)
        one = cfg.replace(cores=1)
        return reduction(c.pixels, c.chunks, c.tiles, c.chunks * cfg.t, one).beats + rmac_last_results(c)
    return c.pixels * c.in_cw


def reduction_engines(kc):
    """Engines of a reduction with ``kc`` chunks per pixel: both, or the MAT engine alone for one
    chunk (each engine would bring a result every cycle to the core's one post-processor)."""
    return 1 if kc == 1 else 2


def _blocks(pixels, size, big):
    """Sizes of the blocks the core cuts ``pixels`` into: ``big`` of ``size``, then ``size - 1``."""
    small = size - 1
    rest = pixels - big * size
    return [size] * big + ([small] * (rest // small) if small else [])


def rmac_last_results(c):
    """Cycles a reduction command (or ``ATTN_Q``) ends later because its engines share one
    post-processor (``hw.core``'s result path): both finish a block's pixels in its last chunk
    pass; the R-MAC engine's results go first and the MAT engine's wait in a queue, drained while
    the next block's earlier passes leave the post-processor free. With two passes per block a
    block one pixel smaller than the one before cannot drain all of it, and one result stays
    queued into the next (``backlog``). So the command's last results leave after the R-MAC
    engine's of its last block and the backlog. None on the MAT engine alone (one chunk,
    ``follow``); the attention's divisors (the MAT engine in pair 0) go to the divisor buffer,
    not through the post-processor."""
    from hw.command import Op

    if c.follow or reduction_engines(c.chunks) == 1:
        return 0
    pairs = cdiv(c.tiles, 2)
    seq = []  # per block: (slots with a pixel, MAT results queued, R-MAC results, beats per pass)
    for p in range(pairs):
        odd = c.tiles % 2 == 1 and p == pairs - 1
        sizes = _blocks(c.split, c.oblock, c.obig) if odd else _blocks(c.pixels, c.pblock, c.pbig)
        off = 0
        for n in sizes:
            n_b = (max(0, min(n, c.pixels - c.split - off)) if c.split < c.pixels else 0) if odd else n
            seq.append((n, 0 if c.op == Op.ATTN_Q and p == 0 else n, n_b, max(n, c.min_beats)))
            off += n
    backlog = 0
    for (_, n_a, n_b, span), nxt in zip(seq, seq[1:], strict=False):
        free = span + (c.chunks - 1) * nxt[3] - n_b  # cycles left to the queue before the next block's
        backlog = max(0, backlog + n_a - free)
    n, n_a, n_b, _ = seq[-1]
    return max(0, n_b + (backlog + n_a if backlog + n_a else 0) - n)


@functools.lru_cache(maxsize=64)  # the compiler tries every MAT-only row count of a band height
def window_fetch(cfg, k, stride, rows):
    """Cycles to fetch ``rows`` rows of a depthwise block's input window into the window banks:
    ``dw_ports`` words per cycle of each row's (M-1)*s + k words, plus 2 (read latency,
    hand-over)."""
    return rows * cdiv((cfg.m - 1) * stride + k, cfg.dw_ports) + 2


def depthwise_schedule(cfg, c):
    """A depthwise command on one core, block by block as the RTL walks it: bands of ``c.band``
    output rows (all of them when 0), in each band (channel word, column block, output row); a
    block is M output pixels x N channels and takes k^2 beats once its window is in. The window
    of the next block is fetched while this one computes (:func:`window_fetch`): k rows at the
    top of a column strip of a band, s new rows below it. The first block waits for its window; the last
    block's results leave one pixel per cycle. Returns (beats beyond ``ComputingCore.overhead``,
    (per band: the beat count by which its last pixel has left))."""
    k2 = c.k * c.k
    band = c.band or c.out_h
    last_count = c.out_w - (c.blocks - 1) * cfg.m
    t, ends = None, []
    for b0 in range(0, c.out_h, band):
        rows = range(b0, min(b0 + band, c.out_h))
        for _ in range(c.in_cw):
            for b in range(c.blocks):
                count = cfg.m if b < c.blocks - 1 else last_count
                for oy in rows:
                    fetch = window_fetch(cfg, c.k, c.stride, c.k if oy == b0 else c.stride)
                    t = fetch if t is None else t + max(k2, fetch)  # this block's first beat
                    done = t + k2 + count
        ends.append(done)
    return done, tuple(ends)


def band_post_load(cfg, k, stride, chunks):
    """Results per cycle the band pipeline brings to the core's one post-processor: the depthwise
    pixels (M per block of at least max(k^2, one new input row's fetch) beats, as
    ``depthwise_schedule`` walks a column strip) and the ``follow`` reduction's (one per pixel and
    tile every ``chunks`` beats, on the MAT engine alone). The post-processor takes the depthwise
    pixels first and the reduction's in the cycles between (``hw.core``): above one per cycle its
    queue fills and the core holds the MAT engine back, cycles the model does not count, so such a
    pair is not fused."""
    return cfg.m / max(k * k, window_fetch(cfg, k, stride, stride)) + 1 / chunks


def depthwise_core_beats(cfg, c):
    """Cycles of a depthwise command on one core beyond ``ComputingCore.overhead``
    (:func:`depthwise_schedule`)."""
    return depthwise_schedule(cfg, c)[0]


def core_cycles(cfg, command, core):
    """Cycles of one command on one core: the model's beats plus the core's fixed overhead
    (``ComputingCore.overhead``: accept, read latency, pipeline, post-processing, last write).
    The array adds ``DISPATCH`` per command for the broadcast and the barrier."""
    return core_beats(cfg, command) + core.overhead(command.op, command.post)


def fused_core_cycles(cfg, dw, follow, rest, core):
    """Cycles of the depthwise -> pointwise band pipeline on one core: the depthwise command
    ``dw`` on the R-MAC engine, the ``follow`` command (the pointwise conv of the first rows, all
    tiles of a band before the next) on the MAT engine alongside it, each band starting the
    cycle after the depthwise command has written its last word, then ``rest`` (the rows left,
    on both engines; None if none) once the core is idle. Counted from the depthwise command's
    acceptance, as ``core_cycles`` counts a command."""
    from hw.command import Op

    beats, ends = depthwise_schedule(cfg, dw)
    oh_dw = core.overhead(Op.DW, dw.post)
    end_dw = beats + oh_dw
    lo, hi = follow.min_beats, block_limit(cfg, follow.chunks * cfg.t)
    segments = [min(follow.band_pixels, follow.pixels - p0)
                for p0 in range(0, follow.pixels, follow.band_pixels)]
    t = 2  # accepted the cycle after the depthwise command, its first beat one cycle later
    for b, n in enumerate(segments):
        written = ends[b] + oh_dw - 2  # the band's last write (the core is idle 2 cycles later)
        start = max(t, written + 1)
        t = start + reduction_beats(n, follow.chunks, follow.tiles, lo, hi, 1, tail=b == len(segments) - 1)
    end = max(end_dw, t - 1 + core.overhead(Op.REDUCE, follow.post))
    return end + (core_cycles(cfg, rest, core) if rest is not None else 0)


# ---- depthwise -----------------------------------------------------------------------------------

def dw_block_cycles(k, s, cores_active, cfg, b_busy=0.0):
    """Cycles of one depthwise block (N channels x M output pixels of a row): k^2 beats, or the
    time to bring its new input rows into A ((M-1)*s + k pixels x N channels, s rows per output
    row) over A's write port and what is left of B's read ports (``b_busy`` B/cycle taken by a
    pointwise conv running alongside)."""
    bufs = buffers(cfg)
    new = s * ((cfg.m - 1) * s + k) * cfg.n
    b_left = max(PORT_BYTES, bufs["B"].read_bytes - b_busy)
    return max(k * k, cdiv(new, bufs["A"].read_bytes), math.ceil(new * cores_active / b_left))


def line_buffer_fits(groups_c, wo, k, s, cfg):
    """Buffer A's half for the depthwise line buffer: k + s input rows of (wo - 1) * s + k pixels
    for ``groups_c`` channel groups at once (the other half stages pointwise inputs). A depthwise
    conv alone walks its channel groups one after the other (2 at once: the next one loads); a
    fused band pipeline keeps every channel group of the core."""
    return (k + s) * ((wo - 1) * s + k) * cfg.n * groups_c <= cfg.buffer_a_kib * 1024 // 2


def depthwise(c, ho, wo, k, s, cfg):
    """A depthwise conv alone on the R-MAC engines: grid of channel groups x row groups.
    Returns (beats per core, (gc, gr))."""
    groups, blocks_row = cdiv(c, cfg.n), cdiv(wo, cfg.m)
    best = None
    for gc in range(1, min(cfg.cores, groups) + 1):
        gr = min(cfg.cores // gc, ho)
        if not line_buffer_fits(min(2, cdiv(groups, gc)), wo, k, s, cfg):
            continue
        beats = cdiv(groups, gc) * cdiv(ho, gr) * blocks_row * dw_block_cycles(k, s, gc * gr, cfg)
        if best is None or beats < best[0]:
            best = (beats, (gc, gr))
    if best is None:
        raise ConfigError(f"buffer A ({cfg.buffer_a_kib} KiB) cannot hold the line buffer of a {k}x{k} "
                          f"depthwise conv over {wo} output columns: enlarge buffer_a_kib")
    return best


def two_stage(items, prod, cons, cons_both):
    """Producer (R-MAC engines) and consumer (MAT engines) item by item; once the producer is
    done, the R-MAC engines join the unstarted consumer items (``cons_both`` each). Beats."""
    return two_stage_filled(items, prod, cons, cons_both)[0]


def two_stage_filled(items, prod, cons, cons_both, filler=0):
    """``two_stage`` where the MAT engines also have ``filler`` beats of independent work that
    they run whenever the next item is not ready yet; ``cons_both`` may be a function of the
    number of items left (they then run as one command on both engines). Returns (beats, filler
    beats left)."""
    if items == 0:
        return 0, filler
    done_prod = prod * items
    t = 0
    for j in range(items):
        ready = prod * (j + 1)
        if ready > t and filler:
            use = min(filler, ready - t)
            filler -= use
            t += use
        start = max(t, ready)
        if start >= done_prod:
            rest = cons_both(items - j) if callable(cons_both) else (items - j) * cons_both
            return start + rest, filler
        t = start + cons
    return t, filler


def fused_dw_pw(dw, pw, cfg, filler=0, tiles=None):
    """Row-band pipeline of a depthwise conv and the pointwise conv it feeds. Bands of ``gr``
    output rows (one per row group of the depthwise grid); per band the R-MAC engines compute
    the depthwise taps, the MAT engines the previous band's pointwise conv. ``filler``: MAT-only
    beats of independent work run while the MAT engines wait for a band (what is left runs on
    both engines at the end, half the beats). ``tiles``: only the pointwise conv's first
    ``tiles`` output tiles (its first weight pass). (cycles, label)."""
    c, ho, wo, k, s = dw["cout"], dw["h_out"], dw["w_out"], dw["kernel"], dw["stride"]
    groups = cdiv(c, cfg.n)
    all_tiles, kc = _tiles(pw, cfg)
    tiles = tiles or all_tiles
    in_bytes = pw["cin"]
    best = None
    for gc in range(1, min(cfg.cores, groups) + 1):
        gr = min(cfg.cores // gc, ho)
        if not line_buffer_fits(cdiv(groups, gc), wo, k, s, cfg):
            continue
        for rows_per_core in (1, 2, 4):
            band = gr * rows_per_core
            # the band's depthwise outputs of this core wait in aux (double-buffered) for B
            if band > ho or cdiv(groups, gc) * rows_per_core * wo * cfg.n > cfg.aux_kib * 1024 // 2:
                continue
            bands = cdiv(ho, band)
            mat = reduction(band * wo, kc, tiles, in_bytes, cfg, engines=1)
            cons = mat.beats
            prod = cdiv(groups, gc) * rows_per_core * cdiv(wo, cfg.m) * dw_block_cycles(
                k, s, gc * gr, cfg, mat.b_bytes)

            def cons_both(left_bands, band=band):  # the remaining rows as one command on both engines
                rows_left = min(ho, left_bands * band)
                return reduction(rows_left * wo, kc, tiles, in_bytes, cfg, engines=2).beats + DISPATCH

            beats, left = two_stage_filled(bands, prod, cons, cons_both, filler)
            cyc = beats + cdiv(left, 2) + bands * BAND_SYNC + rmac_latency(cfg) + mat_latency(cfg) + DISPATCH
            if best is None or cyc < best[0]:
                best = (cyc, f"fused DW->PW, bands of {band} rows, DW {gc}x{gr} grid")
    return best or (math.inf, "no fused mapping: line buffer or aux")


# ---- steps ---------------------------------------------------------------------------------------

def host_im2col(cin, k, groups, cfg):
    """A conv whose input has fewer channels than a word (the stem: the 3-channel image) gets its
    input from the host already unrolled: each output pixel's k*k*C_in patch packed into words
    (the host quantizes the image anyway), so it runs as a pointwise conv over C_in*k^2 inputs."""
    return groups == 1 and k > 1 and cin < cfg.t


def _tiles(r, cfg):
    """(output tiles, input chunks per tile) of a conv/pw/gpw/linear row. A chunk is one buffer
    word: T channels of one input pixel at one kernel tap, so a generic conv reduces over
    k^2 * ceil(C_in / T) chunks; the address generator reads whole words, it does not gather T
    values from several pixels. The stem's input comes unrolled from the host (host_im2col):
    27 inputs in 4 chunks of 8."""
    g, k = r["groups"], r["kernel"]
    if host_im2col(r["cin"], k, g, cfg):
        return cdiv(r["cout"], cfg.s), cdiv(r["cin"] * k * k, cfg.t)
    return g * cdiv(r["cout"] // g, cfg.s), k * k * cdiv(r["cin"] // g, cfg.t)


def weight_bytes(r):
    if r["op"] not in ("conv", "pw", "gpw", "dw", "linear"):
        return 0
    return r["cin"] // r["groups"] * r["kernel"] ** 2 * r["cout"] + r["cout"] * PARAM_BYTES


def act_bytes(r, which):
    return r["cin"] * r["h_in"] * r["w_in"] if which == "in" else r["cout"] * r["h_out"] * r["w_out"]


@dataclass
class Step:
    """One command of the program (or a fused pair): what the timeline schedules."""

    names: list
    ops: list
    macs: int
    compute: int  # cycles, overheads included
    mapping: str
    weights: int = 0  # DRAM bytes through buffer C
    dram_in: int = 0  # spilled activations read back
    dram_out: int = 0  # spilled or final activations written
    background: bool = False  # may overlap the next frame (the head linears)
    passes: int = 1  # weight passes: the time line loads and computes them one by one
    live: int = 0  # activation bytes live in buffer B during the step
    extra: dict = field(default_factory=dict)

    @property
    def name(self):
        return self.names[0] if len(self.names) == 1 else f"{self.names[0]} + {len(self.names) - 1}"

    @property
    def op(self):
        return "+".join(self.ops)


def reduction_step(r, cfg):
    tiles, kc = _tiles(r, cfg)
    p = r["h_out"] * r["w_out"]
    in_bytes = r["cin"] * (r["kernel"] ** 2 if r["op"] == "conv" else 1)
    cyc, m = reduction_cycles(p, kc, tiles, in_bytes, weight_bytes(r), cfg)
    passes = weight_passes(weight_bytes(r), tiles, cfg)[1]
    label = m.label + (f", {passes} weight passes" if passes > 1 else "")
    return Step([r["name"]], [r["op"]], r["macs"], cyc, label, weights=weight_bytes(r), passes=passes)


def linear_step(r, cfg):
    """A head linear on the head core alone (sim.timeline): p = 1, one weight chunk per beat on
    each engine (two where the weight buffer's port is shared: ``hw.accelerator.one_pixel_beats``),
    weights streamed from the DMA; the DRAM sets its pace. The engines take tiles in pairs; an
    odd last tile runs on the MAT engine alone (its single pixel cannot be split, and splitting
    its reduction would need a partial-sum adder the core does not have)."""
    from hw.accelerator import one_pixel_beats

    tiles, kc = _tiles(r, cfg)
    beats = reduction_beats(1, kc, tiles, one_pixel_beats(cfg), 1, reduction_engines(kc))
    return Step([r["name"]], ["linear"], r["macs"], beats + mat_latency(cfg) + DISPATCH,
                "head core, streamed weights", weights=weight_bytes(r), background=True)


def depthwise_step(r, cfg):
    beats, (gc, gr) = depthwise(r["cout"], r["h_out"], r["w_out"], r["kernel"], r["stride"], cfg)
    return Step([r["name"]], ["dw"], r["macs"], beats + rmac_latency(cfg) + DISPATCH,
                f"R-MAC SA alone, {gc}x{gr} grid", weights=weight_bytes(r))


def dw_pw_step(dw, pw, cfg):
    """Fused when faster than the depthwise conv alone followed by the pointwise conv. Every band
    needs every output channel's weights, so a pointwise conv in several weight passes fuses its
    first pass with the depthwise conv and runs the other passes after it on both engines."""
    a, b = depthwise_step(dw, cfg), reduction_step(pw, cfg)
    tiles, kc = _tiles(pw, cfg)
    per, passes = weight_passes(weight_bytes(pw), tiles, cfg)
    fused, label = fused_dw_pw(dw, pw, cfg, tiles=per)
    if band_post_load(cfg, dw["kernel"], dw["stride"], kc) > 1:  # more than the post-processor takes
        fused = math.inf
    later = pass_tiles(tiles, per, passes)[1:]
    fused += passes_cycles(pw["h_out"] * pw["w_out"], kc, later, pw["cin"], cfg)[0]
    if passes > 1:
        label += f", then {passes - 1} more weight passes"
    if fused <= a.compute + b.compute:
        cyc = fused
    else:
        cyc, label = a.compute + b.compute, f"sequential: {a.mapping}; {b.mapping}"
    return Step([dw["name"], pw["name"]], ["dw", pw["op"]], dw["macs"] + pw["macs"], cyc, label,
                weights=weight_bytes(dw) + weight_bytes(pw), passes=passes)


def vk_cycles(heads, d, n, cfg):
    """vk = v . ReLU(k)^T of ``heads`` heads as the core computes it (ATTN_VK): outer products on
    the R-MAC engine in self-accumulation, one token per beat, an M x N block of vk per pass over
    the tokens (Sigma k on the MAT engine alongside, identity weights); the blocks of all heads
    spread over the cores. The pixel-major activations give no T tokens of one channel in a
    word, so the MAT engine cannot take part in vk's reduction. (cycles, Mapping)."""
    blocks = heads * cdiv(d, cfg.m) * cdiv(d, cfg.n)
    beats = cdiv(blocks, cfg.cores) * n
    return beats + rmac_latency(cfg) + DISPATCH, Mapping(beats, min(blocks, cfg.cores), 1, 1)


def attention_cycles(heads, d, n, cfg):
    """Both MatMuls of a LiteMLA as the integer model computes them: (cycles, vk Mapping, q Mapping).

    vk: per head d x d outputs over n tokens (``vk_cycles``); q: per token and head one divisor
    tile and ceil(d / S) numerator tiles, a reduction over d (ATTN_Q)."""
    vk_c, vk_m = vk_cycles(heads, d, n, cfg)
    q_c, q_m = reduction_cycles(n, cdiv(d, cfg.t), heads * (1 + cdiv(d, cfg.s)), d, 0, cfg)
    return vk_c + q_c, vk_m, q_m


def attention_step(vk, q, cfg):
    heads, d, n = vk["heads"], vk["cin"], vk["h_in"]
    if 4 * n > cfg.divisor_kib * 1024:
        raise ConfigError(f"the divisor buffer ({cfg.divisor_kib} KiB) cannot hold the int32 divisors "
                          f"of a head over {n} tokens: enlarge divisor_kib")
    cyc, m1, m2 = attention_cycles(heads, d, n, cfg)
    return Step([vk["name"], q["name"]], ["matmul_vk", "matmul_q"], vk["macs"] + q["macs"], cyc,
                f"attention: vk {m1.label}; q {m2.label}")


def aggregation_attention_step(dw, gpw, vk, q, cfg):
    """A LiteMLA's aggregation (5x5 depthwise -> grouped 1x1) and its attention. Half of the
    heads come straight from the qkv conv: their vk and q commands run on the MAT engines alone
    while the R-MAC engines compute the aggregation's depthwise conv (its 5x5 taps outweigh the
    grouped 1x1, so the MAT engines would wait); the aggregated heads follow on both engines.
    Taken when faster than the aggregation and the attention one after the other."""
    heads, d, n = vk["heads"], vk["cin"], vk["h_in"]
    direct = heads // 2
    seq = [dw_pw_step(dw, gpw, cfg), attention_step(vk, q, cfg)]
    seq_cyc = sum(st.compute for st in seq)
    # the direct heads' vk needs the R-MAC engines (busy with the 5x5 depthwise conv): after it
    mat_q = reduction(n, cdiv(d, cfg.t), direct * (1 + cdiv(d, cfg.s)), d, cfg, engines=1).beats
    weights = weight_bytes(dw) + weight_bytes(gpw)
    fused, label = fused_dw_pw(dw, gpw, cfg, filler=mat_q)
    rest, _, _ = attention_cycles(heads - direct, d, n, cfg)
    cyc = fused + mat_latency(cfg) + DISPATCH + vk_cycles(direct, d, n, cfg)[0] + rest
    names = [r["name"] for r in (dw, gpw, vk, q)]
    ops = ["dw", "gpw", "matmul_vk", "matmul_q"]
    macs = sum(r["macs"] for r in (dw, gpw, vk, q))
    if cyc < seq_cyc and weight_passes(weight_bytes(gpw), _tiles(gpw, cfg)[0], cfg)[1] == 1:
        return Step(names, ops, macs, cyc, f"vk of the {direct} direct heads; {label}; MAT: their q in the "
                                           f"waits; then the {heads - direct} aggregated heads",
                    weights=weights)
    return Step(names, ops, macs, seq_cyc, f"{seq[0].mapping}; then {seq[1].mapping}", weights=weights,
                passes=seq[0].passes)


def _block_key(name):
    """Residual block of a layer: the module path up to ``.main``."""
    return name.split(".main.")[0] if ".main." in name else None


def residual_bytes(rows):
    """Per row index: bytes of the residual (skip) tensor held while the row runs: the block's
    input when the block's output has its shape (identity shortcut)."""
    blocks = {}
    for r in rows:
        key = _block_key(r["name"])
        if key:
            blocks.setdefault(key, []).append(r)
    skip = {}
    for members in blocks.values():
        first, last = members[0], members[-1]
        if (first["cin"], first["h_in"], first["w_in"]) == (last["cout"], last["h_out"], last["w_out"]):
            for r in members:
                skip[r["index"]] = act_bytes(first, "in")
    return skip


def build_steps(rows, cfg):
    """The program of one frame as ``Step``s, in order, with buffer-B residency and spills."""
    check_symmetric(cfg)
    steps = []
    i = 0
    while i < len(rows):
        r = rows[i]
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        if r["op"] == "dw" and [x["op"] for x in rows[i + 1:i + 4]] == ["gpw", "matmul_vk", "matmul_q"]:
            used = rows[i:i + 4]
            step = aggregation_attention_step(*used, cfg)
        elif r["op"] == "dw" and nxt is not None and nxt["op"] in ("pw", "gpw"):
            step, used = dw_pw_step(r, nxt, cfg), [r, nxt]
        elif r["op"] == "matmul_vk" and nxt is not None and nxt["op"] == "matmul_q":
            step, used = attention_step(r, nxt, cfg), [r, nxt]
        elif r["op"] == "dw":
            step, used = depthwise_step(r, cfg), [r]
        elif r["op"] == "linear" and cfg.cores > 1:
            step, used = linear_step(r, cfg), [r]
        else:
            step, used = reduction_step(r, cfg), [r]
        step.extra["rows"] = used
        steps.append(step)
        i += len(used)
    _place_activations(steps, rows, cfg)
    return steps


def _place_activations(steps, rows, cfg):
    """Live bytes in buffer B per step (input, output and residual of the step); a step over
    B's capacity spills its output (written, then read back by the next step). The image comes
    in from DRAM; the first linear's int32 output goes to the host (LayerNorm + Hardswish) and
    comes back as the second linear's int8 input; the logits (int32) go out."""
    skip = residual_bytes(rows)
    cap = cfg.buffer_b_kib * 1024
    steps[0].dram_in += act_bytes(steps[0].extra["rows"][0], "in")
    for j, st in enumerate(steps):
        first, last = st.extra["rows"][0], st.extra["rows"][-1]
        st.live = act_bytes(first, "in") + act_bytes(last, "out") + skip.get(first["index"], 0)
        if first["op"] == "matmul_vk":  # q, k, v in, the attention output out
            st.live = 4 * first["cin"] * first["heads"] * first["h_in"] + skip.get(first["index"], 0)
        if st.live > cap and j + 1 < len(steps):
            out = act_bytes(last, "out")
            st.dram_out += out
            steps[j + 1].dram_in += out
            st.extra["spill"] = out
        if st.background:
            st.dram_out += last["cout"] * 4  # int32 to the host
            if j > 0 and steps[j - 1].background:
                st.dram_in += first["cin"]  # int8 back from the host
