"""One engine's post-processing path: a requantizer shared by the plain int8 outputs, the integer
Hardswish and the attention output, with the Hardswish tail and the shifter array behind it."""

import enum

from amaranth.hdl import Cat, Module, signed, unsigned
from amaranth.lib import data, wiring

from hw.attention_output import AttentionOutput
from hw.dual_multiplier import product_dsps
from hw.hardswish import Hardswish, hswish_tail_stages
from hw.log2_quantizer import log2_stages
from hw.params import check_clip_range, check_widths
from hw.pipeline import Pipeline, StreamUnit
from hw.requantizer import Requantizer, requantize_stages
from hw.shifter_array import shift_divide_stages
from quant import arith
from quant.arith import signed_bits

__all__ = ["PostMode", "PostProcessor"]


class PostMode(enum.IntEnum):
    """What a :class:`PostProcessor` makes of its accumulators."""

    REQUANT = 0  # requantize to int8 (quant.arith.requantize)
    HSWISH = 1  # integer Hardswish (quant.arith.hswish_requantize)
    ATTN = 2  # attention output (quant.arith.attention_output)


class PostProcessor(StreamUnit, wiring.Component):
    """``lanes`` int32 accumulators to ``lanes`` int8 results, one vector per cycle, in one of three
    modes (:class:`PostMode`) that share the first requantizer's multipliers (two DSP48E2 per lane).

    - ``REQUANT``: ``requantize(acc, mult, shift)`` to signed ``out_bits``.
    - ``HSWISH``: ``h = requantize(acc, mult, shift)`` saturated to the ``hswish_bits``
      pre-activation, then the Hardswish tail (:func:`hw.hardswish.hswish_tail_stages`: the
      product ``h * clamp(h + T, 0, 2T)``, T = ``three``, one DSP48E2 per lane; minus ``offset``;
      requantized with ``mult2``/``shift2``, one DSP48E2 per lane).
    - ``ATTN``: the dividend ``requantize(acc, mult, shift)`` saturated to ``dividend_bits``,
      divided by ``2**e`` with ``e`` the log2 code of the divisor ``den`` (``log2_offset``), as
      :class:`hw.attention_output.AttentionOutput`.

    Golden functions: those of each mode above. So four DSP48E2 per lane serve what took eight
    (a Requantizer, a Hardswish and an AttentionOutput: 2 + 4 + 2).

    Parameters
    ----------
    lanes : int
        Channels per transfer (1..256).
    acc_bits, mult_bits, shift_bits, out_bits : int
        As :class:`hw.requantizer.Requantizer`.
    hswish_bits, offset_bits : int
        As :class:`hw.hardswish.Hardswish` (pre-activation, filter-wise shift).
    dividend_bits, log2_offset_bits, lo, hi : int
        As :class:`hw.attention_output.AttentionOutput` (``log2_offset_bits`` is its ``offset_bits``).
    same_latency : bool
        Every mode leaves after :attr:`LATENCY` cycles (default: each after its own, :attr:`LATENCIES`).

    Members
    -------
    i : In(stream.Signature(StructLayout({"mode": unsigned(2), "acc": ArrayLayout(signed(acc_bits), lanes),
            "mult", "mult2": ArrayLayout(unsigned(mult_bits), lanes),
            "shift", "shift2": ArrayLayout(unsigned(shift_bits), lanes),
            "offset": ArrayLayout(signed(offset_bits), lanes), "three": unsigned(hswish_bits - 1),
            "den": unsigned(acc_bits), "log2_offset": signed(log2_offset_bits)})))
    o : Out(stream.Signature(StructLayout({"q": ArrayLayout(signed(out_bits), lanes)})))

    Latency by mode (:attr:`LATENCIES`): REQUANT 3, HSWISH 9, ATTN 5 cycles — a result leaves from
    the stage where its mode ends, so the mode may change only while the unit is empty (the core
    changes it between commands, after their last write). With ``same_latency``, every mode leaves
    after :attr:`LATENCY` cycles (the faster modes' results carried to the last stage), so results
    of different modes may follow each other: the computing core's one post-processor serves a
    depthwise command and the pointwise command beside it. Throughput one vector per cycle. The
    stages all advance together while ``o`` is empty or taken (``hw.pipeline.Pipeline``).
    """

    # each mode leaves at the latency of the unit it stands for (the same stages, built once)
    LATENCIES = {PostMode.REQUANT: Requantizer.LATENCY, PostMode.HSWISH: Hardswish.LATENCY,
                 PostMode.ATTN: AttentionOutput.LATENCY}
    LATENCY = max(LATENCIES.values())

    def __init__(self, lanes=8, acc_bits=32, mult_bits=16, shift_bits=6, out_bits=8,
                 hswish_bits=arith.HSWISH_BITS, offset_bits=arith.SHIFT_OFFSET_BITS,
                 dividend_bits=arith.DIVIDEND_BITS, log2_offset_bits=arith.OFFSET_BITS,
                 lo=arith.LOG2_MIN, hi=arith.LOG2_MAX, same_latency=False):
        if not isinstance(same_latency, bool):
            raise TypeError(f"same_latency must be a bool, not {same_latency!r}")
        self._same = same_latency
        check_widths(lanes=lanes, acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                     out_bits=out_bits, hswish_bits=hswish_bits, shift_offset_bits=offset_bits,
                     dividend_bits=dividend_bits, log2_offset_bits=log2_offset_bits)
        check_clip_range(lo, hi)
        vec = lambda shape: data.ArrayLayout(shape, lanes)  # noqa: E731
        in_layout = data.StructLayout({
            "mode": unsigned(2), "acc": vec(signed(acc_bits)),
            "mult": vec(unsigned(mult_bits)), "shift": vec(unsigned(shift_bits)),
            "mult2": vec(unsigned(mult_bits)), "shift2": vec(unsigned(shift_bits)),
            "offset": vec(signed(offset_bits)), "three": unsigned(hswish_bits - 1),
            "den": unsigned(acc_bits), "log2_offset": signed(log2_offset_bits),
        })
        out_layout = data.StructLayout({"q": vec(signed(out_bits))})
        self._stream_init(dict(lanes=lanes, acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=shift_bits,
                               out_bits=out_bits, hswish_bits=hswish_bits, offset_bits=offset_bits,
                               dividend_bits=dividend_bits, log2_offset_bits=log2_offset_bits,
                               lo=lo, hi=hi, same_latency=same_latency), in_layout, out_layout)

    @property
    def dsps(self):
        """DSP48E2 slices: per lane the front product (acc x mult), the Hardswish product and the
        Hardswish requantizer's product (``hw.dual_multiplier.product_dsps``)."""
        q = self._p
        diff_bits = max(2 * q["hswish_bits"] + 1, q["offset_bits"]) + 1
        return q["lanes"] * (product_dsps(q["acc_bits"], q["mult_bits"] + 1)
                             + product_dsps(q["hswish_bits"], q["hswish_bits"] + 1)
                             + product_dsps(diff_bits, q["mult_bits"] + 1))

    def latency_of(self, mode):
        """Cycles from an input transfer to its result in ``mode``."""
        return self.LATENCY if self._same else self.LATENCIES[PostMode(mode)]

    def elaborate(self, platform):
        m = Module()
        q = self._p
        p = Pipeline(m, self.i, self.o, self.LATENCY, drive_output=False)
        b = self.i.payload
        rq = Requantizer.LATENCY
        mode = [b.mode]  # the mode in each stage
        for k in range(self.LATENCY):
            mode.append(p.stage(mode[-1], f"mode_s{k + 1}"))
        # a result leaves from the stage where its mode ends, or (same_latency) from the last,
        # its value carried there from the stage where its mode ends
        done = {md: p.valids[lat] & (mode[lat] == md) for md, lat in self.LATENCIES.items()}
        if self._same:
            done = {md: p.valids[self.LATENCY] & (mode[self.LATENCY] == md) for md in self.LATENCIES}
        m.d.comb += self.o.valid.eq(Cat(*done.values()).any())
        wide = max(q["out_bits"], q["hswish_bits"], q["dividend_bits"])
        narrow = [(mode[rq - 1] == md, bits) for md, bits in ((PostMode.REQUANT, q["out_bits"]),
                                                               (PostMode.HSWISH, q["hswish_bits"]),
                                                               (PostMode.ATTN, q["dividend_bits"]))
                  if bits < wide]
        three = p.delay(b.three, rq, "three")
        e = log2_stages(m, p, b.den, b.log2_offset, q["lo"], q["hi"], "log2")
        e = p.delay(e, rq - 2, "code")
        for k in range(q["lanes"]):
            front = requantize_stages(p, b.acc[k], b.mult[k], b.shift[k], q["shift_bits"], wide,
                                      f"front{k}", narrow)
            hs = hswish_tail_stages(p, front[:q["hswish_bits"]].as_signed(), three,
                                    p.delay(b.offset[k], rq, f"offset{k}"),
                                    p.delay(b.mult2[k], rq, f"mult2_{k}"),
                                    p.delay(b.shift2[k], rq, f"shift2_{k}"), q["shift_bits"],
                                    q["out_bits"], f"hswish{k}")
            at = shift_divide_stages(p, front[:q["dividend_bits"]].as_signed(), e,
                                     signed_bits(q["lo"], q["hi"]), q["out_bits"], f"div{k}")
            out = {PostMode.REQUANT: front[:q["out_bits"]], PostMode.HSWISH: hs, PostMode.ATTN: at}
            if self._same:
                out = {md: p.delay(v, self.LATENCY - self.LATENCIES[md], f"q{k}_{md.name.lower()}")
                       for md, v in out.items()}
            m.d.comb += self.o.payload.q[k].eq(out[PostMode.REQUANT])
            for md in self.LATENCIES:
                with m.If(done[md]):
                    m.d.comb += self.o.payload.q[k].eq(out[md])
        return m
