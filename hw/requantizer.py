"""Dyadic requantizer (paper eq. 12), per-channel multipliers and shifts."""

from amaranth.hdl import Module, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_widths
from hw.pipeline import Pipeline
from hw.rounding import round_window_stages

__all__ = ["Requantizer", "requantize_stages", "round_stages"]


class Requantizer(wiring.Component):
    """``q = clamp(round_half_up(acc * b / 2**c))`` on ``lanes`` channels in parallel.

    Each lane carries its own multiplier ``b`` and shift ``c`` (per-channel requantization, needed
    by channel-wise migration, eq. 7); drive equal values for a per-tensor scale. Rounding is half
    up, as ``((acc*b >>> (c-1)) + 1) >>> 1`` (``c = 0`` passes the product); the result saturates to
    signed ``out_bits``. Golden function: :func:`quant.arith.requantize`.

    Parameters
    ----------
    lanes : int
        Channels per transfer (1..256).
    acc_bits, mult_bits, shift_bits, out_bits : int
        Widths of the signed accumulator, unsigned multiplier b, unsigned shift c, signed output.

    Members
    -------
    i : In(stream.Signature(StructLayout({"acc": ArrayLayout(signed(acc_bits), lanes),
            "mult": ArrayLayout(unsigned(mult_bits), lanes),
            "shift": ArrayLayout(unsigned(shift_bits), lanes)})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), lanes)})))

    Latency 3 cycles (multiply, shift, round and saturate); throughput ``lanes`` values per cycle.
    """

    def __init__(self, lanes=8, acc_bits=32, mult_bits=16, shift_bits=6, out_bits=8):
        check_widths(lanes=lanes, acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                     out_bits=out_bits)
        self._lanes, self._acc_bits, self._mult_bits = lanes, acc_bits, mult_bits
        self._shift_bits, self._out_bits = shift_bits, out_bits
        in_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(acc_bits), lanes),
            "mult": data.ArrayLayout(unsigned(mult_bits), lanes),
            "shift": data.ArrayLayout(unsigned(shift_bits), lanes),
        })
        out_layout = data.StructLayout({"q": data.ArrayLayout(signed(out_bits), lanes)})
        super().__init__({"i": In(stream.Signature(in_layout)),
                          "o": Out(stream.Signature(out_layout))})

    lanes = property(lambda self: self._lanes)
    out_bits = property(lambda self: self._out_bits)
    LATENCY = 3
    latency = property(lambda self: self.LATENCY)
    params = property(lambda self: dict(lanes=self._lanes, acc_bits=self._acc_bits,
                                        mult_bits=self._mult_bits, shift_bits=self._shift_bits,
                                        out_bits=self._out_bits))

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency)
        for k in range(self._lanes):
            acc, b, c = self.i.payload.acc[k], self.i.payload.mult[k], self.i.payload.shift[k]
            q = requantize_stages(p, acc, b, c, self._shift_bits, self._out_bits, f"lane{k}")
            m.d.comb += self.o.payload.q[k].eq(q)
        return m


def requantize_stages(p, acc, b, c, shift_bits, out_bits, name, narrow=()):
    """The requantizer's three stages inside pipeline ``p``: ``clamp(round_half_up(acc*b/2**c))``
    for one lane, returned as the registered signed ``out_bits`` result. Shared by
    :class:`Requantizer` and the post-processing units that requantize mid-pipeline.
    ``narrow``: (condition, bits) pairs; where a condition (given in the last stage, two stages
    after ``acc``) holds, the result saturates to signed ``bits`` instead (bits < out_bits)."""
    # Stage 1: the product (a DSP's multiplier with its M register).
    prod = p.stage(acc * b, f"{name}_prod", signed(len(acc) + len(b) + 1))
    return round_stages(p, prod, p.stage(c, f"{name}_shift"), shift_bits, out_bits, name, narrow)


def round_stages(p, value, c, shift_bits, out_bits, name, narrow=()):
    """Two stages of pipeline ``p``: ``clamp(round_half_up(value / 2**c))`` to signed
    ``out_bits`` (``c`` unsigned ``shift_bits``), registered; ``narrow`` as in
    :func:`requantize_stages` (its conditions given one stage after ``value``)."""
    # Stage 1: the out_bits + 1 low bits of the arithmetic shift by c-1 (c = 0 passes the value
    # unrounded) and whether the shifted value fits them. Stage 2: (t + 1) >>> 1 completes
    # round-half-up; then saturate, to a narrower width where a ``narrow`` condition holds.
    q = round_window_stages(p, value, Mux(c == 0, 0, (c - 1)[:shift_bits]), c != 0, out_bits, name,
                            narrow)
    return p.stage(q, f"{name}_q", signed(out_bits))
