"""LOD-based log2 quantizer for the attention divisors (paper eq. 11)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_int
from hw.pipeline import Pipeline
from quant.arith import signed_bits

__all__ = ["Log2Quantizer", "log2_stages"]


class Log2Quantizer(wiring.Component):
    """Log2 code of an unsigned divisor: ``clip(i + x[i-1] + offset, lo, hi)``; zero counts as 1.

    ``i`` is the index of the leading one of ``x`` (a leading-one detector); adding bit ``i-1``
    rounds up from 1.5 * 2**i. Golden function: :func:`quant.arith.log2_quantize`.

    Parameters
    ----------
    width : int
        Width of the unsigned divisor ``x`` (1..48).
    offset_bits : int
        Width of the signed per-layer offset ``round(log2(S_Q * S_Ksum))`` (2..16).
    lo, hi : int
        Clip range of the code; the code port is the narrowest signed width holding it.

    Members
    -------
    i : In(stream.Signature(StructLayout({"x": unsigned(width), "offset": signed(offset_bits)})))
    o : Out(stream.Signature(StructLayout({"e": signed(code_bits)})))

    Latency 2 cycles; throughput 1 divisor per cycle.
    """

    def __init__(self, width=32, offset_bits=6, lo=-8, hi=7):
        check_int("Divisor width", width, 1, 48)
        check_int("Offset width", offset_bits, 2, 16)
        if type(lo) is not int or type(hi) is not int or not lo < hi:
            raise ValueError(f"Clip range must be integers with lo < hi, not ({lo!r}, {hi!r})")
        self._width, self._offset_bits, self._lo, self._hi = width, offset_bits, lo, hi
        self._code_bits = signed_bits(lo, hi)
        in_layout = data.StructLayout({"x": unsigned(width), "offset": signed(offset_bits)})
        out_layout = data.StructLayout({"e": signed(self._code_bits)})
        super().__init__({"i": In(stream.Signature(in_layout)),
                          "o": Out(stream.Signature(out_layout))})

    width = property(lambda self: self._width)
    offset_bits = property(lambda self: self._offset_bits)
    lo = property(lambda self: self._lo)
    hi = property(lambda self: self._hi)
    code_bits = property(lambda self: self._code_bits)
    latency = property(lambda self: 2)
    params = property(lambda self: dict(width=self._width, offset_bits=self._offset_bits,
                                        lo=self._lo, hi=self._hi))

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency)
        code = log2_stages(m, p, self.i.payload.x, self.i.payload.offset, self._lo, self._hi, "log2")
        m.d.comb += self.o.payload.e.eq(code)
        return m


def log2_stages(m, p, x, offset, lo, hi, name):
    """The log2 quantizer's two stages inside pipeline ``p`` of module ``m``: the code
    ``clip(i + x[i-1] + offset, lo, hi)`` of unsigned ``x`` (zero counts as 1), registered, as the
    narrowest signed width holding [lo, hi]. Shared by :class:`Log2Quantizer` and the attention
    output path."""
    width = len(x)
    # Stage 1: leading-one detector (priority encoder, highest bit wins) and the bit below it.
    # x = 0 sets no bit and leaves index 0, bit 0: the code of x = 1 (zero counts as 1).
    idx = Signal(range(max(width, 2)), name=f"{name}_lod")
    below = Signal(name=f"{name}_below")
    for k in range(width):
        with m.If(x[k]):
            m.d.comb += [idx.eq(k), below.eq(x[k - 1] if k > 0 else 0)]
    idx_r = p.stage(idx, f"{name}_lod_index")
    below_r = p.stage(below, f"{name}_lod_round")
    offset_r = p.stage(offset, f"{name}_offset")
    # Stage 2: add the offset, clip.
    e = idx_r + below_r + offset_r
    code = Mux(e < lo, lo, Mux(e > hi, hi, e))
    return p.stage(code, f"{name}_code", signed(signed_bits(lo, hi)))
