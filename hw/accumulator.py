"""Lane accumulators across beats: the global-average-pool sums and the Σ ReLU(K) sums over tokens."""

from amaranth.hdl import Module, Mux, Shape, Signal, unsigned
from amaranth.hdl import signed as signed_shape
from amaranth.lib import data, wiring

from hw.params import check_bool, check_int
from hw.pipeline import Pipeline, StreamUnit

__all__ = ["Accumulator"]


class Accumulator(StreamUnit, wiring.Component):
    """``lanes`` running sums: ``first`` starts a sum with the beat's ``x``, every further beat adds
    its ``x``, ``last`` emits the sums. The pool sums a channel's pixels (int8 inputs); behind the
    adder tree it sums the per-beat row sums of ReLU(K) over all tokens (unsigned inputs). The sums
    are exact: the contract bounds them inside ``acc_bits`` (docs/arithmetic.md §9). Golden
    function: :func:`quant.arith.accumulate`.

    Parameters
    ----------
    lanes : int
        Sums kept in parallel (1..256).
    in_bits : int
        Width of each input (1..32).
    signed : bool
        Inputs are signed (pool) or unsigned (row sums of ReLU(K)).
    acc_bits : int
        Width of the signed sums (16..48).

    Members
    -------
    i : In(stream.Signature(StructLayout({"x": ArrayLayout(shape(in_bits), lanes), "first": 1,
            "last": 1})))
    o : Out(stream.Signature(StructLayout({"sum": ArrayLayout(signed(acc_bits), lanes)})))

    Latency 1 cycle from the ``last`` beat to its sums; throughput one beat per cycle.
    """

    LATENCY = 1

    def __init__(self, lanes=8, in_bits=8, signed=True, acc_bits=32):
        check_int("Lane count", lanes, 1, 256)
        check_int("Input width", in_bits, 1, 32)
        check_bool("signed", signed)
        check_int("Accumulator width", acc_bits, 16, 48)
        in_layout = data.StructLayout({"x": data.ArrayLayout(Shape(in_bits, signed), lanes),
                                       "first": unsigned(1), "last": unsigned(1)})
        out_layout = data.StructLayout({"sum": data.ArrayLayout(signed_shape(acc_bits), lanes)})
        params = dict(lanes=lanes, in_bits=in_bits, signed=signed, acc_bits=acc_bits)
        self._stream_init(params, in_layout, out_layout)

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency, drive_output=False)
        b = self.i.payload
        out_valid = Signal()
        m.d.comb += self.o.valid.eq(out_valid)
        step = p.en & self.i.valid
        with m.If(p.en):
            m.d.sync += out_valid.eq(self.i.valid & b.last)
        for k in range(self._p["lanes"]):
            acc = Signal(signed_shape(self._p["acc_bits"]), name=f"acc{k}")
            with m.If(step):
                m.d.sync += acc.eq(Mux(b.first, 0, acc) + b.x[k])
            m.d.comb += self.o.payload.sum[k].eq(acc)
        return m


