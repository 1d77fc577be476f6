"""Attention output path: int16 dividend, log2 code of the raw int32 divisor, shift division."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring

from hw.log2_quantizer import log2_stages
from hw.params import check_clip_range, check_widths
from hw.pipeline import Pipeline, StreamUnit
from hw.requantizer import Requantizer, requantize_stages
from hw.shifter_array import shift_divide_stages
from quant.arith import signed_bits

__all__ = ["AttentionOutput"]


class AttentionOutput(StreamUnit, wiring.Component):
    """One token's attention outputs: ``lanes`` numerators ``q·vk`` (int32) and their divisor
    ``q·Σk`` (unsigned int32) in, ``lanes`` int8 outputs out.

    Each numerator is requantized to the signed ``dividend_bits`` dividend (``mult``, ``shift``:
    one pair per branch); the divisor goes through the LOD log2 quantizer with the branch's
    ``offset``; the shifter array divides every dividend by ``2**e`` (round half up, saturated to
    ``out_bits``). The divisor path (2 cycles) waits one cycle for the requantizer (3).
    Golden function: :func:`quant.arith.attention_output`.

    Parameters
    ----------
    lanes : int
        Numerators per token and transfer (1..256).
    acc_bits, mult_bits, shift_bits : int
        Widths of the int32 numerator and divisor, the multiplier and the shift.
    dividend_bits, offset_bits, lo, hi, out_bits : int
        The dividend width (16), log2 offset width (6), clip range of the code [-8, 7], output.

    Members
    -------
    i : In(stream.Signature(StructLayout({"num": ArrayLayout(signed(acc_bits), lanes),
            "den": unsigned(acc_bits), "mult": unsigned(mult_bits), "shift": unsigned(shift_bits),
            "offset": signed(offset_bits)})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), lanes)})))

    Latency 5 cycles; throughput one token (``lanes`` outputs) per cycle.
    """

    LATENCY = Requantizer.LATENCY + 2

    def __init__(self, lanes=8, acc_bits=32, mult_bits=16, shift_bits=6, dividend_bits=16,
                 offset_bits=6, lo=-8, hi=7, out_bits=8):
        check_widths(lanes=lanes, acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                     dividend_bits=dividend_bits, log2_offset_bits=offset_bits, out_bits=out_bits)
        check_clip_range(lo, hi)
        in_layout = data.StructLayout({
            "num": data.ArrayLayout(signed(acc_bits), lanes), "den": unsigned(acc_bits),
            "mult": unsigned(mult_bits), "shift": unsigned(shift_bits), "offset": signed(offset_bits),
        })
        out_layout = data.StructLayout({"q": data.ArrayLayout(signed(out_bits), lanes)})
        params = dict(lanes=lanes, acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                      dividend_bits=dividend_bits, offset_bits=offset_bits, lo=lo, hi=hi,
                      out_bits=out_bits)
        self._stream_init(params, in_layout, out_layout)

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency)
        b, q = self.i.payload, self._p
        e = log2_stages(m, p, b.den, b.offset, q["lo"], q["hi"], "log2")
        e = p.delay(e, Requantizer.LATENCY - 2, "code")
        for k in range(q["lanes"]):
            x16 = requantize_stages(p, b.num[k], b.mult, b.shift, q["shift_bits"], q["dividend_bits"],
                                    f"num{k}")
            m.d.comb += self.o.payload.q[k].eq(
                shift_divide_stages(p, x16, e, signed_bits(q["lo"], q["hi"]), q["out_bits"], f"div{k}"))
        return m
