"""RTL form of the contract's rounding shift and saturation (docs/arithmetic.md, section 0).

``round_half_up(x / 2**n)`` is split across two pipeline stages so no variable-width rounding
constant is needed: :func:`pre_shift` computes ``x >>> (n-1)`` (and whether n > 0), then
:func:`round_saturate` computes ``(t + 1) >>> 1`` and clamps to the output width.
"""

from amaranth.hdl import Mux

__all__ = ["pre_shift", "round_saturate", "saturate"]


def pre_shift(x, n, n_bits):
    """``x >>> (n-1)`` for n > 0, ``x`` for n = 0; ``n`` is unsigned ``n_bits`` wide."""
    return x >> Mux(n == 0, 0, (n - 1)[:n_bits])


def saturate(value, bits):
    """Clamp ``value`` to the signed ``bits``-wide range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


def round_saturate(t, rounds, bits):
    """Finish the rounding shift (``(t + 1) >>> 1`` when ``rounds``) and saturate to ``bits``."""
    return saturate(Mux(rounds, (t + 1) >> 1, t), bits)
