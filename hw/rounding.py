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

from amaranth.hdl import Cat, Const, Mux, Signal, signed

__all__ = ["finish_round", "round_window_stages", "saturate", "shift_window"]


def saturate(value, bits):
    """Clamp ``value`` to the signed ``bits``-wide range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


def shift_window(m, x, s, bits, name):
    """``(low, fits)``: bits [0, ``bits``) of ``x >>> s`` as a signed value, and whether ``x >>> s``
    fits signed ``bits`` (so that ``low`` equals it). ``x`` signed, ``s`` unsigned; each level of
    the shifter is a signal of module ``m`` (``name``: their prefix), so the emitted Verilog holds
    each level once."""
    shift = Signal(len(s), name=f"{name}_shift")  # once, not re-emitted at every use
    m.d.comb += shift.eq(s)
    s = shift
    total = bits + (1 << len(s)) - 1  # what the widest shift reaches
    v = Cat(x, x[-1].replicate(total - len(x))) if total > len(x) else x
    for k in reversed(range(len(s))):  # once level k is done, less than 2**k remains to shift
        step = 1 << k
        n = bits + step - 1
        level = Signal(n, name=f"{name}_by{step}")
        m.d.comb += level.eq(Mux(s[k], v[step:step + n], v[:n]))
        v = level
    # bit bits-1+i of x lies at or above the window's sign bit (position s + bits - 1) <=> s <= i:
    # a thermometer mask of s over the bits above the window's low ones
    above = (x ^ x[-1].replicate(len(x)))[bits - 1:len(x) - 1]
    mask = Cat(*(s <= i for i in range(len(above))))
    fits = (above & mask) == 0 if len(above) else Const(1)
    return v[:bits].as_signed(), fits


def finish_round(m, low, fits, sign, rounds, bits, name):
    """From a registered :func:`shift_window` (``low`` of ``bits + 1`` bits, ``fits``) and the
    value's ``sign``: ``(low + 1) >>> 1`` when ``rounds`` else ``low``, saturated to signed
    ``bits`` (to the sign's bound when the shifted value did not fit); a signal of module ``m``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    rounded = Signal(signed(bits + 1), name=f"{name}_rounded")
    m.d.comb += rounded.eq(Mux(rounds, (low + 1) >> 1, low))
    q = Signal(signed(bits), name=f"{name}_saturated")
    m.d.comb += q.eq(Mux(fits, saturate(rounded, bits), Mux(sign, lo, hi)))
    return q


def round_window_stages(p, x, s, rounds, bits, name):
    """Stage 1 of pipeline ``p`` (the :func:`shift_window` of ``x`` by ``s`` for ``bits`` outputs,
    the fit flag, the sign and ``rounds`` registered), then :func:`finish_round` on it: the
    unregistered ``clamp(round_half_up(...))`` to signed ``bits``, for the caller's stage 2.
    Shared by the requantizers and the shifter array."""
    low, fits = shift_window(p.module, x, s, bits + 1, f"{name}_window")
    low = p.stage(low, f"{name}_pre")
    fits = p.stage(fits, f"{name}_fits")
    sign = p.stage(x[-1], f"{name}_sign")
    rounds = p.stage(rounds, f"{name}_rounds")
    return finish_round(p.module, low, fits, sign, rounds, bits, name)
