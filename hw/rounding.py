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

__all__ = ["finish_round", "round_window_stages", "shift_window"]


def shift_window(m, x, s, bits, name):
    """``(low, fits)``: bits [0, ``bits``) of ``x >>> s`` as a signed value, and whether ``x >>> s``
    fits signed ``bits`` (so that ``low`` equals it). ``x`` signed, ``s`` unsigned; each level of
    the shifter is a signal of module ``m`` (``name``: their prefix), so the emitted Verilog holds
    each level once.

    Level k (a shift by ``2**k`` or none) keeps the ``bits + 2**k - 1`` low bits that later levels
    can still reach. Without its shift it leaves out the ``2**k`` bits above them, which then lie
    above the window: ``fits`` holds when no level left out a bit that differs from the sign and
    the window's own top bit equals the sign (its ``2**k`` bits compared once per level, not a
    comparison of the shift against every bit position)."""
    shift = Signal(len(s), name=f"{name}_shift")  # once, not re-emitted at every use
    m.d.comb += shift.eq(s)
    s = shift
    sign = x[-1]
    total = bits + (1 << len(s)) - 1  # what the widest shift reaches
    v = Cat(x, sign.replicate(total - len(x))) if total > len(x) else x
    spills = []
    for k in reversed(range(len(s))):  # once level k is done, less than 2**k remains to shift
        step = 1 << k
        n = bits + step - 1
        above = v[n:n + step]  # left out of the window unless this level shifts
        if len(above):
            spill = Signal(name=f"{name}_spill{step}")
            m.d.comb += spill.eq(~s[k] & (above != sign.replicate(len(above))))
            spills.append(spill)
        level = Signal(n, name=f"{name}_by{step}")
        m.d.comb += level.eq(Mux(s[k], v[step:step + n], v[:n]))
        v = level
    fits = Signal(name=f"{name}_fits")
    m.d.comb += fits.eq(~Cat(*spills, v[bits - 1] ^ sign).any())
    return v[:bits].as_signed(), fits


def finish_round(m, low, fits, sign, rounds, bits, name, narrow=()):
    """From a registered :func:`shift_window` (``low`` of ``bits + 1`` bits, ``fits``) and the
    value's ``sign``: ``(low + 1) >>> 1`` when ``rounds`` else ``low``, saturated to signed
    ``bits`` (to the sign's bound when the shifted value did not fit); a signal of module ``m``.
    ``narrow``: (condition, width) pairs, width < ``bits``; where a condition holds (the first
    that does), the result saturates to signed ``width`` instead — the same in-range test and
    bound selection, not a second saturation behind the first (clamps nest, so both agree)."""
    rounded = Signal(signed(bits + 1), name=f"{name}_rounded")
    m.d.comb += rounded.eq(Mux(rounds, (low + 1) >> 1, low))

    def in_range(width):  # rounded fits signed width: its bits from width - 1 up are all equal
        top = rounded[width - 1:]
        return (top == 0) | (top == (1 << len(top)) - 1)

    ok = in_range(bits)
    lo, hi = Const(-(1 << (bits - 1)), signed(bits)), Const((1 << (bits - 1)) - 1, signed(bits))
    for cond, width in reversed(narrow):
        ok = Mux(cond, in_range(width), ok)
        lo, hi = Mux(cond, -(1 << (width - 1)), lo), Mux(cond, (1 << (width - 1)) - 1, hi)
    inside = Signal(name=f"{name}_inside")
    m.d.comb += inside.eq(fits & ok)
    q = Signal(signed(bits), name=f"{name}_saturated")
    m.d.comb += q.eq(Mux(inside, rounded, Mux(sign, lo, hi)))
    return q


def round_window_stages(p, x, s, rounds, bits, name, narrow=()):
    """Stage 1 of pipeline ``p`` (the :func:`shift_window` of ``x`` by ``s`` for ``bits`` outputs,
    the fit flag, the sign and ``rounds`` registered), then :func:`finish_round` on it (with
    ``narrow``, its conditions given in stage 2): the unregistered ``clamp(round_half_up(...))``
    to signed ``bits``, for the caller's stage 2. Shared by the requantizers and the shifter
    array."""
    low, fits = shift_window(p.module, x, s, bits + 1, f"{name}_window")
    low = p.stage(low, f"{name}_pre")
    fits = p.stage(fits, f"{name}_fits")
    sign = p.stage(x[-1], f"{name}_sign")
    rounds = p.stage(rounds, f"{name}_rounds")
    return finish_round(p.module, low, fits, sign, rounds, bits, name, narrow)
