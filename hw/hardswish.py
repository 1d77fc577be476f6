"""Integer Hardswish post-processing: requantize to the int12 pre-activation, the product
``h * clamp(h + T, 0, 2T)``, the filter-wise shift, requantize to int8 (docs/arithmetic.md §9)."""

from amaranth.hdl import Module, Mux, signed, unsigned
from amaranth.lib import data, wiring

from hw.params import check_widths
from hw.pipeline import Pipeline, StreamUnit
from hw.requantizer import Requantizer, requantize_stages

__all__ = ["Hardswish", "hswish_tail_stages"]


class Hardswish(StreamUnit, wiring.Component):
    """``lanes`` conv outputs through the integer Hardswish, one vector per cycle.

    Per lane: ``h = requantize(acc, h_mult, h_shift)`` to signed ``hswish_bits``; ``g = clamp(h + T,
    0, 2T)`` with the layer's threshold ``T`` = ``three`` (the code of 3.0); the product ``h * g``
    (a ``hswish_bits`` x ``hswish_bits`` multiplier, one DSP48E2 per lane); minus the filter-wise
    shift ``D_c`` = ``offset`` (eq. 9-10); requantized with ``mult``/``shift`` to signed
    ``out_bits``. Golden function: :func:`quant.arith.hswish_requantize`.

    Parameters
    ----------
    lanes : int
        Channels per transfer (1..256).
    acc_bits, mult_bits, shift_bits, out_bits : int
        Widths of the accumulator and of the two requantizations (as :class:`Requantizer`).
    hswish_bits : int
        Width of the signed pre-activation ``h`` (4..16); ``three`` is ``hswish_bits - 1`` bits.
    offset_bits : int
        Width of the signed filter-wise shift ``D_c`` (2..32).

    Members
    -------
    i : In(stream.Signature(StructLayout({"acc": ArrayLayout(signed(acc_bits), lanes),
            "h_mult", "mult": ArrayLayout(unsigned(mult_bits), lanes),
            "h_shift", "shift": ArrayLayout(unsigned(shift_bits), lanes),
            "offset": ArrayLayout(signed(offset_bits), lanes), "three": unsigned(hswish_bits - 1)})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), lanes)})))

    Latency 9 cycles (requantize 3, clamp 1, product 1, shift 1, requantize 3); throughput
    ``lanes`` values per cycle.
    """

    LATENCY = 2 * Requantizer.LATENCY + 3

    def __init__(self, lanes=8, acc_bits=32, mult_bits=16, shift_bits=6, out_bits=8, hswish_bits=12,
                 offset_bits=24):
        check_widths(lanes=lanes, acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                     out_bits=out_bits, hswish_bits=hswish_bits, shift_offset_bits=offset_bits)
        vec = lambda shape: data.ArrayLayout(shape, lanes)  # noqa: E731
        in_layout = data.StructLayout({
            "acc": vec(signed(acc_bits)),
            "h_mult": vec(unsigned(mult_bits)), "h_shift": vec(unsigned(shift_bits)),
            "offset": vec(signed(offset_bits)),
            "mult": vec(unsigned(mult_bits)), "shift": vec(unsigned(shift_bits)),
            "three": unsigned(hswish_bits - 1),
        })
        out_layout = data.StructLayout({"q": vec(signed(out_bits))})
        params = dict(lanes=lanes, acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                      out_bits=out_bits, hswish_bits=hswish_bits, offset_bits=offset_bits)
        self._stream_init(params, in_layout, out_layout)

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency)
        b, hb = self.i.payload, self._p["hswish_bits"]
        rq = Requantizer.LATENCY
        three = p.delay(b.three, rq, "three")
        for k in range(self._p["lanes"]):
            h = requantize_stages(p, b.acc[k], b.h_mult[k], b.h_shift[k], self._p["shift_bits"], hb,
                                  f"pre{k}")
            q = hswish_tail_stages(p, h, three, p.delay(b.offset[k], rq, f"offset{k}"),
                                   p.delay(b.mult[k], rq, f"mult{k}"), p.delay(b.shift[k], rq, f"shift{k}"),
                                   self._p["shift_bits"], self._p["out_bits"], f"tail{k}")
            m.d.comb += self.o.payload.q[k].eq(q)
        return m


def hswish_tail_stages(p, h, three, offset, mult, shift, shift_bits, out_bits, name):
    """The Hardswish after its pre-activation, six stages of pipeline ``p`` for one lane:
    ``g = clamp(h + T, 0, 2T)`` (T = ``three``), the product ``h * g`` (one DSP48E2), minus the
    filter-wise shift ``offset``, requantized with ``mult``/``shift`` to signed ``out_bits``.
    ``h`` is the registered signed pre-activation; ``three``, ``offset``, ``mult`` and ``shift``
    are given in its stage. Shared by :class:`Hardswish` and the core's post-processing path."""
    hb = len(h)
    # clamp(h + T, 0, 2T): h + T is hswish_bits + 1 bits signed.
    t = h + three
    g = p.stage(Mux(t < 0, 0, Mux(t > 2 * three, 2 * three, t)), f"{name}_gate", unsigned(hb))
    h1 = p.stage(h, f"{name}_h")
    prod = p.stage(h1 * g, f"{name}_prod", signed(2 * hb + 1))
    offset = p.delay(offset, 2, f"{name}_offset")
    diff = p.stage(prod - offset, f"{name}_diff", signed(max(2 * hb + 1, len(offset)) + 1))
    return requantize_stages(p, diff, p.delay(mult, 3, f"{name}_mult"), p.delay(shift, 3, f"{name}_shift"),
                             shift_bits, out_bits, f"{name}_out")
