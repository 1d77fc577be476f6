"""MAT engine: S PE lanes of T multipliers, an adder tree and an accumulator each (paper Fig. 7a)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.adder_tree import pipelined_sum, tree_levels, tree_output_bits
from hw.dsp_mac import Addend, DspMac
from hw.dual_multiplier import paired_dsps, paired_products
from hw.params import check_bool, check_int
from hw.pipeline import BlockAccumulators, Pipeline
from hw.requantizer import Requantizer
from hw.rmac_engine import slice_tree, wire_slice_tree
from quant.arith import PACK_SHIFT

__all__ = ["MatEngine", "PACKED_SUM_MAX"]

# packed products one P register may sum (each field then holds the exact sum: 8 products of
# -128 x -128 overflow the low field's 18 bits; reference-facts, tests/test_dual_multiplier.py)
PACKED_SUM_MAX = 7


class MatEngine(wiring.Component):
    """Multipliers-adder-tree engine for generic conv, PW conv, grouped PW conv and MatMul.

    Each beat carries T inputs ``a`` (input channels; broadcast to every lane: input reuse) and
    per lane T weights ``w[s]`` (lane s = one output channel: psum reuse inside the lane). Lane s
    computes ``sum_t a[t] * w[s][t]`` through its adder tree and accumulates it; ``first`` starts
    an accumulation from ``bias[s]``, ``last`` ends it and emits the result. A reduction over K
    inputs takes ceil(K / T) beats (zero-padded). Generic convolutions are fed with their
    input-channel x kernel positions unrolled into that reduction, grouped convolutions with
    their group's channels; the order of beats (the controller's schedule) is
    ``sim.schedule`` today and the L-core controller later.

    Lanes are paired on DSPs: lanes 2j and 2j+1 share ``a[t]``, so with ``packing`` one
    :class:`DualMultiplier` (one DSP48E2) makes both products.

    With ``dsp_macs`` the products and the lane sums are made on multiply-accumulate DSP48E2
    slices (:class:`hw.dsp_mac.DspMac`) with no fabric adder tree: a lane pair's T slices (their
    pre-adders pack the two weights, ``(w[2j+1] << 18) + w[2j]``) form trees
    (:func:`hw.rmac_engine.slice_tree`) of at most :data:`PACKED_SUM_MAX` slices, each slice
    adding its packed product to the P of up to two slices below it (one on the cascade, one
    through C), so each tree's root holds both lanes' partial sums in its two fields; the fields
    are split and the trees' parts added in the stage of the adder tree's last level — the same
    latency. A slice d levels up takes its operands d cycles late.

    With ``requantize`` the accumulators go through a :class:`Requantizer` (``mult``/``shift``
    per lane, taken from the ``last`` beat) and the output is int8 ``q``; otherwise the output is
    the int32 accumulators ``acc``. Accumulators are ``acc_bits`` wide: the contract's bound
    (docs/arithmetic.md) keeps every EfficientViT reduction inside int32.

    **Weight reuse over a pixel block** (``block`` > 1): each lane has ``block`` accumulators (a
    small LUT memory), one per pixel of the block; the beat's ``slot`` says which one it adds to.
    So one weight chunk serves a block of pixels on consecutive beats (the controller reads it
    once and holds it) while every pixel keeps its own partial sum; the ``last`` beat of a slot
    emits that slot's result. With ``block`` = 1 there is no ``slot`` field and one accumulator.

    Parameters
    ----------
    lanes : int
        S, PE lanes (output channels per beat), 1..64.
    width : int
        T, multipliers per lane (input channels per beat), 1..64.
    packing : bool
        Two products per DSP48E2 (WP486).
    requantize : bool
        Attach the dyadic requantizer to the output.
    acc_bits, mult_bits, shift_bits, out_bits : int
        Widths of the accumulator and of the requantizer.
    block : int
        Accumulators per lane (pixels of a block sharing one weight chunk), 1..64.
    dsp_macs : bool
        Products and lane sums on DSP48E2 slice trees (the computing core's engine). The trees'
        parts are added in one stage: two for T = 8, three for T = 16 (``ceil(T / 7)``).

    Members
    -------
    i : In(stream.Signature(StructLayout({"a": ArrayLayout(signed(8), T),
            "w": ArrayLayout(ArrayLayout(signed(8), T), S), "bias": ArrayLayout(signed(acc_bits), S),
            ["mult": ArrayLayout(unsigned(mult_bits), S), "shift": ArrayLayout(unsigned(shift_bits), S),]
            ["slot": range(block),] "first": 1, "last": 1})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), S)}))) with
        ``requantize``, else ``{"acc": ArrayLayout(signed(acc_bits), S)}``

    Latency: ``latency`` cycles from the ``last`` beat to its result (1 multiply + ceil(log2 T)
    tree levels + 1 accumulate, + 3 with the requantizer). Throughput: one beat (S x T MACs) per
    cycle; one result per accumulation.
    """

    def __init__(self, lanes=8, width=8, packing=True, requantize=True, acc_bits=32,
                 mult_bits=16, shift_bits=6, out_bits=8, block=1, dsp_macs=False):
        check_int("Lane count", lanes, 1, 64)
        check_int("Lane width", width, 1, 64)
        check_bool("dsp_macs", dsp_macs)
        self._dsp_macs = dsp_macs
        check_int("Accumulator width", acc_bits, 16, 48)
        check_int("Accumulators per lane", block, 1, 64)
        check_bool("packing", packing)
        check_bool("requantize", requantize)
        self._lanes, self._width, self._packing, self._requantize = lanes, width, packing, requantize
        self._acc_bits, self._block = acc_bits, block
        self._requant_args = (lanes, acc_bits, mult_bits, shift_bits, out_bits)
        fields = {
            "a": data.ArrayLayout(signed(8), width),
            "w": data.ArrayLayout(data.ArrayLayout(signed(8), width), lanes),
            "bias": data.ArrayLayout(signed(acc_bits), lanes),
        }
        if requantize:
            fields["mult"] = data.ArrayLayout(unsigned(mult_bits), lanes)
            fields["shift"] = data.ArrayLayout(unsigned(shift_bits), lanes)
        if block > 1:
            fields["slot"] = range(block)
        fields.update(first=unsigned(1), last=unsigned(1))
        self._acc_layout = data.StructLayout({"acc": data.ArrayLayout(signed(acc_bits), lanes)})
        out_layout = (data.StructLayout({"q": data.ArrayLayout(signed(out_bits), lanes)})
                      if requantize else self._acc_layout)
        super().__init__({"i": In(stream.Signature(data.StructLayout(fields))),
                          "o": Out(stream.Signature(out_layout))})

    lanes = property(lambda self: self._lanes)
    width = property(lambda self: self._width)
    block = property(lambda self: self._block)
    multipliers = property(lambda self: self._lanes * self._width)
    dsps = property(lambda self: paired_dsps(self._lanes, self._width, self._packing))
    _depth = property(lambda self: 1 + tree_levels(self._width) + 1)
    latency = property(lambda self: self._depth + (Requantizer.LATENCY if self._requantize else 0))
    params = property(lambda self: dict(lanes=self._lanes, width=self._width,
                                        packing=self._packing, requantize=self._requantize,
                                        acc_bits=self._acc_bits, block=self._block,
                                        dsp_macs=self._dsp_macs))

    @staticmethod
    def _groups(width, packing):
        """The lane's columns by slice tree: each tree within the adder tree's levels but one
        (its root's P then leaves where the adder tree's last level starts) and, packed, within
        :data:`PACKED_SUM_MAX`."""
        cap = (1 << tree_levels(width)) - 1
        cap = min(cap, PACKED_SUM_MAX) if packing else cap
        return [list(range(k, min(k + cap, width))) for k in range(0, width, cap)]

    def _dsp_lane_sums(self, m, p):
        """The lanes' sums at stage ``1 + tree_levels(T)`` from slice trees (``dsp_macs``)."""
        S, T, packed = self._lanes, self._width, self._packing
        beat = self.i.payload
        levels = tree_levels(T) - 1
        groups = self._groups(T, packed)
        bits = tree_output_bits(T, 16)
        acts = {}  # a[t] delayed to its slices' level (the same in every lane pair)
        sums = []
        for j in range(0, S, 2 if packed else 1):
            lanes = [j, j + 1] if packed and j + 1 < S else [j]
            roots = []
            for cols in groups:
                tree = slice_tree(len(cols), levels)
                macs = []
                for (level, cascade, through_c), t in zip(tree, cols, strict=True):
                    w = [p.delay(beat.w[s][t], level, f"w_{s}_{t}") for s in lanes]
                    mac = m.submodules[f"mac_{j}_{t}"] = (DspMac(26, 8, 48, d_bits=8) if packed
                                                          else DspMac(8, 8, 48))
                    if packed:  # (w1 << 18) + w0 in the pre-adder
                        m.d.comb += [mac.a.eq((w[1] if len(w) > 1 else 0) << PACK_SHIFT), mac.d.eq(w[0])]
                    else:
                        m.d.comb += mac.a.eq(w[0])
                    if t not in acts:
                        acts[t] = p.delay(beat.a[t], level, f"a{t}")
                    m.d.comb += [mac.b.eq(acts[t]),
                                 mac.addend.eq(Addend.PCIN if cascade is not None else Addend.ZERO),
                                 mac.add_c.eq(through_c is not None), mac.ce.eq(p.en & p.valids[level])]
                    macs.append(mac)
                roots.append(wire_slice_tree(m, macs, tree))
            if packed:  # each root: low field lane 2j, high field (borrowing its sign) lane 2j+1
                parts = [[r[:PACK_SHIFT].as_signed() for r in roots],
                         [r[PACK_SHIFT:2 * PACK_SHIFT].as_signed() + r[PACK_SHIFT - 1] for r in roots]]
            else:
                parts = [[r[:bits].as_signed() for r in roots]]
            for s, part in zip(lanes, parts, strict=False):  # an odd last lane: the low field
                sums.append(p.stage(sum(part[1:], part[0]), f"lane{s}_sum", signed(bits)))
        return sums

    def elaborate(self, platform):
        m = Module()
        requant = Requantizer(*self._requant_args) if self._requantize else None
        if requant is not None:
            m.submodules.requantizer = requant
            out = stream.Signature(requant.i.payload.shape()).create()
            wiring.connect(m, out, requant.i)
            wiring.connect(m, wiring.flipped(self.o), requant.o)
        else:
            out = wiring.flipped(self.o)
        beat = self.i.payload
        p = Pipeline(m, self.i, out, self._depth, drive_output=False)
        sum_stages = self._depth - 1  # multiply + tree levels

        if self._dsp_macs:
            lane_sums = self._dsp_lane_sums(m, p)
        else:  # stage 1: products; lanes 2j and 2j+1 share a[t] on one DualMultiplier
            products = paired_products(m, p, self._lanes, self._width, lambda t: beat.a[t],
                                       lambda s, t: beat.w[s][t], self._packing)
        first = p.delay(beat.first, sum_stages, "first")
        last = p.delay(beat.last, sum_stages, "last")

        # Stages 2..: one adder tree per lane; then accumulate (bias on first), emit on last.
        out_valid = Signal()
        m.d.comb += out.valid.eq(out_valid)
        step = p.en & p.valids[sum_stages]
        with m.If(p.en):
            m.d.sync += out_valid.eq(p.valids[sum_stages] & last)
        slots = (BlockAccumulators(m, self._block, self._acc_layout["acc"].shape,
                                    p.delay(beat.slot, sum_stages, "slot"), step)
                 if self._block > 1 else None)
        for s in range(self._lanes):
            total = (lane_sums[s] if self._dsp_macs
                     else pipelined_sum(p, products[s], 16, True, name=f"lane{s}"))
            bias = p.delay(beat.bias[s], sum_stages, f"bias{s}")
            acc = Signal(signed(self._acc_bits), name=f"acc{s}")
            new = Signal(signed(self._acc_bits), name=f"acc{s}_next")
            m.d.comb += new.eq(Mux(first, bias, acc if slots is None else slots.data[s]) + total)
            with m.If(step):
                m.d.sync += acc.eq(new)
            if slots is not None:
                m.d.comb += slots.data_in[s].eq(new)
            m.d.comb += out.payload.acc[s].eq(acc)
            if requant is not None:
                # Ride along to the accumulator register, so they leave with the result.
                m.d.comb += [out.payload.mult[s].eq(p.delay(beat.mult[s], self._depth, f"mult{s}")),
                             out.payload.shift[s].eq(p.delay(beat.shift[s], self._depth, f"shift{s}"))]
        return m
