"""R-MAC engine: M PE lanes of N reconfigurable MACs, down-forward or self-accumulation mode
selectable per beat (paper Fig. 7b-d)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.adder_tree import pipelined_sum, tree_levels, tree_output_bits
from hw.dsp_mac import Addend, DspMac
from hw.dual_multiplier import paired_dsps, paired_products
from hw.params import check_bool, check_int
from hw.pipeline import BlockAccumulators, Pipeline
from hw.requantizer import Requantizer

__all__ = ["RMacEngine", "slice_tree", "wire_slice_tree"]

DOWN_FORWARD, SELF_ACCUMULATION = 0, 1


def slice_tree(n, levels):
    """A lane's N slices as a tree summing their products (``RMacEngine(dsp_macs=True)``):
    ``[(level, cascade child, C child)]`` by R-MAC, children ``None`` where absent. A slice at
    level d adds the P of up to two slices at level d - 1 (one on the cascade, one through C); one
    root at ``levels``. Fewest slices high up (each level waits one cycle more): level d holds
    the fewest slices that leave room below for the rest."""
    counts, rest = [1], n - 1
    for d in reversed(range(levels)):
        need = -(-rest // ((2 << d) - 1)) if rest else 0
        counts.insert(0, min(need, 2 * counts[0], rest))
        rest -= counts[0]
    if rest:
        raise ValueError(f"{n} slices do not fit a tree of {levels} levels")
    nodes, index = [], {}
    for d, count in enumerate(counts):
        for k in range(count):
            index[d, k] = len(nodes)
            nodes.append([d, None, None])
    for (d, k), i in index.items():
        if d:
            nodes[i][1] = index.get((d - 1, 2 * k))
            nodes[i][2] = index.get((d - 1, 2 * k + 1))
    return [tuple(node) for node in nodes]


def wire_slice_tree(m, macs, tree):
    """Connect the :class:`hw.dsp_mac.DspMac` s ``macs`` (one per node of ``tree``, a
    :func:`slice_tree`) in module ``m``: each node's cascade child on its ``pcin``, its C child on
    its ``c``. Returns the root's ``p`` (both engines' lane sums)."""
    for mac, (_, cascade, through_c) in zip(macs, tree, strict=True):
        if cascade is not None:
            m.d.comb += mac.pcin.eq(macs[cascade].pcout)
        if through_c is not None:
            m.d.comb += mac.c.eq(macs[through_c].p)
    top = max(level for level, _, _ in tree)
    return next(mac.p for mac, (level, _, _) in zip(macs, tree, strict=True) if level == top)


class RMacEngine(wiring.Component):
    """Reconfigurable MAC engine; R-MAC (m, n) is position n of lane m.

    **Down-forward** (``mode = 0``; PW/generic conv/MatMul, as the MAT engine): the beat's
    ``y[n]`` are N inputs (input channels) broadcast to every lane, ``x[m][n]`` lane m's weights;
    lane m sums its N products and accumulates them in its last R-MAC's psum register, from
    ``bias[m]`` on ``first``. The result of lane m is ``acc[m][N-1]``; the other entries are 0.

    **Self-accumulation** (``mode = 1``; depthwise conv): ``y[n]`` is the weight of channel n,
    broadcast to every lane; lane m computes output pixel m of a row of M consecutive pixels, so
    R-MAC (m, n) accumulates pixel m of channel n over the K x K kernel positions in its own psum
    register (from ``bias[n]`` on ``first``). Each channel has an M-pixel input shift register:
    a ``load`` beat fills it with ``x[m][n]`` (pixel m of channel n); any other beat shifts it by
    one, ``x[0][n]`` entering at position M-1, so adjacent sliding windows share their overlap.
    Every beat multiplies the register's M pixels (after the load or shift) by ``y[n]``. A
    K x K stride-1 window is K rows of (1 load + K-1 shifts); stride 2 loads the even columns
    then the odd ones (kx = 0, 2, 4, then 1, 3). Which pixels and weights go in which beat is the
    controller's schedule (``sim.schedule.depthwise_beats`` today). Result: ``acc[m][n]``.

    ``last`` ends an accumulation. Without ``requantize`` the engine emits all M x N psum
    registers (int32). With it, they are held and sent to a max(M, N)-lane :class:`Requantizer`
    (``mult``/``shift`` per channel or lane, from the ``last`` beat): self-accumulation gives M
    output beats (beat m: pixel m of the N channels, in lanes 0..N-1), down-forward one beat
    (lane m's result in lane m); unused lanes are 0. A K x K depthwise result takes K*K >= 9
    input beats, so the M output beats never stall an engine with M <= 9.

    **Weight reuse over a pixel block** in down-forward mode (``block`` > 1): each lane keeps
    ``block`` partial sums (a LUT memory), one per pixel of the block, selected by the beat's
    ``slot``, as the MAT engine does; the lane's last R-MAC register shows the latest sum.

    Lanes 2j and 2j+1 share
    ``y[n]`` in both modes, so with ``packing`` one :class:`DualMultiplier` (one DSP48E2) serves
    R-MACs (2j, n) and (2j+1, n). With ``dsp_macs`` each R-MAC is instead one multiply-accumulate
    DSP48E2 (:class:`hw.dsp_mac.DspMac`; the paper's "high-bit adder and psum register" of an
    R-MAC in the slice), and no adder is left in the fabric but the lanes' psum registers': in
    self-accumulation a slice's P register keeps its running sum, **from 0** (``bias`` applies
    to down-forward sums only: the computing core adds a depthwise bias after); in down-forward
    mode a lane's slices form a tree (:func:`slice_tree`), each adding its product to the P of
    up to two slices below it (one on the DSP cascade, one through its C port), so the lane's
    root slice holds the lane sum where the adder tree's last level would — the same latency;
    a slice d levels up takes its operands d cycles late, and the running sums ride to the psum
    stage in registers. Packed products cannot accumulate (a 5 x 5 window overflows the packed
    field), so ``packing`` does not apply.

    Parameters
    ----------
    lanes : int
        M, PE lanes, 1..64.
    rmacs : int
        N, R-MACs per lane, 1..64.
    packing : bool
        Two products per DSP48E2 (WP486).
    requantize : bool
        Attach the dyadic requantizer (int8 results).
    acc_bits, mult_bits, shift_bits, out_bits : int
        Psum register width and the requantizer's widths.
    sa_bits : int
        Width of the psum registers that only self-accumulate (all but each lane's last R-MAC,
        which also takes the down-forward sums), 16..``acc_bits`` (default ``acc_bits``); their
        sums are sign-extended to ``acc_bits`` on ``o``. A self-accumulation whose running sum
        (bias included) leaves it wraps: the configuration sizes it for the core's commands
        (``hw.config.AcceleratorConfig.sa_bits``).
    block : int
        Down-forward partial sums per lane (pixels of a block sharing one weight chunk), 1..64.
    dsp_macs : bool
        One multiply-accumulate DSP48E2 per R-MAC (``M x N`` slices) instead of packed products,
        adder trees and fabric accumulators; self-accumulations start from 0 (the computing
        core's engine).

    Members
    -------
    i : In(stream.Signature(StructLayout({"mode": 1, "load": 1,
            "x": ArrayLayout(ArrayLayout(signed(8), N), M), "y": ArrayLayout(signed(8), N),
            "bias": ArrayLayout(signed(acc_bits), max(M, N)),
            ["mult": ArrayLayout(unsigned(mult_bits), max(M, N)),
             "shift": ArrayLayout(unsigned(shift_bits), max(M, N)),] ["slot": range(block),]
            "first": 1, "last": 1})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), max(M, N))})))
        with ``requantize``, else ``{"mode": 1, "acc": ArrayLayout(ArrayLayout(signed(acc_bits),
        N), M)}`` (+ mult/shift)

    Latency ``1 + ceil(log2 N) + 1`` cycles from the ``last`` beat to the psums, in both modes
    (the self-accumulation products wait out the adder-tree levels); +1 (hold) +3 (requantizer)
    to the first int8 beat. Throughput one beat, M x N MACs, per cycle.
    """

    def __init__(self, lanes=8, rmacs=8, packing=True, requantize=True, acc_bits=32,
                 mult_bits=16, shift_bits=6, out_bits=8, block=1, sa_bits=None, dsp_macs=False):
        check_int("Lane count", lanes, 1, 64)
        check_int("R-MACs per lane", rmacs, 1, 64)
        check_int("Accumulator width", acc_bits, 16, 48)
        check_int("Partial sums per lane", block, 1, 64)
        sa_bits = acc_bits if sa_bits is None else sa_bits
        check_int("Self-accumulation width", sa_bits, 16, acc_bits)
        check_bool("packing", packing)
        check_bool("requantize", requantize)
        check_bool("dsp_macs", dsp_macs)
        self._dsp_macs = dsp_macs
        self._lanes, self._rmacs, self._packing, self._acc_bits = lanes, rmacs, packing, acc_bits
        self._requantize, self._block, self._sa_bits = requantize, block, sa_bits
        width = max(lanes, rmacs)  # bias/requant lanes: channels (self-acc.) or lanes (down-fwd.)
        self._requant_args = (width, acc_bits, mult_bits, shift_bits, out_bits)
        fields = {
            "mode": unsigned(1), "load": unsigned(1),
            "x": data.ArrayLayout(data.ArrayLayout(signed(8), rmacs), lanes),
            "y": data.ArrayLayout(signed(8), rmacs),
            "bias": data.ArrayLayout(signed(acc_bits), width),
        }
        psum = {"mode": unsigned(1),
                "acc": data.ArrayLayout(data.ArrayLayout(signed(acc_bits), rmacs), lanes)}
        if requantize:
            for f in (fields, psum):
                f["mult"] = data.ArrayLayout(unsigned(mult_bits), width)
                f["shift"] = data.ArrayLayout(unsigned(shift_bits), width)
        if block > 1:
            fields["slot"] = range(block)
        fields.update(first=unsigned(1), last=unsigned(1))
        self._psum_layout = data.StructLayout(psum)
        out_layout = (data.StructLayout({"q": data.ArrayLayout(signed(out_bits), width)})
                      if requantize else self._psum_layout)
        super().__init__({"i": In(stream.Signature(data.StructLayout(fields))),
                          "o": Out(stream.Signature(out_layout))})

    lanes = property(lambda self: self._lanes)
    rmacs = property(lambda self: self._rmacs)
    block = property(lambda self: self._block)
    multipliers = property(lambda self: self._lanes * self._rmacs)
    dsps = property(lambda self: self._lanes * self._rmacs if self._dsp_macs
                    else paired_dsps(self._lanes, self._rmacs, self._packing))
    _depth = property(lambda self: 1 + tree_levels(self._rmacs) + 1)
    latency = property(lambda self: self._depth + (1 + Requantizer.LATENCY if self._requantize
                                                   else 0))
    params = property(lambda self: dict(lanes=self._lanes, rmacs=self._rmacs,
                                        packing=self._packing, requantize=self._requantize,
                                        acc_bits=self._acc_bits, block=self._block,
                                        sa_bits=self._sa_bits, dsp_macs=self._dsp_macs))

    def _serialize(self, m, psums):
        """Psum registers -> requantizer: self-accumulation emits M beats (beat m: output pixel m,
        N channels), down-forward one beat (the M lane results). Returns the requantizer."""
        M, N = self._lanes, self._rmacs
        requant = m.submodules.requantizer = Requantizer(*self._requant_args)
        wiring.connect(m, wiring.flipped(self.o), requant.o)
        hold = Signal(self._psum_layout)
        busy, row = Signal(), Signal(range(M))
        final = Mux(hold.mode == SELF_ACCUMULATION, row == M - 1, 1)
        m.d.comb += [psums.ready.eq(~busy | (requant.i.ready & final)),
                     requant.i.valid.eq(busy), requant.i.payload.mult.eq(hold.mult),
                     requant.i.payload.shift.eq(hold.shift)]
        sa_row = hold.acc[row]
        for r in range(self._requant_args[0]):
            sa_val = sa_row[r] if r < N else 0
            df_val = hold.acc[r][N - 1] if r < M else 0
            m.d.comb += requant.i.payload.acc[r].eq(
                Mux(hold.mode == SELF_ACCUMULATION, sa_val, df_val))
        with m.If(psums.valid & psums.ready):
            m.d.sync += [hold.eq(psums.payload), busy.eq(1), row.eq(0)]
        with m.Elif(busy & requant.i.ready):
            with m.If(final):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += row.eq(row + 1)

    def _dsp_stage(self, m, p, operands, levels):
        """Stages 1..``levels + 1`` on one :class:`DspMac` per R-MAC (:func:`slice_tree`).
        Self-accumulation: each slice's P keeps its running sum (from 0 on ``first``).
        Down-forward: each slice adds its product to its children's P — one on the cascade
        (``pcin``), one through C — so a lane's root slice holds the lane sum ``levels`` stages
        after the products, where an adder tree would (no fabric adder). A slice ``d`` levels
        above the leaves takes its operands ``d`` cycles late. Returns (the lane sums, the
        running sums at stage ``levels + 1``: ``[lane][n]``)."""
        M, N = self._lanes, self._rmacs
        beat = self.i.payload
        sa = beat.mode == SELF_ACCUMULATION
        tree = slice_tree(N, levels)
        macs = {}
        sums = [[None] * N for _ in range(M)]
        for n, (level, cascade, through_c) in enumerate(tree):
            y = p.delay(beat.y[n], level, f"y{n}")
            mode_sa = p.delay(sa, level, f"sa{n}")
            first = p.delay(beat.first, level, f"first{n}")
            addend = Signal(3, name=f"addend{n}")
            df_addend = Addend.PCIN if cascade is not None else Addend.ZERO
            m.d.comb += addend.eq(Mux(mode_sa, Mux(first, Addend.ZERO, Addend.P), df_addend))
            for j in range(M):
                mac = macs[j, n] = m.submodules[f"mac_{j}_{n}"] = DspMac(8, 8, 48)
                m.d.comb += [mac.a.eq(p.delay(operands[j][n], level, f"opd_{j}_{n}")), mac.b.eq(y),
                             mac.addend.eq(addend), mac.ce.eq(p.en & p.valids[level]),
                             mac.add_c.eq(~mode_sa if through_c is not None else 0)]
                width = self._acc_bits if n == N - 1 else self._sa_bits
                sums[j][n] = p.delay(mac.p[:width].as_signed(), levels - level, f"sa_{j}_{n}")
        lane_sums = [wire_slice_tree(m, [macs[j, n] for n in range(N)], tree)[:tree_output_bits(N, 16)]
                     .as_signed() for j in range(M)]
        return lane_sums, sums

    def elaborate(self, platform):
        m = Module()
        M, N = self._lanes, self._rmacs
        beat = self.i.payload
        if self._requantize:
            psums = stream.Signature(self._psum_layout).create()
            self._serialize(m, psums)
        else:
            psums = wiring.flipped(self.o)
        p = Pipeline(m, self.i, psums, self._depth, drive_output=False)
        sum_stages = self._depth - 1
        sa = beat.mode == SELF_ACCUMULATION

        # Input shift registers (one per channel n) and each beat's operands: x[m][n] itself (a
        # down-forward or load beat) or the shifted register (a self-accumulation shift beat). A
        # self-accumulation beat's operands are the window its shift register keeps, so the one
        # selection feeds both (no second multiplexer for the register).
        operands = [[Signal(signed(8), name=f"opd_{j}_{n}") for n in range(N)] for j in range(M)]
        for n in range(N):
            sr = [Signal(signed(8), name=f"sr_{n}_{j}") for j in range(M)]
            for j in range(M):
                shifted = sr[j + 1] if j + 1 < M else beat.x[0][n]
                m.d.comb += operands[j][n].eq(Mux(sa & ~beat.load, shifted, beat.x[j][n]))
                with m.If(self.i.valid & self.i.ready & sa):
                    m.d.sync += sr[j].eq(operands[j][n])

        if self._dsp_macs:
            lane_sums, sa_sums = self._dsp_stage(m, p, operands, sum_stages - 1)
        else:  # stage 1: products y[n] * operand[m][n]; lanes 2j and 2j+1 share y[n]
            products = paired_products(m, p, M, N, lambda n: beat.y[n], lambda j, n: operands[j][n],
                                       self._packing)
        mode = p.delay(beat.mode, sum_stages, "mode")
        first = p.delay(beat.first, sum_stages, "first")
        last = p.delay(beat.last, sum_stages, "last")
        bias = [p.delay(beat.bias[k], sum_stages, f"bias{k}") for k in range(max(M, N))]

        # Final stage: psum registers. Self-accumulation: each R-MAC adds its own product;
        # down-forward: the lane's last R-MAC adds the lane's sum.
        out_valid, out_mode = Signal(), Signal()
        m.d.comb += [psums.valid.eq(out_valid), psums.payload.mode.eq(out_mode)]
        step = p.en & p.valids[sum_stages]
        with m.If(p.en):
            m.d.sync += out_valid.eq(p.valids[sum_stages] & last)
        with m.If(step):
            m.d.sync += out_mode.eq(mode)
        slots = (BlockAccumulators(m, self._block, data.ArrayLayout(signed(self._acc_bits), M),
                                   p.delay(beat.slot, sum_stages, "slot"), step & (mode == DOWN_FORWARD))
                 if self._block > 1 else None)
        for j in range(M):
            lane_sum = (lane_sums[j] if self._dsp_macs
                        else pipelined_sum(p, products[j], 16, True, name=f"lane{j}"))
            for n in range(N):
                if self._dsp_macs:  # the slice's running sum, carried to the psum stage
                    sa_next = sa_sums[j][n]
                else:
                    own = p.delay(products[j][n], sum_stages - 1, f"own_{j}_{n}")
                # no domain reset: a psum is read only after its accumulation's first beat, and
                # with one the down-forward clear below needs a LUT per bit (the flip-flop's own
                # synchronous reset then serves the domain's): 1.8k LUT in the paper's engine
                df_here = n == N - 1  # down-forward result lands in the lane's last R-MAC
                width = self._acc_bits if df_here else self._sa_bits
                acc = Signal(signed(width), name=f"psum_{j}_{n}", reset_less=True)
                if df_here:
                    df_new = Signal(signed(self._acc_bits), name=f"psum_{j}_next")
                    prev = acc if slots is None else slots.data[j]
                    m.d.comb += df_new.eq(Mux(first, bias[j], prev) + lane_sum)
                    if slots is not None:
                        m.d.comb += slots.data_in[j].eq(df_new)
                with m.If(step):
                    with m.If(mode == SELF_ACCUMULATION):
                        m.d.sync += acc.eq(sa_next if self._dsp_macs else Mux(first, bias[n], acc) + own)
                    with m.Else():
                        m.d.sync += acc.eq(df_new if df_here else 0)
                m.d.comb += psums.payload.acc[j][n].eq(acc)
        if self._requantize:  # ride along to the psum registers, so they leave with the result
            for r in range(max(M, N)):
                m.d.comb += [psums.payload.mult[r].eq(p.delay(beat.mult[r], self._depth, f"mult{r}")),
                             psums.payload.shift[r].eq(p.delay(beat.shift[r], self._depth, f"shift{r}"))]
        return m
