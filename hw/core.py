"""The computing core (paper Fig. 8): both engines, the post-processing units and the address
generators that run one command (``hw/command.py``) from the buffers and write the results back."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.command import DIM_BITS, Op, Post, command_layout, param_layout
from hw.config import DW_KERNELS, AcceleratorConfig, ConfigError
from hw.mat_engine import MatEngine
from hw.params import check_int
from hw.post_processor import PostMode, PostProcessor
from hw.residual_adder import ResidualAdder
from hw.rmac_engine import DOWN_FORWARD, SELF_ACCUMULATION, RMacEngine

__all__ = ["ComputingCore", "core_dsps"]



class _Entry:
    """Codes of a result entry (``ComputingCore``'s result path): how it is scaled (its
    channel's multiplier, Hardswish's pre-activation one, or one of the command's for every
    lane) and where it goes (buffer B, the output buffer raw, the weight buffer as sum k's word or
    as a vk chunk's row)."""

    CHANNEL, HSWISH, ADD, NUM, POOL, SUM_K, VK = range(7)  # scale (ADD: mult 1, the add's shifts)
    TO_B, TO_O, KS_WORD, ROW = range(4)  # dest


def _delay(m, value, cycles, name):
    """``value`` through ``cycles`` registers (the core's datapath never stalls)."""
    for k in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{k + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def _times_stride(value, stride):
    """``value * stride`` for a stride of 1 or 2 (a shift, not a multiplier)."""
    return Mux(stride == 2, value << 1, value)


def _times_const(value, n):
    """``value * n`` for a small constant ``n``, as shifted adds (no multiplier)."""
    return sum((value << b for b in range(n.bit_length()) if n >> b & 1), Const(0))


def _times_small(value, n):
    """``value * n`` for a small unsigned signal ``n`` (a few bits), as a sum of shifts."""
    return sum((Mux(n[b], value << b, 0) for b in range(len(n))), Const(0))


def core_dsps(config):
    """DSP48E2 slices of one computing core of ``config``, by what holds them: both engines, the
    post-processor, the residual adder (the address generators multiply by shifts and
    adds only). From the units' own counts, without building the core (so also for
    configurations the core does not support, which the performance model still describes)."""
    params = {**config.unit_params(), **ComputingCore.engine_params(config)}
    units = {"mat_engine": (MatEngine, 1), "rmac_engine": (RMacEngine, 1),
             "post_processor": (PostProcessor, 1), "residual_adder": (ResidualAdder, 1)}
    counts = {}
    for name, (cls, copies) in units.items():
        unit = cls(**params[name])
        unit._MustUse__silence = True  # built for its count only
        counts[name] = copies * unit.dsps
    return counts


class ComputingCore(wiring.Component):
    """One computing core executing commands from its buffers.

    The core reads activations from buffer B (two read ports: one per engine, or the two addends
    of a residual add), weight chunks from buffer C (``w_rd*``: one per engine) and parameters
    (``q_rd0``) and writes int8 results to B (``b_wr0``, the post-processor's) and int32 results
    to the output buffer (``o_wr0``). Word formats are those of
    ``hw/command.py``.

    **Reductions** (``Op.REDUCE``: generic conv including the stem, pointwise, grouped pointwise,
    linear): the MAT engine takes the even output tiles and the R-MAC engine (down-forward mode)
    the odd ones, each reading its own input word (grouped convs: tiles of different groups);
    an odd last tile is split by pixels between them (``split``). Loop order: tile pair, pixel
    block, kernel row, kernel column, input word of the group, pixel of the block; one beat per
    cycle, zero input words for padding. **Weight reuse**: a weight chunk is read on a block's
    first beat and held for its pixels; each engine lane keeps a partial sum per pixel of the
    block (``hw.pipeline.BlockAccumulators``); a block shorter than ``min_beats`` is padded to it
    (the weight port's rate) except after the command's last beat. A command with one chunk per
    pixel runs on the MAT engine alone (``solo``). Each result leaves through the post-processing
    the command selects: requantizer, integer Hardswish, or raw int32.
    **One post-processor for both engines**: a result leaves its engine as an entry (accumulators,
    destination, parameter word, scale); the R-MAC engine's side (its results, the depthwise
    pixels, the vk rows) goes first, the MAT engine's side (its results, the pool's sums, sum k)
    waits in a queue (LUT RAM, ``queue_depth``) for a cycle the other leaves free. The entry's
    parameter word (bias included: the engines accumulate from 0) is read from ``q_rd0`` as it
    enters the :class:`PostProcessor`, whose modes all take ``PostProcessor.LATENCY`` cycles.
    **Depthwise** (``Op.DW``): a second command register; the R-MAC engine in self-accumulation
    mode, windows in per-column LUT-RAM banks filled through ``d_rd*`` (``_depthwise``); with
    ``halo`` the rows above and below the input are read from the buffer (a core's row group
    between its neighbours'), not zero-padded (a generic conv's too). While
    one runs, a ``REDUCE`` with ``follow`` may run beside it on the MAT engine: its pixels in
    segments of the depthwise bands, each pixel issued once the depthwise command has written
    all of its band (the DW -> PW band pipeline). Every other command waits until the core is
    idle.
    **Residual add** (``Op.ADD``): pixel, channel word; both addends, one beat per cycle, through
    the :class:`ResidualAdder`'s exact sums, which the post-processor rounds by their shifts
    (``requantize(sum, 1, c)``, ``quant.arith.add_requantize``). **Pool** (``Op.POOL``): channel
    word, pixel; the MAT engine sums each channel over the pixels (identity weights: lane s takes
    channel s), the post-processor scales.

    Members
    -------
    cmd : In(stream.Signature(command_layout(addr_bits))): accepted while idle (a ``follow``
        reduction: while the main command register is free).
    busy : Out(1): a command is running (from the cycle after it is accepted to its last write).
    b_rd0, b_rd1 : memory read ports of buffer B (word: T signed 8-bit values), read latency 1,
        enabled only on a beat that needs the word (``b_rd1`` not for a word ``b_rd0`` reads).
    b_wr0 : memory write port of buffer B (the post-processor's: every int8 result).
    w_rd0, w_rd1 : read ports of the weight buffer (word: S x T signed 8-bit).
    w_aux0, w_aux1 : In(chunk), with ``aux_bit``: the word the core's **aux buffer** (its own
        vk chunks, at W addresses with bit ``aux_bit`` set) gives for the address ``w_rd0``,
        ``w_rd1`` presented; the core takes it instead of ``w_rd*.data`` when that address had
        the bit set. The choice sits in the core, merged into the selects its engines' weight
        operands already have (outside, it would cost a multiplexer per bit and core).
    q_rd0 : read port of the parameter buffer (``param_layout(S)``).
    d_rd0 .. d_rd{dw_ports-1} : read ports of buffer B for the depthwise window fill.
    w_wr0 : weight-buffer write port (the attention's sum k words and vk chunks: one result
        leaves the post-processor per cycle, so one port takes both).
    o_wr0 : write port of the output buffer (word: S signed 32-bit).
    (``memory_ports`` lists them by buffer.)

    Timing: a reduction takes ``sim.dataflow.reduction_beats`` beats, an add ``pixels * words``, a
    pool ``words * pixels``, a depthwise conv ``depthwise_schedule``, plus ``overhead(op, post)``
    cycles: command accept, the read latency, the pipeline and the last write, plus for a
    reduction on both engines the cycles its last results wait for the post-processor
    (``sim.dataflow.rmac_last_results``); ``sim.dataflow.core_cycles`` counts the same,
    ``fused_core_cycles`` the band pipeline.
    """

    def __init__(self, config, addr_bits=16, aux_bit=None):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if not config.s == config.t == config.m == config.n:
            raise ConfigError(f"the computing core needs S = T = M = N (one buffer word per output tile "
                              f"and engine), not {config.name}")
        check_int("Address width", addr_bits, 4, 24)
        if aux_bit is not None:
            check_int("Aux address bit", aux_bit, 1, addr_bits - 1)
        self._cfg, self._ab, self._aux_bit = config, addr_bits, aux_bit
        self._dw_ports = config.dw_ports  # depthwise window fill, words per cycle
        if config.m > 9:
            raise ConfigError(f"the depthwise serializer needs M <= 9 (a 3x3 block takes 9 beats), "
                              f"not M = {config.m}")
        lanes = config.s
        self._word = data.ArrayLayout(signed(8), lanes)
        self._chunk = data.ArrayLayout(self._word, lanes)
        self._acc = data.ArrayLayout(signed(config.acc_bits), lanes)
        self._param = param_layout(lanes)
        rd = lambda shape: In(memory.ReadPort.Signature(addr_width=addr_bits, shape=shape))  # noqa: E731
        wr = lambda shape: In(memory.WritePort.Signature(addr_width=addr_bits, shape=shape))  # noqa: E731
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_bits))),
            "busy": Out(1),
            "b_rd0": rd(self._word), "b_rd1": rd(self._word),
            "b_wr0": wr(self._word),
            "w_rd0": rd(self._chunk), "w_rd1": rd(self._chunk),
            "q_rd0": rd(self._param),
            "o_wr0": wr(self._acc),
            "w_wr0": wr(self._chunk),  # attention: sum k and vk chunks
            **{f"d_rd{j}": rd(self._word) for j in range(self._dw_ports)},
            **({f"w_aux{p}": In(self._chunk) for p in range(2)} if aux_bit is not None else {}),
        })

    config = property(lambda self: self._cfg)
    dw_ports = property(lambda self: self._dw_ports)
    addr_bits = property(lambda self: self._ab)
    aux_bit = property(lambda self: self._aux_bit)
    word_layout = property(lambda self: self._word)
    chunk_layout = property(lambda self: self._chunk)
    acc_layout = property(lambda self: self._acc)
    param_layout = property(lambda self: self._param)

    def buffer_layouts(self):
        """Word layout of each buffer the core reads or writes, by the names of
        ``hw.core_slice.MEMORIES``: B, weights, parameters, int32 outputs."""
        return {"b": self._word, "w": self._chunk, "q": self._param, "o": self._acc}

    def memory_ports(self):
        """{buffer (``hw.core_slice.MEMORIES``): (its read ports' names, its write ports' names)}:
        what a memory standing for that buffer connects to the core."""
        return {"b": (["b_rd0", "b_rd1"] + [f"d_rd{j}" for j in range(self._dw_ports)], ["b_wr0"]),
                "w": (["w_rd0", "w_rd1"], ["w_wr0"]), "q": (["q_rd0"], []), "o": ([], ["o_wr0"])}

    def b_accesses(self, c):
        """(reads, writes): the most words of buffer B that command ``c`` reads and writes in one
        cycle on this core -- its engines' operands (one word where engine 1 reads engine 0's: a
        tile pair of one input word), the depthwise window fill's ``dw_ports``, the
        post-processor's write (none for int32 results or an ATTN_VK's chunks). In the
        accelerator a half of buffer B gives each side of these one port
        (``hw.core_slice.B_SIDES``: the first read on port A, a second read and the write on port
        B); the compiler places each command so that no port of a half is asked twice in a cycle
        (``gen.compile``)."""
        if c.op == Op.DW:
            reads = self._dw_ports
        elif c.op in (Op.ADD, Op.ATTN_VK):
            reads = 2
        elif c.op == Op.POOL or c.follow or c.chunks == 1:  # the MAT engine alone
            reads = 1
        else:  # REDUCE, ATTN_Q: an odd tile split by pixels, or a tile pair over two groups
            reads = 2 if c.tiles % 2 or (c.group_cw and c.group_tiles % 2) else 1
        writes = 0 if c.op == Op.ATTN_VK or c.post == Post.INT32 else 1
        return reads, writes

    def dsps(self):
        """DSP48E2 slices of the core by unit (:func:`core_dsps`)."""
        return core_dsps(self._cfg)

    def engine_latency(self):
        """Latency of the engines with int32 outputs (both are the same: S = M, T = N)."""
        mat = MatEngine(**self.engine_params(self._cfg)["mat_engine"])
        mat._MustUse__silence = True  # built for its latency only
        return mat.latency

    # an entry reaches the post-processor two cycles after its engine gives it: into the queue (or
    # the R-MAC engine's register), then with its parameter word read
    ENTRY_LATENCY = 2

    def queue_depth(self):
        """Entries of the MAT engine's result queue: a block of results (``block_max``) and those
        still in the engine when the core stops issuing, as a power of two (LUT RAM)."""
        return 1 << (self._cfg.block_max + self.engine_latency() + 3).bit_length()

    def overhead(self, op, post=Post.REQUANT):
        """Cycles of a command beyond its beats: accept (1), read latency (1), the engine or unit
        pipeline, the result's entry (``ENTRY_LATENCY``), the post-processing (every mode
        ``PostProcessor.LATENCY``), the last write (1). A reduction's last results wait for the
        R-MAC engine's (``sim.dataflow.core_beats`` counts them)."""
        post_lat = 0 if post == Post.INT32 and op == Op.REDUCE else PostProcessor.LATENCY
        if op == Op.ADD:  # the residual adder's sums
            pipe = ResidualAdder.SUM_LATENCY
        elif op == Op.ATTN_VK:  # the last block: engine, hold, its M rows
            pipe = self.engine_latency() + 1 + self._cfg.m - 1
        else:  # REDUCE, ATTN_Q, POOL and DW (whose serializer's pixels are counted with its beats)
            pipe = self.engine_latency()
        return 2 + pipe + self.ENTRY_LATENCY + post_lat + 1

    def _depthwise(self, m, cmd, accept, running):
        """Depthwise command: blocks (channel word g, column block b, output row oy), oy innermost.

        A block is N channels x M output pixels of a row. Its input window (k rows x (M-1)*s + k
        columns) sits in the **window banks**: one small memory per window column (LUT RAM, 16
        rows), the window's rows at a rotating base. The next block's window is gathered into the
        rows after it from buffer B through the ``d_rd*`` ports (P words per cycle, P columns in P
        banks) while this block computes. Going down a column strip the next window starts s rows
        lower, so it shares its top k - s rows with this one and fetches s new rows; a strip's
        first block fetches all k (below this window's rows). A block is k*k beats of the R-MAC engine in
        self-accumulation mode, in the order of ``sim.schedule.depthwise_beats``: per kernel row,
        one load beat (M pixels) then shifts (one new pixel each); stride 2 loads the even kernel
        columns, then the odd ones. The next block starts when its window is in and this block's
        last beat is issued."""
        c = self._cfg
        M, P = c.m, self._dw_ports
        W = (c.m - 1) * 2 + max(DW_KERNELS)  # window columns of the largest kernel at s = 2
        d = unsigned(DIM_BITS)
        word = self._word
        # each bank row: a pixel's word and whether it is inside the input (outside: a zero pixel,
        # made by the window register's reset as the pixel is taken, not by a select on the fill)
        banks = [memory.Memory(shape=unsigned(word.size + 1), depth=16, init=[]) for _ in range(W)]
        for j, bank in enumerate(banks):
            m.submodules[f"dw_window_bank{j}"] = bank
        bank_w = [bank.write_port() for bank in banks]
        bank_r = [bank.read_port(domain="comb") for bank in banks]
        c_base, g_base = Signal(4, name="dw_window_base"), Signal(4, name="dw_gather_base")
        k, s = cmd.k, cmd.stride
        wwin = Signal(d, name="dw_wwin")
        m.d.comb += wwin.eq(_times_stride(M - 1, s) + k)
        wide = signed(2 * DIM_BITS + 2)

        # -- gather: block (g_g, g_b, g_oy) into the window banks at g_base ---------------------
        g_g, g_b, g_oy = (Signal(d, name=f"dw_gather_{n}") for n in ("g", "b", "oy"))
        g_row, g_col = Signal(3, name="dw_gather_row"), Signal(d, name="dw_gather_col")
        gathering, gathered, g_more = Signal(), Signal(), Signal()
        iy = Signal(wide, name="dw_gather_iy")
        m.d.comb += iy.eq(_times_stride(g_oy, s) + g_row - cmd.pad)
        row_in = cmd.halo | ((iy >= 0) & (iy < cmd.in_h))  # halo: every row from the buffer
        wr_valid = _delay(m, gathering, 1, "dw_wr_valid")
        wr_row = _delay(m, (g_base + g_row)[:4], 1, "dw_wr_row")  # physical row in the banks
        wr_col = _delay(m, g_col, 1, "dw_wr_col")
        values = []
        ix0 = Signal(wide, name="dw_gather_ix")
        m.d.comb += ix0.eq(_times_stride(g_b * M, s) + g_col - cmd.pad)
        # by increments: the words of the gathered row (iy * in_row) and column (ix0 * in_cw)
        ab, new = self._ab, self.cmd.payload
        row_w, col_w = Signal(ab, name="dw_gather_row_words"), Signal(ab, name="dw_gather_col_words")
        g_addr = Signal(ab, name="dw_gather_addr")  # port p reads p pixels further
        m.d.comb += g_addr.eq(cmd.in_base + row_w + col_w + g_g)
        for p in range(P):
            ix = ix0 + p
            inside = row_in & (ix >= 0) & (ix < cmd.in_w)
            port = getattr(self, f"d_rd{p}")
            m.d.comb += [port.addr.eq(g_addr + _times_const(cmd.in_cw, p)), port.en.eq(gathering)]
            wr_in = _delay(m, inside, 1, f"dw_wr_inside{p}")
            values.append(Cat(port.data.as_value(), wr_in))
        # bank j takes port p when wr_col + p == j; the gather column steps by P from 0, so that
        # port is always j mod P (no multiplexer) and the bank writes when wr_col == j - j mod P
        for j in range(W):
            m.d.comb += [bank_w[j].addr.eq(wr_row), bank_w[j].data.eq(values[j % P]),
                         bank_w[j].en.eq(wr_valid & (wr_col == j - j % P))]
        # the words of output row g_oy, of the band's first row, of column block g_b (input and
        # output), of channel word g_g's taps
        oy_in, band_in, gb_in, oy_out, band_out, gb_out, gw = (
            Signal(ab, name=f"dw_{n}_words") for n in ("oy_in", "band_in", "b_in", "oy_out", "band_out",
                                                        "b_out", "g_taps"))
        pad_row, pad_col = _times_small(cmd.in_row, cmd.pad), _times_small(cmd.in_cw, cmd.pad)
        g_last = gathering & (g_col + P >= wwin) & (g_row == k - 1)
        with m.If(gathering):
            with m.If(g_col + P >= wwin):
                m.d.sync += [g_col.eq(0), col_w.eq(gb_in - pad_col)]
                with m.If(g_row == k - 1):
                    m.d.sync += gathering.eq(0)
                with m.Else():
                    m.d.sync += [g_row.eq(g_row + 1), row_w.eq(row_w + cmd.in_row)]
            with m.Else():
                m.d.sync += [g_col.eq(g_col + P), col_w.eq(col_w + _times_const(cmd.in_cw, P))]
        with m.If(_delay(m, g_last, 1, "dw_gather_done")):
            m.d.sync += gathered.eq(1)

        # -- compute: block (c_g, c_b) from the window banks at c_base ---------------------------
        c_g, c_b = (Signal(d, name=f"dw_{n}") for n in ("g", "b"))
        dky, dt = Signal(3, name="dw_ky"), Signal(3, name="dw_t")
        computing = Signal(name="dw_computing")
        ne = (k + 1) >> 1
        kx = Mux(s == 1, dt, Mux(dt < ne, dt << 1, ((dt - ne) << 1) + 1))
        load = (dt == 0) | ((s == 2) & (dt == ne))
        beat_last = computing & (dky == k - 1) & (dt == k - 1)
        swap = gathered & (~computing | beat_last)
        with m.If(computing):
            with m.If(dt == k - 1):
                m.d.sync += dt.eq(0)
                with m.If(dky == k - 1):
                    m.d.sync += [dky.eq(0), computing.eq(0)]
                with m.Else():
                    m.d.sync += dky.eq(dky + 1)
            with m.Else():
                m.d.sync += dt.eq(dt + 1)
        # the block after (g_g, g_b, g_oy) in the order (band, channel word, column block, row)
        g_band = Signal(d, name="dw_gather_band")  # first output row of the band
        band_end = Signal(d, name="dw_band_end")
        m.d.comb += band_end.eq(Mux(g_band + cmd.band < cmd.out_h, g_band + cmd.band, cmd.out_h))
        more_oy, more_b, more_g = g_oy + 1 < band_end, g_b + 1 < cmd.blocks, g_g + 1 < cmd.in_cw
        n_oy = Mux(more_oy, g_oy + 1, Mux(more_b | more_g, g_band, band_end))
        n_b = Mux(more_oy, g_b, Mux(more_b, g_b + 1, 0))
        n_g = Mux(more_oy | more_b, g_g, Mux(more_g, g_g + 1, 0))
        n_band = Mux(more_oy | more_b | more_g, g_band, band_end)
        n_more = more_oy | more_b | more_g | (band_end < cmd.out_h)
        new_band = ~(more_oy | more_b | more_g)  # n_oy = band_end = g_oy + 1
        s_in_row = _times_stride(cmd.in_row, s)
        n_oy_in = Mux(more_oy | new_band, oy_in + s_in_row, band_in)
        n_oy_out = Mux(more_oy | new_band, oy_out + cmd.out_row, band_out)
        n_gb_in = Mux(more_oy, gb_in, Mux(more_b, gb_in + _times_const(_times_stride(cmd.in_cw, s), M), 0))
        n_gb_out = Mux(more_oy, gb_out, Mux(more_b, gb_out + _times_const(cmd.out_cw, M), 0))
        taps = Mux(k == 5, 25, Mux(k == 3, 9, 1))
        c_out, c_w = Signal(ab, name="dw_out_words"), Signal(ab, name="dw_tap_words")
        with m.If(accept):
            m.d.sync += [g_g.eq(0), g_b.eq(0), g_oy.eq(0), g_band.eq(0), g_row.eq(0), g_col.eq(0),
                         gathered.eq(0), g_base.eq(0),
                         computing.eq(0), dky.eq(0), dt.eq(0), gathering.eq(1), g_more.eq(1),
                         oy_in.eq(0), band_in.eq(0), gb_in.eq(0), oy_out.eq(0), band_out.eq(0), gb_out.eq(0),
                         gw.eq(0), row_w.eq(-_times_small(new.in_row, new.pad)),
                         col_w.eq(-_times_small(new.in_cw, new.pad))]
        with m.Elif(running & swap & g_more):
            m.d.sync += [c_g.eq(g_g), c_b.eq(g_b), computing.eq(1), dky.eq(0), dt.eq(0),
                         gathered.eq(0), c_base.eq(g_base), c_out.eq(cmd.out_base + oy_out + gb_out + g_g),
                         c_w.eq(gw)]
            with m.If(n_more):  # a column strip of a band starts with a whole window (below this one)
                strip = n_oy == n_band
                r0 = Mux(strip, 0, k - s)
                m.d.sync += [g_g.eq(n_g), g_b.eq(n_b), g_oy.eq(n_oy), g_band.eq(n_band), gathering.eq(1),
                             g_col.eq(0), g_row.eq(r0),
                             g_base.eq((g_base + Mux(strip, k, s))[:4]),
                             oy_in.eq(n_oy_in), oy_out.eq(n_oy_out), gb_in.eq(n_gb_in), gb_out.eq(n_gb_out),
                             row_w.eq(n_oy_in + _times_small(cmd.in_row, r0) - pad_row),
                             col_w.eq(n_gb_in - pad_col),
                             gw.eq(Mux(more_oy | more_b, gw, Mux(more_g, gw + taps, 0)))]
                with m.If(new_band):
                    m.d.sync += [band_in.eq(n_oy_in), band_out.eq(n_oy_out)]
            with m.Else():
                m.d.sync += g_more.eq(0)

        # -- the beat: window words registered with the weight read ------------------------------
        # A load beat (kx = 0, or kx = 1 for the odd columns at stride 2) takes the M pixels at
        # columns m*s + kx; a shift beat only the one entering pixel (x[0]) at kx + (M-1)*s.
        for bank in bank_r:
            m.d.comb += bank.addr.eq((c_base + dky)[:4])
        col = [data.View(word, bank.data[:word.size]) for bank in bank_r]  # row dky of each window column
        inside = [bank.data[word.size] for bank in bank_r]
        x1 = Signal(data.ArrayLayout(word, M), name="dw_x")
        # the entering pixel of a shift beat: column kx + (M-1)*s, kx < 5 (two 5-way selections,
        # not one over every column)
        def pick(cols):
            entering = Mux(s == 1, Array(cols[M - 1:M + 4])[kx], Array(cols[2 * M - 2:2 * M + 3])[kx])
            out = []
            for mm in range(M):
                load_word = Mux(s == 1, cols[mm], Mux(kx[0], cols[2 * mm + 1], cols[2 * mm]))
                out.append(Mux(load, load_word, entering) if mm == 0 else load_word)
            return out

        for mm, (word_in, pixel_in) in enumerate(zip(pick(col), pick(inside), strict=True)):
            with m.If(pixel_in):
                m.d.sync += x1[mm].eq(word_in)
            with m.Else():
                m.d.sync += x1[mm].eq(0)
        last_block = beat_last & ~g_more & ~gathered & ~gathering
        count = Signal(range(M + 1), name="dw_count")
        left = cmd.out_w - c_b * M
        m.d.comb += count.eq(Mux(left >= M, M, left))
        return {
            "valid": _delay(m, computing, 1, "dw_valid"), "load": _delay(m, load, 1, "dw_load"),
            "first": _delay(m, (dky == 0) & (dt == 0), 1, "dw_first"),
            "last": _delay(m, (dky == k - 1) & (dt == k - 1), 1, "dw_last"),
            "x": x1.as_value(),
            "w_addr": cmd.w_base + c_w + _times_small(k, dky) + kx, "q_index": c_g,
            "issue_last": beat_last, "count": count, "addr0": c_out,
            "final": running & last_block,
            "busy": computing | gathering | gathered,
        }

    def _relu(self, m, word, name):
        """max(x, 0) on every lane of a buffer word (ReLU of q and k)."""
        out = Signal(self._word, name=name)
        for t in range(self._cfg.t):
            m.d.comb += out[t].eq(Mux(word[t] < 0, 0, word[t]))
        return out.as_value()

    def _vk(self, m, cmd, accept, running, is_vk):
        """ATTN_VK for one head: blocks (i word ib, j word jb) of vk = v . ReLU(k)^T, each a sum over
        the tokens of outer products v[i0..i0+M) x ReLU(k)[j0..j0+N) on the R-MAC engine in
        self-accumulation mode (a load every beat: one token per beat). While the first row of
        blocks (ib = 0) streams k, the MAT engine sums ReLU(k) over the tokens. The head's q, k
        and v are words 0, cwg and 2*cwg of its group in every pixel."""
        d = unsigned(DIM_BITS)
        ib, jb, n = (Signal(d, name=f"vk_{x}") for x in ("ib", "jb", "n"))
        # by increments: row = in_base + n * in_cw, w_row = w_base + (ib + 1) * cwg
        row, w_row = Signal(self._ab, name="vk_row"), Signal(self._ab, name="vk_w_row")
        issue = running & is_vk
        last_n = n == cmd.pixels - 1
        last_j, last_i = jb == cmd.cwg - 1, ib == cmd.cwg - 1
        new = self.cmd.payload
        with m.If(accept):
            m.d.sync += [ib.eq(0), jb.eq(0), n.eq(0), row.eq(new.in_base), w_row.eq(new.w_base + new.cwg)]
        with m.Elif(issue):
            with m.If(~last_n):
                m.d.sync += [n.eq(n + 1), row.eq(row + cmd.in_cw)]
            with m.Else():
                m.d.sync += [n.eq(0), row.eq(cmd.in_base)]
                with m.If(~last_j):
                    m.d.sync += jb.eq(jb + 1)
                with m.Else():
                    m.d.sync += [jb.eq(0), ib.eq(ib + 1), w_row.eq(w_row + cmd.cwg)]
        return {
            "k_addr": row + cmd.cwg + jb, "v_addr": row + 2 * cmd.cwg + ib,
            "read": issue, "valid": _delay(m, issue, 1, "vk_valid"),
            "first": _delay(m, n == 0, 1, "vk_first"),
            "last": _delay(m, last_n, 1, "vk_last"), "sum_k": _delay(m, ib == 0, 1, "vk_sum_k"),
            "w_addr": w_row + jb, "ks_addr": cmd.w_base + jb,
            "final": issue & last_n & last_j & last_i,
            "produced": Mux(issue & last_n, 1 + (ib == 0), 0),
        }

    def _serialize(self, m, rmac, dw, q_index, lat, is_dw, out_cw):
        """The R-MAC engine's M x N psums of a depthwise block -> M output pixels, one per cycle,
        with the block's addresses (the tag waits out the engine). ``q_index``: the parameter
        word of the block leaving the engine (its tag, one cycle before the psums); the returned
        ``q_index`` keeps addressing it while the block's pixels leave, so the parameter port
        reads it again each cycle instead of a register holding the whole word."""
        c = self._cfg
        M, N = c.m, c.n
        addr0 = _delay(m, dw["addr0"], 1 + lat, "dw_tag_addr")
        count = _delay(m, dw["count"], 1 + lat, "dw_tag_count")
        hold = Signal(rmac.o.payload.acc.shape(), name="dw_hold")
        h_addr, h_count = Signal(self._ab, name="dw_hold_addr"), Signal(range(M + 1), name="dw_hold_count")
        h_index = Signal.like(q_index, name="dw_hold_q_index")
        busy, idx = Signal(name="dw_ser_busy"), Signal(range(M), name="dw_ser_m")
        load = rmac.o.valid & is_dw
        with m.If(load):
            m.d.sync += [hold.eq(rmac.o.payload.acc), h_addr.eq(addr0), h_count.eq(count),
                         h_index.eq(q_index), busy.eq(1), idx.eq(0)]
        with m.Elif(busy):
            with m.If(idx == M - 1):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [idx.eq(idx + 1), h_addr.eq(h_addr + out_cw)]  # the next pixel's word
        rows = Array([hold[j] for j in range(M)])
        return {"valid": busy & (idx < h_count), "addr": h_addr, "idx": idx,
                "q_index": Mux(load, q_index, h_index), "acc": [rows[idx][n] for n in range(N)]}

    @staticmethod
    def engine_params(config):
        """{"mat_engine", "rmac_engine": constructor arguments} of the core's engines: the
        stand-alone ones' (``unit_params``) with raw psums (one post-processor after both) and
        ``block_max`` psums per lane (weight reuse); both on multiply-accumulate DSP48E2 slices
        (``dsp_macs``: no fabric adder trees; the R-MAC engine's self-accumulations from 0, the
        bias added after, in psums as wide as the core's sums: ``sa_bits``)."""
        params = config.unit_params()
        reuse = {"requantize": False, "block": config.block_max}  # psums of a block's pixels per lane
        return {"mat_engine": {**params["mat_engine"], **reuse, "dsp_macs": True},
                "rmac_engine": {**params["rmac_engine"], **reuse, "sa_bits": config.sa_bits,
                                "dsp_macs": True}}

    def elaborate(self, platform):
        m = Module()
        c = self._cfg
        S = c.s
        params = c.unit_params()
        engines = self.engine_params(c)
        mat = m.submodules.mat = MatEngine(**engines["mat_engine"])
        rmac = m.submodules.rmac = RMacEngine(**engines["rmac_engine"])
        # one post-processor for both engines (requantizer, Hardswish and attention output in one),
        # every mode leaving after the same cycles: a depthwise command's and a pointwise
        # command's results of different modes share it
        pp = m.submodules.post_processor = PostProcessor(**params["post_processor"], same_latency=True)
        # the residual adder's exact sums, rounded by the post-processor (requantize(sum, 1, c))
        adder = ResidualAdder(**{**params["residual_adder"], "requantize": False})
        m.submodules.residual_adder = adder

        # -- command register and state ---------------------------------------------------------
        # Two command registers: ``dcmd`` for a depthwise command (the R-MAC engine's), ``cmd`` for
        # every other. A REDUCE with ``follow`` runs on the MAT engine while a depthwise command
        # runs (the DW -> PW band pipeline); any other command waits until the core is idle.
        layout = command_layout(self._ab)
        cmd, dcmd = Signal(layout, name="cmd"), Signal(layout, name="dcmd")
        running, finishing = Signal(), Signal()  # issuing beats / waiting for the last writes
        d_running, d_finishing = Signal(), Signal()  # the same for the depthwise command
        main_idle, dw_idle = ~running & ~finishing, ~d_running & ~d_finishing
        dw_on = ~dw_idle  # the R-MAC engine and its post-processing belong to the depthwise command
        new = self.cmd.payload
        m.d.comb += [self.cmd.ready.eq(main_idle & ((new.op == Op.REDUCE) & new.follow | dw_idle)),
                     self.busy.eq(~main_idle | ~dw_idle)]
        accept = self.cmd.valid & self.cmd.ready
        d_accept = accept & (new.op == Op.DW)
        m_accept = accept & (new.op != Op.DW)
        # what the main command is, while it runs or finishes: once it is done its register keeps
        # the old op, which must not select the post-processing of a depthwise command after it
        main_on = ~main_idle
        is_q, is_vk = main_on & (cmd.op == Op.ATTN_Q), main_on & (cmd.op == Op.ATTN_VK)
        is_reduce = main_on & (cmd.op == Op.REDUCE) | is_q  # ATTN_Q walks a reduction's loops
        is_add, is_pool = main_on & (cmd.op == Op.ADD), main_on & (cmd.op == Op.POOL)
        follow = cmd.follow & (cmd.op == Op.REDUCE)  # all tiles on the MAT engine, gated by the DW
        # the MAT engine alone: a follow, or one chunk per pixel (both engines would bring two
        # results every cycle to the one post-processor)
        solo = follow | (cmd.chunks == 1)

        # -- loop counters ----------------------------------------------------------------------
        d = unsigned(DIM_BITS)
        pair, cc, kx, ky, ch = (Signal(d, name=n) for n in ("pair", "cc", "kx", "ky", "ch"))
        sl, bj = Signal(d, name="slot"), Signal(d, name="block")  # pixel in the block, block index
        # current pixel of each engine, and the first pixel of its block (revisited every chunk)
        pix, py, px = ([Signal(d, name=f"{n}{e}") for e in range(2)] for n in ("pix", "py", "px"))
        bpix, bpy, bpx = ([Signal(d, name=f"block_{n}{e}") for e in range(2)] for n in ("pix", "py", "px"))
        pairs = Mux(solo, cmd.tiles, (cmd.tiles + 1) >> 1)  # solo: one tile per "pair", MAT only
        odd_last = cmd.tiles[0] & (pair == pairs - 1) & is_reduce & ~solo
        # follow walks its pixels in segments of band_pixels (the depthwise bands), all tiles of a
        # segment before the next; every other reduction is one segment
        seg_start, seg_py = Signal(d, name="segment_pix"), Signal(d, name="segment_y")
        seg_end = Signal(d, name="segment_end")
        m.d.comb += seg_end.eq(Mux(follow & (seg_start + cmd.band_pixels < cmd.pixels),
                                   seg_start + cmd.band_pixels, Mux(odd_last, cmd.split, cmd.pixels)))
        last_seg = ~follow | (seg_end == cmd.pixels)
        # element-wise ops: ADD walks (pixel, word), POOL walks (word, pixel); both use pix0 and cc
        cc_last = cc == Mux(is_reduce, cmd.cwg, cmd.in_cw) - 1
        kx_last, ky_last = kx == cmd.k - 1, ky == cmd.k - 1
        ch_last = Mux(is_reduce, cc_last & kx_last & ky_last, cc_last)
        pix_last = pix[0] == seg_end - 1
        pair_last = pair == pairs - 1
        # pixel blocks: this block's size and beats (a short block still takes min_beats)
        size = Signal(d, name="block_size")
        other = odd_last | (follow & last_seg)  # the split odd tile's blocks, or the last segment's
        m.d.comb += size.eq(Mux(other, Mux(bj < cmd.obig, cmd.oblock, cmd.oblock - 1),
                                Mux(bj < cmd.pbig, cmd.pblock, cmd.pblock - 1)))
        span = Mux(size > cmd.min_beats, size, cmd.min_beats)
        slot_real = sl < size
        sl_last = sl == span - 1

        # Per engine the pixel state: index, row, column, and by increments (no multipliers) the
        # word offsets of its input pixel (ip = (py*s*in_w + px*s)*in_cw), of that input row
        # (ir) and of its output pixel (op = pix*out_cw); the same at the block's start and at
        # the segment's start (follow).
        ab = self._ab
        ip, ir, op = ([Signal(ab, name=f"{n}{e}") for e in range(2)] for n in ("in_pix", "in_row", "out_pix"))
        bip, bir, bop = ([Signal(ab, name=f"block_{n}{e}") for e in range(2)]
                         for n in ("in_pix", "in_row", "out_pix"))
        seg_ip, seg_ir, seg_op = (Signal(ab, name=f"segment_{n}") for n in ("in_pix", "in_row", "out_pix"))
        state = [(pix[e], py[e], px[e], ip[e], ir[e], op[e]) for e in range(2)]
        block = [(bpix[e], bpy[e], bpx[e], bip[e], bir[e], bop[e]) for e in range(2)]
        seg_state = (seg_start, seg_py, None, seg_ip, seg_ir, seg_op)

        def set_pixels(values, block_too, seg_too=False):
            """Both engines' pixel state (and block start) <- ``values`` (per engine a tuple as
            ``state``); with ``seg_too`` the segment's start <- engine 0's."""
            out = []
            for e, vals in enumerate(values):
                out += [r.eq(v) for r, v in zip(state[e], vals, strict=True)]
                if block_too:
                    out += [r.eq(v) for r, v in zip(block[e], vals, strict=True)]
            if seg_too:
                out += [r.eq(v) for r, v in zip(seg_state, values[0], strict=True) if r is not None]
            return out

        def start_pixels(next_pair_odd, c=cmd, at_zero=False):
            """Both engines' first pixel of a tile pair: the segment's first, the R-MAC engine's at
            ``split`` of command ``c`` for an odd last tile (``at_zero``: a new command)."""
            seg = (0, 0, 0, 0, 0, 0) if at_zero else (seg_start, seg_py, 0, seg_ip, seg_ir, seg_op)
            split = (c.split, c.split_y, c.split_x, c.split_iw, c.split_irow, c.split_ow)
            return set_pixels([seg, tuple(Mux(next_pair_odd, a, b) for a, b in zip(split, seg, strict=True))],
                              True) + [bj.eq(0)]

        def next_pixel(block_too=False, seg_too=False):
            values = []
            row_step, col_step = _times_stride(cmd.in_row, cmd.stride), _times_stride(cmd.in_cw, cmd.stride)
            for e in range(2):
                wrap = px[e] == cmd.out_w - 1
                values.append((pix[e] + 1, Mux(wrap, py[e] + 1, py[e]), Mux(wrap, 0, px[e] + 1),
                               Mux(wrap, ir[e] + row_step, ip[e] + col_step),
                               Mux(wrap, ir[e] + row_step, ir[e]),
                               op[e] + cmd.out_cw))
            return set_pixels(values, block_too, seg_too)

        block_start = set_pixels(block, False)

        # groups: tile 2*pair = group_a * group_tiles + tile_in_a (counters, no divider); by
        # increments (no multipliers) the input words of group_a (ga = group_a * group_cw) and of
        # tile 0's group with one tile per group (gt = tile0 * group_cw), tile 0's weights
        # (wt = w_base + tile0 * chunks)
        group_a, in_a = Signal(d, name="group_a"), Signal(d, name="tile_in_group_a")
        one_per_group = cmd.group_tiles == 1
        b_wraps = in_a + 1 >= cmd.group_tiles
        ga, gt = Signal(ab, name="group_a_words"), Signal(ab, name="tile_group_words")
        wt = Signal(ab, name="tile_weights")
        gcw = cmd.group_cw

        def groups_start(w_base):
            return [group_a.eq(0), in_a.eq(0), ga.eq(0), gt.eq(0), wt.eq(w_base)]

        # the tap's word offset from the pixel's: ((ky - pad)*in_w + kx - pad)*in_cw, by increments
        toff, trow = Signal(ab, name="tap_words"), Signal(ab, name="tap_row_words")

        def tap_start(c):
            return -_times_small(c.in_row + c.in_cw, c.pad)
        # follow: a pixel waits until the depthwise command has written its whole band
        ready_px = Signal(d, name="dw_ready_pixels")
        issue = Signal()  # one beat per cycle while running (the datapath never stalls)
        queue_room = Signal()  # the MAT engine's results can wait (see the result queue)
        m.d.comb += issue.eq(running & ~is_vk & queue_room & (~follow | dw_idle | (pix[0] < ready_px)))
        with m.If(m_accept):
            m.d.sync += [cmd.eq(new), running.eq(1), pair.eq(0), cc.eq(0), kx.eq(0),
                         ky.eq(0), ch.eq(0), sl.eq(0), toff.eq(tap_start(new)), trow.eq(tap_start(new))]
            m.d.sync += set_pixels([(0, 0, 0, 0, 0, 0)] * 2, False, True) + groups_start(new.w_base)
            single = (new.tiles == 1) & (new.op == Op.REDUCE) & ~new.follow & (new.chunks != 1)
            m.d.sync += start_pixels(single, new, True)
        with m.Elif(issue & is_pool):  # word outer, pixel inner
            with m.If(~pix_last):
                m.d.sync += next_pixel()
            with m.Else():
                m.d.sync += start_pixels(0)
                with m.If(cc_last):
                    m.d.sync += running.eq(0)
                with m.Else():
                    m.d.sync += cc.eq(cc + 1)
        with m.Elif(issue & is_add):  # pixel outer, word inner
            with m.If(~cc_last):
                m.d.sync += cc.eq(cc + 1)
            with m.Else():
                m.d.sync += cc.eq(0)
                with m.If(~pix_last):
                    m.d.sync += next_pixel()
                with m.Else():
                    m.d.sync += running.eq(0)
        with m.Elif(issue & is_reduce):  # tile pair, pixel block, tap row, tap column, word, pixel
            with m.If(ch_last & pix_last & pair_last & last_seg & slot_real):  # last pixel: no pad after it
                m.d.sync += running.eq(0)
            with m.Elif(~sl_last):
                m.d.sync += sl.eq(sl + 1)
                with m.If(sl + 1 < size):
                    m.d.sync += next_pixel()
            with m.Else():
                m.d.sync += sl.eq(0)
                with m.If(~cc_last):
                    m.d.sync += [cc.eq(cc + 1), ch.eq(ch + 1)] + block_start
                with m.Elif(~kx_last):
                    m.d.sync += [cc.eq(0), kx.eq(kx + 1), ch.eq(ch + 1),
                                 toff.eq(toff + cmd.in_cw)] + block_start
                with m.Elif(~ky_last):
                    m.d.sync += [cc.eq(0), kx.eq(0), ky.eq(ky + 1), ch.eq(ch + 1), trow.eq(trow + cmd.in_row),
                                 toff.eq(trow + cmd.in_row)] + block_start
                with m.Else():
                    m.d.sync += [cc.eq(0), kx.eq(0), ky.eq(0), ch.eq(0), toff.eq(tap_start(cmd)),
                                 trow.eq(tap_start(cmd))]
                    with m.If(~pix_last):
                        m.d.sync += next_pixel(True) + [bj.eq(bj + 1)]
                    with m.Elif(~pair_last):  # next pair: tile + 2 (solo: + 1)
                        next_odd = cmd.tiles[0] & (pair + 1 == pairs - 1) & ~solo
                        m.d.sync += [pair.eq(pair + 1)] + start_pixels(next_odd)
                        step = Mux(solo, 1, 2)
                        m.d.sync += [gt.eq(gt + Mux(solo, gcw, gcw << 1)),
                                     wt.eq(wt + Mux(solo, cmd.chunks, cmd.chunks << 1))]
                        with m.If(in_a + step >= cmd.group_tiles):
                            m.d.sync += [group_a.eq(group_a + 1), in_a.eq(in_a + step - cmd.group_tiles),
                                         ga.eq(ga + gcw)]
                        with m.Else():
                            m.d.sync += in_a.eq(in_a + step)
                    with m.Else():  # follow: the next segment starts at the pixel after this one
                        m.d.sync += [pair.eq(0), bj.eq(0)] + next_pixel(True, True) + groups_start(cmd.w_base)

        goff = [Mux(one_per_group, gt, ga),
                Mux(odd_last, Mux(one_per_group, gt, ga),
                    Mux(one_per_group, gt + gcw, Mux(b_wraps, ga + gcw, ga)))]
        tile_w = [wt, Mux(odd_last, wt, wt + cmd.chunks)]

        dw = self._depthwise(m, dcmd, d_accept, d_running)
        vk = self._vk(m, cmd, m_accept, running, is_vk)
        with m.If(vk["final"]):
            m.d.sync += running.eq(0)
        with m.If(d_accept):
            m.d.sync += [dcmd.eq(new), d_running.eq(1)]
        with m.Elif(dw["final"]):
            m.d.sync += d_running.eq(0)
        is_dw = dw_on

        # -- addresses of this cycle's beat (engine e) ----------------------------------------
        wide = signed(2 * DIM_BITS + 2)
        tile = [Mux(solo, pair, pair << 1), Mux(odd_last, pair << 1, (pair << 1) | 1)]
        valid = [issue & (slot_real | ~is_reduce),
                 issue & is_reduce & slot_real & ~solo & (~odd_last | (pix[1] < cmd.pixels))]
        inb, b_addr, out_addr = [], [], []
        for e in range(2):
            iy = Signal(wide, name=f"iy{e}")
            ix = Signal(wide, name=f"ix{e}")
            m.d.comb += [iy.eq(_times_stride(py[e], cmd.stride) + ky - cmd.pad),
                         ix.eq(_times_stride(px[e], cmd.stride) + kx - cmd.pad)]
            inside = Signal(name=f"inside{e}")
            m.d.comb += inside.eq((cmd.halo | ((iy >= 0) & (iy < cmd.in_h))) & (ix >= 0) & (ix < cmd.in_w))
            addr = Signal(self._ab, name=f"b_addr{e}")
            m.d.comb += addr.eq(cmd.in_base + ip[e] + toff + goff[e] + cc)
            inb.append(inside)
            b_addr.append(addr)
            oaddr = Signal(self._ab, name=f"out_addr{e}")
            m.d.comb += oaddr.eq(Mux(is_pool, cmd.out_base + cc,
                                     cmd.out_base + op[e] + Mux(is_reduce, tile[e], cc)))
            out_addr.append(oaddr)
        # B is read only for a beat that needs the word (buffer B's ports are shared with the DMA:
        # ``CoreSlice``): engine 0's inside the input (padding is a zero, not a read), engine 1's
        # (an add's second addend) -- but for a word engine 0 reads too (a reduction's tile pair on
        # the same input word), which engine 1 takes from port 0 instead
        need = [valid[0] & (inb[0] | ~is_reduce), (valid[1] & inb[1]) | (valid[0] & is_add)]
        same = Signal(name="b_rd1_same")
        m.d.comb += same.eq(need[0] & need[1] & ~is_add & (b_addr[0] == b_addr[1]))
        m.d.comb += [
            self.b_rd0.addr.eq(Mux(is_vk, vk["k_addr"], b_addr[0])),
            self.b_rd0.en.eq(Mux(is_vk, vk["read"], need[0])),
            self.b_rd1.addr.eq(Mux(is_vk, vk["v_addr"],
                                   Mux(is_add, b_addr[0] - cmd.in_base + cmd.in2_base, b_addr[1]))),
            self.b_rd1.en.eq(Mux(is_vk, vk["read"], need[1] & ~same)),
        ]
        bdata = [self.b_rd0.data, data.View(self._word, Mux(_delay(m, same, 1, "b_rd1_same_q"),
                                                            self.b_rd0.data, self.b_rd1.data))]
        w_addr = [tile_w[e] + ch for e in range(2)]
        w_addr[1] = Mux(is_dw, dw["w_addr"], w_addr[1])
        # weight reuse: a reduction reads its chunk on the block's first beat and holds it; w_rd0
        # reads on no other cycle (the weight buffer's host writes take its port then:
        # ``CoreSlice(shared_w=)``), w_rd1 also on every beat of a depthwise command
        first_beat = issue & (sl == 0)
        m.d.comb += [self.w_rd0.addr.eq(w_addr[0]), self.w_rd0.en.eq(is_reduce & first_beat),
                     self.w_rd1.addr.eq(w_addr[1]), self.w_rd1.en.eq(~is_reduce | is_dw | first_beat)]

        # -- stage 1: read data arrives; beats to the engines and units ------------------------
        first = Mux(is_pool, pix[0] == 0, ch == 0)
        last = Mux(is_pool, pix_last, ch_last)
        v1 = [_delay(m, valid[e], 1, f"valid{e}") for e in range(2)]
        in1 = [_delay(m, inb[e] | ~is_reduce, 1, f"inside{e}") for e in range(2)]
        first1, last1 = _delay(m, first, 1, "first"), _delay(m, last, 1, "last")
        oaddr1 = [_delay(m, out_addr[e], 1, f"oaddr{e}") for e in range(2)]
        relu = [self._relu(m, bdata[e], f"relu{e}") for e in range(2)]
        a_in = [Mux(in1[e], Mux(is_q | is_vk, relu[e], bdata[e].as_value()), 0) for e in range(2)]

        # the weight words: buffer C's, or the aux buffer's where the address had ``aux_bit``
        w_in = [rd.data.as_value() for rd in (self.w_rd0, self.w_rd1)]
        from_aux = [Const(0), Const(0)]
        if self._aux_bit is not None:
            for e, rd in enumerate((self.w_rd0, self.w_rd1)):
                from_aux[e] = Signal(name=f"w_from_aux{e}")
                with m.If(rd.en):  # the data follow the address a cycle later (or are held)
                    m.d.sync += from_aux[e].eq(rd.addr[self._aux_bit])
            w_in[0] = Mux(from_aux[0], self.w_aux0.as_value(), w_in[0])
        # sums over pixels (the pool) or tokens (sum k beside the vk outer products) on the MAT
        # engine: identity weights, lane s takes channel s (with the aux choice, one LUT per bit)
        sums = is_pool | is_vk
        identity = Const(sum(1 << (8 * (s * c.t + s)) for s in range(S)), S * c.t * 8)
        w_in[0] = Mux(sums, identity, w_in[0])
        if c.block_max > 1:
            slot1 = _delay(m, sl, 1, "slot")
            m.d.comb += [mat.i.payload.slot.eq(slot1), rmac.i.payload.slot.eq(slot1)]
        m.d.comb += [mat.i.valid.eq((v1[0] & (is_reduce | is_pool)) | (vk["valid"] & vk["sum_k"])),
                     mat.i.payload.a.eq(a_in[0]), mat.i.payload.w.eq(w_in[0]),
                     mat.i.payload.first.eq(Mux(is_vk, vk["first"], first1)),
                     mat.i.payload.last.eq(Mux(is_vk, vk["last"], last1)), mat.o.ready.eq(1)]
        # vk outer products: x[m][n] = v[m] (every n), y[n] = ReLU(k)[n], a load every beat
        v_bcast = Cat(*[self.b_rd1.data[mm] for mm in range(c.m) for _ in range(c.n)])
        # x: the depthwise window, the broadcast v, the aux word or buffer C's, on two selects
        # decoded once (one 4:1 multiplexer per bit: six inputs, one LUT)
        x_hi, x_lo = Signal(name="x_sel_hi"), Signal(name="x_sel_lo")
        m.d.comb += [x_hi.eq(is_dw | is_vk), x_lo.eq(Mux(x_hi, is_dw, from_aux[1]))]
        aux1 = self.w_aux1.as_value() if self._aux_bit is not None else w_in[1]
        x_in = Mux(x_hi, Mux(x_lo, dw["x"], v_bcast), Mux(x_lo, aux1, w_in[1]))
        m.d.comb += [rmac.i.valid.eq(Mux(is_dw, dw["valid"], Mux(is_vk, vk["valid"], v1[1]))),
                     rmac.i.payload.mode.eq(Mux(is_dw | is_vk, SELF_ACCUMULATION, DOWN_FORWARD)),
                     rmac.i.payload.load.eq((is_dw & dw["load"]) | is_vk),
                     rmac.i.payload.y.eq(Mux(is_dw, self.w_rd1.data[0].as_value(),
                                             Mux(is_vk, relu[0], a_in[1]))),
                     rmac.i.payload.x.eq(x_in),
                     rmac.i.payload.first.eq(Mux(is_dw, dw["first"], Mux(is_vk, vk["first"], first1))),
                     rmac.i.payload.last.eq(Mux(is_dw, dw["last"], Mux(is_vk, vk["last"], last1))),
                     rmac.o.ready.eq(1)]

        # residual add inputs
        m.d.comb += [adder.i.valid.eq(v1[0] & is_add), adder.i.payload.a.eq(self.b_rd0.data),
                     adder.i.payload.b.eq(self.b_rd1.data),
                     adder.i.payload.mult_a.eq(self.q_rd0.data.add.mult_a),
                     adder.i.payload.mult_b.eq(self.q_rd0.data.add.mult_b),
                     adder.i.payload.shift.eq(self.q_rd0.data.add.shift), adder.o.ready.eq(1)]

        # -- results: one post-processor for both engines ---------------------------------------
        # A result leaves its engine (or the R-MAC engine's serializer, or the residual adder) as an
        # entry: its accumulators, where it goes, its parameter word, how it is scaled. The R-MAC
        # engine's side (its reduction results, the depthwise pixels, the vk rows) enters the
        # post-processor a cycle later; the MAT engine's side (its results, the pool's and sum k's
        # sums) waits in a queue (LUT RAM) for a cycle the other leaves free. A reduction's engines
        # finish a block's pixels together, and the next block's first chunk pass leaves the
        # post-processor to the queue (one chunk per pixel: the MAT engine alone, ``solo``); the
        # depthwise pixels are never delayed, so the bands are written when the model says.
        # Parameters are read as an entry enters (one cycle ahead), the bias added there.
        lat = mat.latency
        E = _Entry
        # the MAT engine's side has no vk rows and no depthwise pixels: the queue holds the fields
        # before ``row`` (a signal with bits that are always 0 would leave them undriven in the
        # emitted Verilog)
        common = {"acc": self._acc, "addr": unsigned(self._ab), "q": unsigned(self._ab),
                  "token": range(c.attention_tokens), "mode": unsigned(2), "scale": unsigned(3),
                  "dest": unsigned(2), "bias": unsigned(1)}
        queued = data.StructLayout(common)
        entry = data.StructLayout({**common, "row": range(c.m), "dw": unsigned(1),
                                   "shift": data.ArrayLayout(unsigned(c.shift_bits), c.s)})  # an add's
        S = c.s
        plain = ~is_q & ~is_vk  # requantized, Hardswish or int32 results (not the attention's)
        tile0 = [_delay(m, is_q & (tile[e] == 0), 1 + lat, f"q_tile0_{e}") for e in range(2)]
        tpix = [_delay(m, pix[e], 1 + lat, f"q_pix{e}") for e in range(2)]
        taddr = [_delay(m, oaddr1[e], lat, f"tag_addr{e}") for e in range(2)]
        qtag = [_delay(m, Mux(is_reduce, tile[0], cc), 1 + lat, "q_tag0"),
                _delay(m, Mux(is_dw, dw["q_index"], tile[1]), 1 + lat, "q_tag1")]
        # attention (ATTN_Q): the divisor tile (tile 0, the MAT engine in pair 0) writes its raw
        # int32 divisors to the divisor buffer, read back by token as a numerator enters
        div = memory.Memory(shape=unsigned(c.acc_bits), depth=c.attention_tokens, init=[])
        m.submodules.divisor_buffer = div
        div_w, div_r = div.write_port(), div.read_port()
        m.d.comb += [div_w.en.eq(mat.o.valid & tile0[0]), div_w.addr.eq(tpix[0]),
                     div_w.data.eq(mat.o.payload.acc[0])]

        def reduction_entry(ent, e, post, acc):
            """A reduction's or ATTN_Q's result of engine ``e``: int32 (with bias), requantized,
            Hardswish or the attention's numerator."""
            hswish = plain & (post == Post.HSWISH)
            return [ent.acc.eq(acc), ent.addr.eq(taddr[e]), ent.q.eq(cmd.q_base + qtag[e]),
                    ent.token.eq(tpix[e]), ent.bias.eq(cmd.op == Op.REDUCE),
                    ent.mode.eq(Mux(is_q, PostMode.ATTN, Mux(hswish, PostMode.HSWISH, PostMode.REQUANT))),
                    ent.scale.eq(Mux(is_q, E.NUM, Mux(hswish, E.HSWISH, E.CHANNEL))),
                    ent.dest.eq(Mux(plain & (post == Post.INT32), E.TO_O, E.TO_B))]

        # the MAT engine's side: its results, or the pool's sums and sum k (requantized, one scale)
        a, a_valid = Signal(queued, name="mat_entry"), Signal(name="mat_entry_valid")
        # the pool's sums leave at its output word's tag (taddr, as the reductions'), sum k's at its
        # chunk word, delayed as the engine delays them
        ks_addr = _delay(m, vk["ks_addr"], 1 + lat, "ks_addr")
        m.d.comb += [a_valid.eq(mat.o.valid & ~tile0[0]), a.acc.eq(mat.o.payload.acc)]
        with m.If(sums):
            m.d.comb += [a.addr.eq(Mux(is_vk, ks_addr, taddr[0])), a.mode.eq(PostMode.REQUANT),
                         a.scale.eq(Mux(is_pool, E.POOL, E.SUM_K)),
                         a.dest.eq(Mux(is_pool, E.TO_B, E.KS_WORD))]
        with m.Else():
            m.d.comb += reduction_entry(a, 0, cmd.post, mat.o.payload.acc)
        # the R-MAC engine's side: its reduction results, or a depthwise pixel or vk row leaving
        # the serializer (the depthwise command's parameters and post-processing)
        blk = {"addr0": Mux(is_vk, vk["w_addr"], dw["addr0"]), "count": Mux(is_vk, c.m, dw["count"])}
        ser = self._serialize(m, rmac, blk, qtag[1], lat, is_dw | is_vk, Mux(is_dw, dcmd.out_cw, 0))
        b, b_valid = Signal(entry, name="rmac_entry"), Signal(name="rmac_entry_valid")
        m.d.comb += b_valid.eq(Mux(is_dw | is_vk, ser["valid"],
                                   Mux(is_add, adder.o.valid, rmac.o.valid & ~tile0[1])))
        dw_hswish = dcmd.post == Post.HSWISH
        with m.If(is_dw):
            m.d.comb += [b.acc.eq(Cat(*ser["acc"])), b.addr.eq(ser["addr"]),
                         b.q.eq(dcmd.q_base + ser["q_index"]), b.bias.eq(1), b.dw.eq(1), b.dest.eq(E.TO_B),
                         b.mode.eq(Mux(dw_hswish, PostMode.HSWISH, PostMode.REQUANT)),
                         b.scale.eq(Mux(dw_hswish, E.HSWISH, E.CHANNEL))]
        with m.Elif(is_vk):
            m.d.comb += [b.acc.eq(Cat(*ser["acc"])), b.addr.eq(ser["addr"]), b.row.eq(ser["idx"]),
                         b.mode.eq(PostMode.REQUANT), b.scale.eq(E.VK), b.dest.eq(E.ROW)]
        with m.Elif(is_add):  # a residual add's sums: the post-processor rounds them by their shifts
            m.d.comb += [b.addr.eq(_delay(m, oaddr1[0], ResidualAdder.SUM_LATENCY, "add_addr")),
                         b.mode.eq(PostMode.REQUANT), b.scale.eq(E.ADD), b.dest.eq(E.TO_B),
                         b.shift.eq(adder.o.payload.shift)]
            for s in range(S):
                m.d.comb += b.acc[s].eq(adder.o.payload.sum[s])
        with m.Else():
            lane_sums = Cat(*[rmac.o.payload.acc[s][c.n - 1] for s in range(S)])  # down-forward
            m.d.comb += reduction_entry(b, 1, cmd.post, lane_sums)

        # the queue: LUT RAM read asynchronously at its head, an entry readable the cycle after
        # it is written
        depth = self.queue_depth()
        queue = memory.Memory(shape=queued, depth=depth, init=[])
        m.submodules.result_queue = queue
        q_w, q_r = queue.write_port(), queue.read_port(domain="comb")
        head, tail = Signal(range(depth), name="queue_head"), Signal(range(depth), name="queue_tail")
        level = Signal(range(depth + 1), name="queue_level")
        b1, b1_valid = Signal(entry, name="rmac_entry1"), Signal(name="rmac_entry1_valid")
        m.d.sync += [b1.eq(b), b1_valid.eq(b_valid)]
        pop = (level != 0) & ~b1_valid
        m.d.comb += [q_w.en.eq(a_valid), q_w.addr.eq(tail), q_w.data.eq(a), q_r.addr.eq(head)]
        m.d.sync += [tail.eq(tail + a_valid), head.eq(head + pop), level.eq(level + a_valid - pop)]
        head_entry = Cat(q_r.data.as_value(), Const(0, entry.size - queued.size))  # not depthwise, not an add
        pick = data.View(entry, Mux(b1_valid, b1.as_value(), head_entry))
        # the queue holds a block's results; a reduction stops issuing while it may not take the
        # results still in the engines (never in what the compiler plans: ``queue_depth``)
        m.d.comb += queue_room.eq(level < depth - (lat + 3))
        m.d.comb += [self.q_rd0.addr.eq(Mux(is_add, cmd.q_base + cc, pick.q)), self.q_rd0.en.eq(1),
                     div_r.addr.eq(pick.token), div_r.en.eq(1)]
        e1 = Signal(entry, name="post_entry")
        e1_valid = Signal(name="post_entry_valid")
        m.d.sync += [e1.eq(pick), e1_valid.eq(b1_valid | (level != 0))]

        # the entry with its parameter word: bias, int32 results, the post-processor's input
        tp = self.q_rd0.data.reduce
        acc1 = [(e1.acc[s] + Mux(e1.bias, tp.bias[s], 0))[:c.acc_bits].as_signed() for s in range(S)]
        m.d.comb += [self.o_wr0.en.eq(e1_valid & (e1.dest == E.TO_O)), self.o_wr0.addr.eq(e1.addr)]
        for s in range(S):
            m.d.comb += self.o_wr0.data[s].eq(acc1[s])
        uniform = e1.scale >= E.NUM  # one scale for every lane: the command's
        u_mult = Array([cmd.num_mult, cmd.pool_mult, cmd.ks_mult, cmd.vk_mult])[e1.scale - E.NUM]
        u_shift = Array([cmd.num_shift, cmd.pool_shift, cmd.ks_shift, cmd.vk_shift])[e1.scale - E.NUM]
        hs, add = e1.scale == E.HSWISH, e1.scale == E.ADD
        m.d.comb += [pp.i.valid.eq(e1_valid & (e1.dest != E.TO_O)), pp.i.payload.mode.eq(e1.mode),
                     pp.i.payload.three.eq(Mux(e1.dw, dcmd.three, cmd.three)),
                     pp.i.payload.den.eq(div_r.data), pp.i.payload.log2_offset.eq(cmd.log2_offset),
                     pp.o.ready.eq(1)]
        for s in range(S):
            # the channel's scale, or an add's: multiplier 1, its shift
            lane_mult, lane_shift = Mux(add, 1, tp.mult[s]), Mux(add, e1.shift[s], tp.shift[s])
            m.d.comb += [pp.i.payload.acc[s].eq(acc1[s]),
                         pp.i.payload.mult[s].eq(Mux(uniform, u_mult, Mux(hs, tp.h_mult[s], lane_mult))),
                         pp.i.payload.shift[s].eq(Mux(uniform, u_shift, Mux(hs, tp.h_shift[s], lane_shift))),
                         pp.i.payload.mult2[s].eq(tp.mult[s]), pp.i.payload.shift2[s].eq(tp.shift[s]),
                         pp.i.payload.offset[s].eq(tp.offset[s])]
        # the tags wait out the post-processor (every mode leaves after the same cycles)
        out = data.View(entry, _delay(m, e1.as_value(), PostProcessor.LATENCY, "post_tag"))
        pp_q = pp.o.payload.q.as_value()
        m.d.comb += [self.b_wr0.en.eq(pp.o.valid & (out.dest == E.TO_B)), self.b_wr0.addr.eq(out.addr),
                     self.b_wr0.data.eq(pp_q)]
        # the weight buffer's writes through one port: a vk chunk, its rows collected (row m =
        # lane m) and written with the last row (rows 0..M-2 from their registers, row M-1 as it
        # leaves the post-processor), or sum k, requantized, as row 0 of the divisor tile's chunk.
        # That chunk's other rows are whatever the vk rows hold: they weight only the divisor
        # tile's lanes 1..S-1, which nothing reads (the divisor buffer takes lane 0), so only
        # row 0 has a select (not a 512-bit one between a zero-padded word and a chunk)
        is_ks = pp.o.valid & (out.dest == E.KS_WORD)
        is_row = pp.o.valid & (out.dest == E.ROW)
        rows = [Signal(self._word, name=f"vk_row{r}") for r in range(c.m - 1)]
        for r in range(c.m - 1):
            with m.If(is_row & (out.row == r)):
                m.d.sync += rows[r].eq(pp_q)
        chunk = [r.as_value() for r in rows] + [pp_q]
        chunk[0] = Mux(is_ks, pp_q, chunk[0])
        m.d.comb += [self.w_wr0.en.eq(is_ks | (is_row & (out.row == c.m - 1))), self.w_wr0.addr.eq(out.addr),
                     self.w_wr0.data.eq(Cat(*chunk))]
        dw_write = self.b_wr0.en & out.dw
        writes = [self.b_wr0.en & ~out.dw, self.o_wr0.en, self.w_wr0.en]

        # -- completion: results in flight ------------------------------------------------------
        produced = Signal(8)
        m.d.comb += produced.eq((valid[0] & Mux(is_add, 1, last) & ~(is_q & (tile[0] == 0))) +
                                (valid[1] & last) + vk["produced"])
        written = Signal(4)
        m.d.comb += written.eq(sum(writes))
        pending = Signal(DIM_BITS)
        m.d.sync += pending.eq(pending + produced - written)
        with m.If(m_accept):
            m.d.sync += finishing.eq(1)
        with m.Elif(finishing & ~running & (pending == 0) & (produced == 0)):
            m.d.sync += finishing.eq(0)
        # the depthwise command: its M-pixel blocks in flight, and the bands written (for follow)
        d_produced = Mux(dw["issue_last"], dw["count"], 0)
        d_pending = Signal(DIM_BITS, name="dw_pending")
        m.d.sync += d_pending.eq(d_pending + d_produced - dw_write)
        with m.If(d_accept):
            m.d.sync += d_finishing.eq(1)
        with m.Elif(d_finishing & ~d_running & (d_pending == 0) & (d_produced == 0) & ~dw["busy"]):
            m.d.sync += d_finishing.eq(0)
        band_count = Signal(DIM_BITS, name="dw_band_words")
        with m.If(d_accept):
            m.d.sync += [band_count.eq(0), ready_px.eq(0)]
        with m.Elif(dw_write):
            with m.If(band_count + 1 == dcmd.band_words):
                m.d.sync += [band_count.eq(0), ready_px.eq(ready_px + dcmd.band_pixels)]
            with m.Else():
                m.d.sync += band_count.eq(band_count + 1)
        return m
