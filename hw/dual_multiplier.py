"""Two int8 products sharing one operand, optionally packed into one DSP48E2 (Xilinx WP486)."""

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_bool
from quant.arith import PACK_SHIFT

__all__ = ["DualMultiplier", "paired_products", "paired_dsps", "product_dsps"]


class DualMultiplier(wiring.Component):
    """``p0 = a * b0`` and ``p1 = a * b1`` for signed 8-bit operands; combinational.

    With ``packing`` the two products come from one 27x8 multiplication of
    ``(b1 << 18) + b0`` by ``a`` (a DSP48E2's pre-adder and multiplier), decoded as
    ``p0 = P[0:16]`` and ``p1 = P[18:34] + P[17]``: exact for every operand (proved by a Yosys SAT
    equivalence check against the unpacked form, ``tests/test_dual_multiplier.py``). Without it,
    two plain multipliers. Golden: :func:`quant.arith.packed_products`.

    Members
    -------
    a, b0, b1 : In(signed(8))
    p0, p1 : Out(signed(16))

    Latency 0 (the engines register around it); one pair of products per cycle.
    """

    a: In(signed(8))
    b0: In(signed(8))
    b1: In(signed(8))
    p0: Out(signed(16))
    p1: Out(signed(16))

    def __init__(self, packing=True):
        check_bool("packing", packing)
        self._packing = packing
        super().__init__()

    packing = property(lambda self: self._packing)

    def elaborate(self, platform):
        m = Module()
        if self._packing:
            packed = (self.b1 << PACK_SHIFT) + self.b0  # the pre-adder: signed 27 bits
            product = packed * self.a
            m.d.comb += [
                self.p0.eq(product[0:16].as_signed()),
                self.p1.eq(product[PACK_SHIFT:PACK_SHIFT + 16].as_signed() + product[PACK_SHIFT - 1]),
            ]
        else:
            m.d.comb += [self.p0.eq(self.a * self.b0), self.p1.eq(self.a * self.b1)]
        return m


def paired_products(m, p, lanes, columns, shared, operand, packing):
    """Registered products ``shared(k) * operand(lane, k)`` for every lane and column, on one
    :class:`DualMultiplier` per pair of lanes (2j, 2j+1) and column k (one DSP48E2 with packing);
    an odd last lane uses half a multiplier. ``p`` is the engine's :class:`hw.pipeline.Pipeline`.
    Returns ``products[lane][k]`` (signed 16, one pipeline stage). Shared by both engines."""
    products = [[None] * columns for _ in range(lanes)]
    for j in range(0, lanes, 2):
        for k in range(columns):
            mul = m.submodules[f"mul_{j}_{k}"] = DualMultiplier(packing)
            pair = j + 1 < lanes
            m.d.comb += [mul.a.eq(shared(k)), mul.b0.eq(operand(j, k)),
                         mul.b1.eq(operand(j + 1, k) if pair else 0)]
            products[j][k] = p.stage(mul.p0, f"prod_{j}_{k}")
            if pair:
                products[j + 1][k] = p.stage(mul.p1, f"prod_{j + 1}_{k}")
    return products


def product_dsps(a_bits, b_bits):
    """DSP48E2 slices of one product of a signed ``a_bits`` and a signed ``b_bits`` operand (an
    unsigned operand counts one bit more) as synthesis splits it: one when it fits the 27 x 18
    multiplier, else one per 26-bit piece of the wider operand against the narrower (up to 18
    bits; wider pairs split both). Checked against Yosys by ``make resources``."""
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    pieces = lambda n, first: 1 + max(0, -(-(n - first) // (first - 1)))  # noqa: E731
    if b <= 18:
        return pieces(a, 27)
    return pieces(a, 27) * pieces(b, 18)


def paired_dsps(lanes, columns, packing):
    """DSP48E2 slices :func:`paired_products` uses: one per lane pair and column when packing."""
    return columns * ((lanes + 1) // 2 if packing else lanes)
