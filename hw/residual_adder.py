"""Residual adder: two int8 tensors with their own scales, summed and requantized (docs/arithmetic.md §9)."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring

from hw.dual_multiplier import product_dsps
from hw.params import check_bool, check_int
from hw.pipeline import Pipeline, StreamUnit
from hw.requantizer import round_stages

__all__ = ["ResidualAdder"]


class ResidualAdder(StreamUnit, wiring.Component):
    """``q = clamp(round_half_up((a * mult_a + b * mult_b) / 2**shift))`` on ``lanes`` channels.

    ``a`` is the block's output, ``b`` the skip operand read from buffer B; each has its own
    unsigned multiplier (the ratio of its scale to the output's) and the two share one shift.
    Golden function: :func:`quant.arith.add_requantize`. Without ``requantize`` (the computing
    core's: its one post-processor rounds, as ``requantize(sum, 1, shift)``) the unit gives the
    exact ``sum = a * mult_a + b * mult_b`` (:func:`quant.arith.residual_sum`) and the shift it is
    to be rounded by.

    Parameters
    ----------
    lanes : int
        Channels per transfer (1..256).
    in_bits, mult_bits, shift_bits, out_bits : int
        Widths of the signed addends, unsigned multipliers, unsigned shift, signed output.
    requantize : bool
        Round and saturate here (default) or give the sums.

    Members
    -------
    i : In(stream.Signature(StructLayout({"a", "b": ArrayLayout(signed(in_bits), lanes),
            "mult_a", "mult_b": ArrayLayout(unsigned(mult_bits), lanes),
            "shift": ArrayLayout(unsigned(shift_bits), lanes)})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), lanes)}))), or
        without ``requantize`` ``{"sum": ArrayLayout(signed(in_bits + mult_bits + 2), lanes),
        "shift": ArrayLayout(unsigned(shift_bits), lanes)}``

    Latency 4 cycles (products, sum, shift, round and saturate), 2 without ``requantize``
    (:attr:`SUM_LATENCY`); throughput ``lanes`` per cycle.
    """

    LATENCY = 4
    SUM_LATENCY = 2  # products, sum

    def __init__(self, lanes=8, in_bits=8, mult_bits=16, shift_bits=6, out_bits=8, requantize=True):
        check_int("Lane count", lanes, 1, 256)
        check_int("Addend width", in_bits, 2, 16)
        check_int("Multiplier width", mult_bits, 1, 24)
        check_int("Shift width", shift_bits, 1, 6)
        check_int("Output width", out_bits, 2, 32)
        check_bool("requantize", requantize)
        vec = lambda shape: data.ArrayLayout(shape, lanes)  # noqa: E731
        in_layout = data.StructLayout({
            "a": vec(signed(in_bits)), "b": vec(signed(in_bits)),
            "mult_a": vec(unsigned(mult_bits)), "mult_b": vec(unsigned(mult_bits)),
            "shift": vec(unsigned(shift_bits)),
        })
        if requantize:
            out_layout = data.StructLayout({"q": vec(signed(out_bits))})
        else:
            out_layout = data.StructLayout({"sum": vec(signed(in_bits + mult_bits + 2)),
                                            "shift": vec(unsigned(shift_bits))})
        params = dict(lanes=lanes, in_bits=in_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                      out_bits=out_bits, requantize=requantize)
        self._stream_init(params, in_layout, out_layout)

    latency = property(lambda self: self.LATENCY if self._p["requantize"] else self.SUM_LATENCY)

    @property
    def dsps(self):
        """DSP48E2 slices: two products per lane (``hw.dual_multiplier.product_dsps``)."""
        return self._p["lanes"] * 2 * product_dsps(self._p["in_bits"], self._p["mult_bits"] + 1)

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency)
        b = self.i.payload
        prod_bits = self._p["in_bits"] + self._p["mult_bits"] + 1
        for k in range(self._p["lanes"]):
            pa = p.stage(b.a[k] * b.mult_a[k], f"pa{k}", signed(prod_bits))
            pb = p.stage(b.b[k] * b.mult_b[k], f"pb{k}", signed(prod_bits))
            total = p.stage(pa + pb, f"sum{k}", signed(prod_bits + 1))
            shift = p.delay(b.shift[k], self.SUM_LATENCY, f"shift{k}")  # beside the products and sum
            if not self._p["requantize"]:
                m.d.comb += [self.o.payload.sum[k].eq(total), self.o.payload.shift[k].eq(shift)]
                continue
            m.d.comb += self.o.payload.q[k].eq(
                round_stages(p, total, shift, self._p["shift_bits"], self._p["out_bits"], f"lane{k}"))
        return m
