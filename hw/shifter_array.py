"""Shifter array: division by log2-quantized divisors as shifts (paper section V-A2, step v)."""

from amaranth.hdl import Cat, Const, Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_int
from hw.pipeline import Pipeline
from hw.rounding import round_window_stages

__all__ = ["ShifterArray", "shift_divide_stages"]


class ShifterArray(wiring.Component):
    """``q = clamp(round_half_up(x / 2**e))`` on ``lanes`` dividends, each with its own code ``e``.

    ``e >= 0`` shifts right with rounding half up, ``e < 0`` shifts left exactly; the result
    saturates to signed ``out_bits``. Golden function: :func:`quant.arith.shift_divide`.

    Parameters
    ----------
    lanes : int
        Dividends per transfer (1..256).
    in_bits : int
        Width of the signed dividend (2..32).
    shift_bits : int
        Width of the signed log2 code (2..6).
    out_bits : int
        Width of the signed, saturated quotient (2..32).

    Members
    -------
    i : In(stream.Signature(StructLayout({"x": ArrayLayout(signed(in_bits), lanes),
            "e": ArrayLayout(signed(shift_bits), lanes)})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), lanes)})))

    Latency 2 cycles (shift, then round and saturate); throughput ``lanes`` quotients per cycle.
    """

    def __init__(self, lanes=8, in_bits=16, shift_bits=4, out_bits=8):
        check_int("Lane count", lanes, 1, 256)
        check_int("Dividend width", in_bits, 2, 32)
        check_int("Shift width", shift_bits, 2, 6)
        check_int("Output width", out_bits, 2, 32)
        self._lanes, self._in_bits = lanes, in_bits
        self._shift_bits, self._out_bits = shift_bits, out_bits
        in_layout = data.StructLayout({
            "x": data.ArrayLayout(signed(in_bits), lanes),
            "e": data.ArrayLayout(signed(shift_bits), lanes),
        })
        out_layout = data.StructLayout({"q": data.ArrayLayout(signed(out_bits), lanes)})
        super().__init__({"i": In(stream.Signature(in_layout)),
                          "o": Out(stream.Signature(out_layout))})

    lanes = property(lambda self: self._lanes)
    out_bits = property(lambda self: self._out_bits)
    latency = property(lambda self: 2)
    params = property(lambda self: dict(lanes=self._lanes, in_bits=self._in_bits,
                                        shift_bits=self._shift_bits, out_bits=self._out_bits))

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency)
        for k in range(self._lanes):
            q = shift_divide_stages(p, self.i.payload.x[k], self.i.payload.e[k], self._shift_bits,
                                    self._out_bits, f"lane{k}")
            m.d.comb += self.o.payload.q[k].eq(q)
        return m


def shift_divide_stages(p, x, e, shift_bits, out_bits, name):
    """The shifter array's two stages for one lane inside pipeline ``p``: ``x / 2**e`` rounded half
    up (``e >= 0``) or ``x << -e`` (exact), saturated; returns the registered signed ``out_bits``
    quotient. Shared by :class:`ShifterArray` and the attention output path."""
    left_max = 1 << (shift_bits - 1)  # e >= -left_max
    # Stage 1: x << left_max (exact), shifted right by left_max + e, less one for e > 0 to round
    # next: x << -e for e <= 0, x >>> (e-1) for e > 0; its out_bits + 1 low bits and whether it fits.
    # Stage 2: (t + 1) >>> 1 completes round-half-up for e > 0; saturate.
    s = (left_max + e - (e > 0)).as_unsigned()[:shift_bits]
    q = round_window_stages(p, Cat(Const(0, left_max), x).as_signed(), s, e > 0, out_bits, name)
    return p.stage(q, f"{name}_q", signed(out_bits))
