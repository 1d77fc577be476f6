"""Pipelined adder tree: the auxiliary processor that row-sums ReLU(K) (paper section V-A2)."""

from amaranth.hdl import Module, Shape, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_bool, check_int
from hw.pipeline import Pipeline
from quant.arith import tree_output_bits

__all__ = ["AdderTree", "pipelined_sum", "tree_levels"]


class AdderTree(wiring.Component):
    """Exact sum of ``inputs`` integers of ``width`` bits; a register after every tree level.

    The output is ``width + ceil(log2(inputs))`` bits wide, so it never overflows. Golden
    function: :func:`quant.arith.adder_tree`.

    Parameters
    ----------
    inputs : int
        Number of summands (1..1024).
    width : int
        Width of each summand (1..32).
    signed : bool
        Summands (and the sum) are signed; unsigned for the ReLU(K) row-sum.

    Members
    -------
    i : In(stream.Signature(StructLayout({"x": ArrayLayout(shape(width), inputs)})))
    o : Out(stream.Signature(StructLayout({"sum": shape(out_bits)})))

    Latency ``max(1, ceil(log2(inputs)))`` cycles; throughput one sum per cycle.
    """

    def __init__(self, inputs=8, width=8, signed=True):
        check_int("Input count", inputs, 1, 1024)
        check_int("Input width", width, 1, 32)
        check_bool("signed", signed)
        self._inputs, self._width, self._signed = inputs, width, signed
        self._out_bits = tree_output_bits(inputs, width)
        in_shape = Shape(width, signed)
        in_layout = data.StructLayout({"x": data.ArrayLayout(in_shape, inputs)})
        out_layout = data.StructLayout({"sum": Shape(self._out_bits, signed)})
        super().__init__({"i": In(stream.Signature(in_layout)),
                          "o": Out(stream.Signature(out_layout))})

    inputs = property(lambda self: self._inputs)
    out_bits = property(lambda self: self._out_bits)
    latency = property(lambda self: tree_levels(self._inputs))
    params = property(lambda self: dict(inputs=self._inputs, width=self._width,
                                        signed=self._signed))

    def elaborate(self, platform):
        m = Module()
        p = Pipeline(m, self.i, self.o, self.latency)
        values = [self.i.payload.x[k] for k in range(self._inputs)]
        m.d.comb += self.o.payload.sum.eq(pipelined_sum(p, values, self._width, self._signed))
        return m


def tree_levels(inputs):
    """Register levels of :func:`pipelined_sum` for ``inputs`` summands: max(1, ceil(log2))."""
    return max(1, (inputs - 1).bit_length())


def pipelined_sum(p, values, width, is_signed, name="sum"):
    """Binary adder tree over ``values`` (each ``width`` bits) with a register after every level
    of pipeline ``p``; returns the exact sum, ``tree_output_bits(len(values), width)`` wide.
    Shared by :class:`AdderTree` and the engines' PE lanes."""
    mk = signed if is_signed else unsigned
    out_bits = tree_output_bits(len(values), width)
    level = list(values)
    for depth in range(tree_levels(len(values))):
        nxt = []
        for j in range(0, len(level), 2):
            pair = level[j:j + 2]
            total = pair[0] + pair[1] if len(pair) == 2 else pair[0]
            nxt.append(p.stage(total, f"{name}_l{depth + 1}_{j // 2}",
                               mk(min(width + depth + 1, out_bits))))
        level = nxt
    return level[0]
