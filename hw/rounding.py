"""RTL form of the contract's rounding shift and saturation (docs/arithmetic.md, section 0).

``clamp(round_half_up(x / 2**n))`` to a narrow output is split across two pipeline stages, with no
full-width shifter and no full-width comparison:

- stage 1, :func:`shift_window`: the low ``out_bits + 1`` bits of ``x >>> (n-1)`` (a log shifter
  trimmed to the bits each level still needs) and whether that shifted value fits those bits
  (every bit of ``x`` from position ``n - 1 + out_bits`` up equals the sign);
- stage 2, :func:`finish_round`: ``(t + 1) >>> 1`` on the window when ``n > 0``, then the
  saturation — to the sign's bound when the value did not fit, else by comparing the window.

Exact: a shifted value that does not fit ``out_bits + 1`` bits is beyond the output range before
and after the final halving (the one edge, ``-2**out_bits - 1`` rounding to the lower bound, lands
on that bound too).
"""

from amaranth.hdl import Cat, Const, Mux

__all__ = ["finish_round", "saturate", "shift_window"]


def saturate(value, bits):
    """Clamp ``value`` to the signed ``bits``-wide range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


def shift_window(x, s, bits):
    """``(low, fits)``: bits [0, ``bits``) of ``x >>> s`` as a signed value, and whether ``x >>> s``
    fits signed ``bits`` (so that ``low`` equals it). ``x`` signed, ``s`` unsigned."""
    total = bits + (1 << len(s)) - 1  # what the widest shift reaches
    v = Cat(x, x[-1].replicate(total - len(x))) if total > len(x) else x
    for k in reversed(range(len(s))):  # once level k is done, less than 2**k remains to shift
        step = 1 << k
        n = bits + step - 1
        v = Mux(s[k], v[step:step + n], v[:n])
    sign = x[-1]
    # bit j of x lies at or above the window's sign bit (j >= s + bits - 1) <=> s <= j - bits + 1
    spill = [(x[j] ^ sign) & (s <= j - bits + 1) for j in range(bits - 1, len(x) - 1)]
    fits = ~Cat(*spill).any() if spill else Const(1)
    return v[:bits].as_signed(), fits


def finish_round(low, fits, sign, rounds, bits):
    """From a registered :func:`shift_window` (``low`` of ``bits + 1`` bits, ``fits``) and the
    value's ``sign``: ``(low + 1) >>> 1`` when ``rounds`` else ``low``, saturated to signed
    ``bits`` (to the sign's bound when the shifted value did not fit)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(fits, saturate(Mux(rounds, (low + 1) >> 1, low), bits), Mux(sign, lo, hi))
