"""The integer arithmetic contract of trio-vit: the golden functions.

Every hardware unit in ``hw/`` and the quantizer's integer model compute exactly these functions;
``docs/arithmetic.md`` states the contract in prose, with widths, signedness, rounding and
saturation. The functions take integers or integer arrays, compute in int64 (every intermediate
of the contract fits in 63 bits), check that each operand lies in its declared range (raising
``ValueError`` naming the operand and the first offending value) and never wrap silently.

One rounding rule everywhere: **round half up** (towards +inf), implemented as add-then-shift.
One saturation rule everywhere: clamp to the two's-complement range of the output width.
"""

import numpy as np

# Widths of the paper's configuration (docs/arithmetic.md, section 1).
ACT_BITS = 8  # int8 activations, symmetric, layer-wise scale
WEIGHT_BITS = 8  # int8 weights, symmetric, filter-wise scale
ACC_BITS = 32  # int32 bias and accumulators
MULT_BITS = 16  # unsigned dyadic multiplier b of eq. 12
SHIFT_BITS = 6  # unsigned dyadic shift c of eq. 12 (0..63)
LOG2_BITS = 4  # signed log2 code of a divisor (eq. 11)
LOG2_MIN, LOG2_MAX = -8, 7  # clip range of the log2 code: the 4-bit signed range
DIVIDEND_BITS = 16  # signed dividend entering the shifter array
DIVISOR_BITS = 32  # unsigned divisor entering the log2 quantizer (q . sum(k) accumulators)
OFFSET_BITS = 6  # signed precomputed offset round(log2(S_Q * S_Ksum)) of eq. 11


def int_range(bits, signed=True):
    """The inclusive range (lo, hi) of a ``bits``-wide integer."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def signed_bits(lo, hi):
    """Narrowest two's-complement width holding every integer of [lo, hi]."""
    return max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length() if hi > 0 else 0) + 1


def check_range(x, bits, signed=True, name="value"):
    """Return ``x`` as an int64 array after checking it fits ``bits`` (signed or unsigned)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must be integers, not {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = int_range(bits, signed)
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        first = arr[bad].flat[0]
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"{name} {first} outside the {bits}-bit {kind} range [{lo}, {hi}]")
    return arr


def saturate(x, bits):
    """Clamp ``x`` to the signed ``bits``-wide range."""
    lo, hi = int_range(bits, signed=True)
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def round_shift(x, n):
    """``x / 2**n`` rounded half up, for ``n >= 0`` (element-wise; ``n`` broadcasts).

    Hardware form: ``n == 0`` passes ``x``; otherwise ``((x >>> (n-1)) + 1) >>> 1`` with arithmetic
    shifts, which equals ``floor((x + 2**(n-1)) / 2**n)`` without a variable-width constant.
    """
    x = np.asarray(x, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    if (n < 0).any():
        raise ValueError(f"shift {n[n < 0].flat[0]} must be non-negative")
    pre = np.minimum(np.maximum(n - 1, 0), 62)  # a shift past 62 of an int64 only leaves the sign
    return np.where(n == 0, x, ((x >> pre) + 1) >> 1)


def quantize(x, scale, bits=ACT_BITS):
    """Host-side float to int: ``clamp(floor(x / scale + 0.5))`` (round half up), signed ``bits``."""
    q = np.floor(np.asarray(x, dtype=np.float64) / np.asarray(scale, dtype=np.float64) + 0.5)
    lo, hi = int_range(bits, signed=True)
    return np.clip(q, lo, hi).astype(np.int64)


def matmul_acc(a, w, bias=None, a_bits=ACT_BITS, w_bits=WEIGHT_BITS, acc_bits=ACC_BITS):
    """Integer ``a @ w + bias`` with the accumulator width checked, never wrapped.

    a: (..., K) signed ``a_bits``; w: (K, O) signed ``w_bits``; bias: (O,) signed ``acc_bits``.
    Raises ``OverflowError`` if any result (or partial sum bound) leaves ``acc_bits``.
    """
    a = check_range(a, a_bits, name="activation")
    w = check_range(w, w_bits, name="weight")
    return _biased(a @ w, bias, acc_bits)


def _biased(acc, bias, acc_bits):
    """``acc + bias`` with the bias and the result checked against ``acc_bits``, never wrapped."""
    if bias is not None:
        acc = acc + check_range(bias, acc_bits, name="bias")
    lo, hi = int_range(acc_bits)
    if (acc < lo).any() or (acc > hi).any():
        raise OverflowError(f"accumulator leaves the {acc_bits}-bit range [{lo}, {hi}]")
    return acc


def requantize(acc, mult, shift, out_bits=ACT_BITS,
               acc_bits=ACC_BITS, mult_bits=MULT_BITS, shift_bits=SHIFT_BITS):
    """Dyadic requantization (eq. 12): ``clamp(round_half_up(acc * b / 2**c))``.

    acc: signed ``acc_bits``; b = ``mult``: unsigned ``mult_bits``; c = ``shift``: unsigned
    ``shift_bits``. ``mult``/``shift`` broadcast against ``acc``: a scalar is per-tensor, a vector
    along the last (channel) axis is per-channel. Output: signed ``out_bits``, saturated.
    """
    acc = check_range(acc, acc_bits, name="accumulator")
    b = check_range(mult, mult_bits, signed=False, name="multiplier")
    c = check_range(shift, shift_bits, signed=False, name="shift")
    return saturate(round_shift(acc * b, c), out_bits)


def dyadic(scale, mult_bits=MULT_BITS, shift_bits=SHIFT_BITS):
    """Host side: the dyadic pair (b, c) with b / 2**c closest to ``scale`` (> 0), b < 2**mult_bits.

    Picks the largest c (most precision) such that ``round(scale * 2**c)`` still fits ``mult_bits``.
    Element-wise for per-channel scales. Raises ``ValueError`` if a scale cannot be represented.
    """
    s = np.asarray(scale, dtype=np.float64)
    if not np.isfinite(s).all() or (s <= 0).any():
        raise ValueError("requantization scales must be finite and positive")
    c_max = (1 << shift_bits) - 1
    b_lim = 1 << mult_bits
    # floor(log2(b_lim / s)) is the first guess for c; rounding may push b to b_lim, then c -= 1.
    c = np.clip(np.floor(np.log2(b_lim / s)).astype(np.int64), 0, c_max)
    b = np.floor(s * np.exp2(c.astype(np.float64)) + 0.5).astype(np.int64)
    over = (b >= b_lim) & (c > 0)
    c = np.where(over, c - 1, c)
    b = np.floor(s * np.exp2(c.astype(np.float64)) + 0.5).astype(np.int64)
    if (b >= b_lim).any():
        raise ValueError(f"scale {s[b >= b_lim].flat[0]!r} too large for a {mult_bits}-bit multiplier")
    if (b == 0).any():
        raise ValueError(f"scale {s[b == 0].flat[0]!r} too small for shifts up to {c_max}")
    return b, c


def leading_one(x):
    """Index of the most significant set bit of non-negative ``x``; -1 where ``x == 0``."""
    x = np.asarray(x, dtype=np.int64)
    if (x < 0).any():
        raise ValueError("leading_one takes non-negative integers")
    if (x >= 1 << 52).any():
        raise ValueError("leading_one is exact below 2**52 only")
    _, e = np.frexp(x.astype(np.float64))
    return np.where(x == 0, -1, e.astype(np.int64) - 1)


def log2_round(x):
    """The paper's LOD rule (eq. 11): leading-one index i plus bit (i-1) of ``x`` (x >= 1).

    Rounds up from 1.5 * 2**i (not from sqrt(2) * 2**i as round(log2(x)) would).
    Paper example: 0b01100011 -> i = 6, bit 5 = 1 -> 7.
    """
    x = np.asarray(x, dtype=np.int64)
    if (x < 1).any():
        raise ValueError("log2_round takes positive integers")
    i = leading_one(x)
    below = (x >> np.maximum(i - 1, 0)) & 1
    return i + np.where(i >= 1, below, 0)


def log2_quantize(x, offset, lo=LOG2_MIN, hi=LOG2_MAX, in_bits=DIVISOR_BITS, offset_bits=OFFSET_BITS):
    """The 4-bit log2 code of a divisor: ``clip(log2_round(x) + offset, lo, hi)``.

    x: unsigned ``in_bits`` integer divisor; offset: signed ``offset_bits``, the precomputed
    ``round(log2(S_Q * S_Ksum))``. A zero divisor counts as 1, the smallest positive divisor
    (docs/arithmetic.md section 3): its code is ``clip(offset, lo, hi)``.
    """
    x = check_range(x, in_bits, signed=False, name="divisor")
    off = check_range(offset, offset_bits, name="log2 offset")
    return np.clip(log2_round(np.maximum(x, 1)) + off, lo, hi)


def log2_offset(scale):
    """Host side: the integer offset ``round_half_up(log2(scale))`` of eq. 11."""
    s = np.asarray(scale, dtype=np.float64)
    if not np.isfinite(s).all() or (s <= 0).any():
        raise ValueError("divisor scales must be finite and positive")
    return np.floor(np.log2(s) + 0.5).astype(np.int64)


def shift_divide(x, e, out_bits=ACT_BITS, in_bits=DIVIDEND_BITS, e_bits=LOG2_BITS):
    """Division by the log2-quantized divisor 2**e as a shift: ``clamp(round_half_up(x / 2**e))``.

    x: signed ``in_bits`` dividend; e: signed ``e_bits`` log2 code. e >= 0 shifts right with
    rounding half up; e < 0 shifts left (exact). The result saturates to signed ``out_bits``.
    """
    x = check_range(x, in_bits, name="dividend")
    e = check_range(e, e_bits, name="log2 code")
    left = x << np.maximum(-e, 0)
    right = round_shift(x, np.maximum(e, 0))
    return saturate(np.where(e < 0, left, right), out_bits)


def tree_output_bits(inputs, in_bits):
    """Width of an adder tree's exact sum of ``inputs`` values of ``in_bits`` each."""
    return in_bits + max(inputs - 1, 0).bit_length()


def adder_tree(x, in_bits=ACT_BITS, signed=True):
    """Exact sum of ``x`` along its last axis (no rounding, no saturation, never overflows)."""
    x = check_range(x, in_bits, signed=signed, name="adder tree input")
    return x.sum(axis=-1)


# -- DSP packing (Xilinx WP486) -------------------------------------------------------------------
PACK_SHIFT = 18  # b1 sits 18 bits above b0 in the 27-bit packed operand


def packed_products(a, b0, b1):
    """Two int8 products sharing ``a`` from one wide multiplication, decoded bit by bit.

    ``pk = (b1 << 18) + b0`` (signed 27-bit), ``P = pk * a``; then ``a*b0 = signed(P[0:16])`` and
    ``a*b1 = signed(P[18:34]) + P[17]`` (P[17] is the borrow of a negative low product). This is
    the RTL's decode; tests show it equals the plain products for all 2**24 operand triples.
    """
    a = check_range(a, 8, name="shared operand")
    b0 = check_range(b0, 8, name="operand b0")
    b1 = check_range(b1, 8, name="operand b1")
    p = ((b1 << PACK_SHIFT) + b0) * a

    def field(v, lo, width):
        u = (v >> lo) & ((1 << width) - 1)
        return np.where(u >> (width - 1), u - (1 << width), u)

    return field(p, 0, 16), field(p, PACK_SHIFT, 16) + ((p >> (PACK_SHIFT - 1)) & 1)


# -- layer-level golden results (what the engines must produce) ---------------------------------
def im2col(x, k, stride, pad):
    """x: (C, H, W) -> (Ho*Wo, C*k*k) patches (zero padding ``pad``), channel-major then ky, kx."""
    x = np.asarray(x, dtype=np.int64)
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((ho * wo, c * k * k), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            patch = xp[:, oy * stride:oy * stride + k, ox * stride:ox * stride + k]
            cols[oy * wo + ox] = patch.reshape(-1)
    return cols, (ho, wo)


def conv2d_acc(x, w, bias=None, stride=1, pad=0, groups=1, acc_bits=ACC_BITS):
    """Integer convolution into checked int32 accumulators: x (C, H, W) int8, w (O, C/groups, k, k)
    int8, bias (O,) int32 -> (O, Ho, Wo). Covers generic, pointwise (k = 1), grouped and depthwise
    (groups = C) convolutions; zero padding."""
    x = check_range(x, ACT_BITS, name="activation")
    w = check_range(w, WEIGHT_BITS, name="weight")
    o, cg, k, _ = w.shape
    c = x.shape[0]
    if c != cg * groups or o % groups:
        raise ValueError(f"channels {c} and {o} do not split into {groups} groups of {cg}")
    og = o // groups
    outs = []
    for g in range(groups):
        cols, (ho, wo) = im2col(x[g * cg:(g + 1) * cg], k, stride, pad)
        wg = w[g * og:(g + 1) * og].reshape(og, -1).T
        bg = None if bias is None else np.asarray(bias)[g * og:(g + 1) * og]
        outs.append(matmul_acc(cols, wg, bg, acc_bits=acc_bits).T.reshape(og, ho, wo))
    return np.concatenate(outs)


# --- Ops added by the quantizer (docs/arithmetic.md section 9) -----------------------------------

HSWISH_BITS = 12  # signed pre-activation code entering the integer Hardswish
SHIFT_OFFSET_BITS = 24  # signed filter-wise shift D_c, on the Hardswish product grid


def hswish_product(h, three, in_bits=HSWISH_BITS):
    """Integer Hardswish numerator ``h * clamp(h + T, 0, 2T)`` of a pre-activation code ``h`` whose
    scale is ``3 / T`` (so ``T`` stands for 3.0). The real value is the product times
    ``(3 / T)**2 / 6``; requantize it to int8 with that scale folded into the multiplier."""
    h = check_range(h, in_bits, name="hswish input")
    t = np.asarray(three, dtype=np.int64)  # one per layer; an array broadcasts (per vector)
    bad = (t < 1) | (t >= 1 << (in_bits - 1))
    if bad.any():
        raise ValueError(f"hswish threshold {t[bad].flat[0]} outside 1..{(1 << (in_bits - 1)) - 1}")
    return h * np.clip(h + t, 0, 2 * t)


def hswish_requantize(acc, h_mult, h_shift, three, offset, mult, shift, out_bits=ACT_BITS,
                      acc_bits=ACC_BITS, mult_bits=MULT_BITS, shift_bits=SHIFT_BITS,
                      hswish_bits=HSWISH_BITS, offset_bits=SHIFT_OFFSET_BITS):
    """The whole integer Hardswish of a conv output (docs/arithmetic.md section 9), as the
    post-processing unit computes it: requantize ``acc`` to the int12 pre-activation ``h``
    (``h_mult``, ``h_shift``), form ``h * clamp(h + T, 0, 2T)`` (T = ``three``), subtract the
    filter-wise shift ``D_c`` = ``offset`` (signed 24 bit, per channel) and requantize to int8
    (``mult``, ``shift``). The product is signed 25 bits, so ``product - D_c`` fits 26 bits by
    construction and is requantized from that width."""
    h = requantize(acc, h_mult, h_shift, hswish_bits, acc_bits, mult_bits, shift_bits)
    d = check_range(offset, offset_bits, name="filter-wise shift")
    diff_bits = max(2 * hswish_bits + 1, offset_bits) + 1
    return requantize(hswish_product(h, three, hswish_bits) - d, mult, shift, out_bits, diff_bits,
                      mult_bits, shift_bits)


def accumulate(x, in_bits=ACT_BITS, signed=True, acc_bits=ACC_BITS, axis=-1):
    """Exact sum of ``x`` along ``axis`` in a ``acc_bits`` accumulator (the pool accumulators and
    the Σk accumulator behind the adder tree); ``OverflowError`` if a sum leaves that width."""
    x = check_range(x, in_bits, signed=signed, name="accumulator input")
    total = x.sum(axis=axis)
    lo, hi = int_range(acc_bits)
    if (total < lo).any() or (total > hi).any():
        raise OverflowError(f"accumulated sum leaves the {acc_bits}-bit range [{lo}, {hi}]")
    return total


def attention_output(num, den, mult, shift, offset, lo=LOG2_MIN, hi=LOG2_MAX, out_bits=ACT_BITS,
                     acc_bits=ACC_BITS, mult_bits=MULT_BITS, shift_bits=SHIFT_BITS,
                     dividend_bits=DIVIDEND_BITS, offset_bits=OFFSET_BITS):
    """The attention's output path (docs/arithmetic.md section 9): the int32 numerator
    requantized to the int16 dividend (``mult``, ``shift``), the raw unsigned int32 divisor
    ``den`` (broadcast against ``num``) log2-quantized with ``offset``, the dividend shifted by
    the code and saturated to ``out_bits``."""
    x16 = requantize(num, mult, shift, dividend_bits, acc_bits, mult_bits, shift_bits)
    e = log2_quantize(den, offset, lo, hi, acc_bits, offset_bits)
    return shift_divide(x16, e, out_bits, dividend_bits, signed_bits(lo, hi))


def residual_sum(a, b, mult_a, mult_b, in_bits=ACT_BITS, mult_bits=MULT_BITS):
    """The residual add's exact sum of scaled addends, ``a * ma + b * mb`` (signed
    ``in_bits + mult_bits + 2`` bits): the computing core's residual adder makes it, its one
    post-processor rounds it as ``requantize(sum, 1, c)`` (equal to :func:`add_requantize`)."""
    a = check_range(a, in_bits, name="addend")
    b = check_range(b, in_bits, name="addend")
    ma = check_range(mult_a, mult_bits, signed=False, name="multiplier")
    mb = check_range(mult_b, mult_bits, signed=False, name="multiplier")
    return a * ma + b * mb


def add_requantize(a, b, mult_a, mult_b, shift, out_bits=ACT_BITS, in_bits=ACT_BITS, mult_bits=MULT_BITS,
                   shift_bits=SHIFT_BITS):
    """Residual add of two int8 tensors with their own (per-channel) scales:
    ``clamp(round_half_up((a * ma + b * mb) / 2**c))``; ma, mb unsigned 16-bit, one shift c.
    The same as ``requantize(residual_sum(a, b, ma, mb), 1, c)``."""
    total = residual_sum(a, b, mult_a, mult_b, in_bits, mult_bits)
    c = check_range(shift, shift_bits, signed=False, name="shift")
    return saturate(round_shift(total, c), out_bits)


def dyadic_pair(scale_a, scale_b):
    """Host side: multipliers (ma, mb) and one shift c with ma/2**c ~ scale_a, mb/2**c ~ scale_b.

    The shared shift is limited by the larger scale; a scale below about 2**-16 of the other then
    rounds to a zero multiplier, which would drop that input. That is refused (``ValueError``),
    never done silently."""
    _, ca = dyadic(scale_a)
    _, cb = dyadic(scale_b)
    c = np.minimum(ca, cb)
    sa, sb = np.asarray(scale_a, np.float64), np.asarray(scale_b, np.float64)
    ma = np.floor(sa * np.exp2(c) + 0.5).astype(np.int64)
    mb = np.floor(sb * np.exp2(c) + 0.5).astype(np.int64)
    for name, m, s, other in (("first", ma, sa, sb), ("second", mb, sb, sa)):
        if (m == 0).any():
            i = int(np.flatnonzero(np.broadcast_to(m, np.broadcast(m, s).shape) == 0)[0])
            s_i, o_i = np.broadcast_to(s, m.shape).flat[i], np.broadcast_to(other, m.shape).flat[i]
            raise ValueError(f"the {name} input's scale {s_i:.3g} is {s_i / o_i:.2g} of the other's "
                             f"({o_i:.3g}): its {MULT_BITS}-bit multiplier rounds to 0 under the shared "
                             f"shift, which would drop it (channel {i})")
    return ma, mb, c


# --------------------------------------------------------------------------------------------------
# Two-scaled codes of TSPTQ-ViT (docs/arithmetic.md §10, docs/tsptq.md)

TWO_SCALE_K_MAX = 8  # the coarse scale is s * 2**k, 1 <= k <= 8


def _check_k(k):
    if type(k) is not int or not 1 <= k <= TWO_SCALE_K_MAX:
        raise ValueError(f"two-scale exponent k must be an integer from 1 to {TWO_SCALE_K_MAX}, not {k!r}")
    return k


def two_scale_quantize(x, scale, k, signed, bits=ACT_BITS):
    """V-2SF: float ``x`` -> (flag, m), one ``bits``-bit code per value: a flag bit and a
    (``bits`` - 1)-bit field ``m`` (signed or unsigned). ``flag`` 0 means ``m * scale``, 1 means
    ``m * scale * 2**k``. A value takes the fine scale when ``round_half_up(x / scale)`` fits the
    field, else the coarse scale, rounded half up and saturated to the field."""
    _check_k(k)
    lo, hi = int_range(bits - 1, signed)
    x = np.asarray(x, np.float64)
    s = np.asarray(scale, np.float64)
    fine = np.floor(x / s + 0.5)
    coarse = np.clip(np.floor(x / (s * 2.0 ** k) + 0.5), lo, hi)
    flag = ((fine < lo) | (fine > hi)).astype(np.int64)
    return flag, np.where(flag == 1, coarse, fine).astype(np.int64)


def two_scale_pack(flag, m, signed, bits=ACT_BITS):
    """The stored code: ``flag`` in the top bit, ``m`` in the ``bits`` - 1 bits below (two's
    complement when ``signed``), as an unsigned ``bits``-bit integer."""
    m = check_range(m, bits - 1, signed, name="two-scale field")
    flag = check_range(flag, 1, signed=False, name="two-scale flag")
    return flag << (bits - 1) | (m & ((1 << (bits - 1)) - 1))


def two_scale_unpack(code, signed, bits=ACT_BITS):
    """(flag, m) of stored codes (the inverse of ``two_scale_pack``)."""
    code = check_range(code, bits, signed=False, name="two-scale code")
    field = code & ((1 << (bits - 1)) - 1)
    if signed:
        field = np.where(field >> (bits - 2), field - (1 << (bits - 1)), field)
    return code >> (bits - 1), field


def two_scale_operand(flag, m, k):
    """The integer a two-scaled value enters a MatMul as, in units of the fine scale:
    ``m << (k * flag)`` (at most ``bits`` - 1 + k bits)."""
    return np.asarray(m, np.int64) << (_check_k(k) * np.asarray(flag, np.int64))


def two_scale_matmul_acc(flag, m, k, w, bias=None, bits=ACT_BITS, acc_bits=ACC_BITS):
    """``sum_i w_i * m_i * 2**(k * flag_i)`` (+ bias) as an int8 MatMul does it: two partial sums
    over the same weights, the fine-scale values' and the coarse-scale values' (the other's
    entries zero), the second shifted left by ``k`` before the add. ``flag``/``m``: (..., K);
    ``w``: (K, O) int8. Equal to ``matmul_acc`` of the widened operand ``two_scale_operand``; the
    accumulator range is checked, never wrapped."""
    _check_k(k)
    flag = check_range(flag, 1, signed=False, name="two-scale flag")
    m = check_range(m, bits, signed=True, name="two-scale field")  # a field of bits - 1, either sign
    fine = matmul_acc(np.where(flag == 0, m, 0), w, None, a_bits=bits, acc_bits=acc_bits)
    coarse = matmul_acc(np.where(flag == 1, m, 0), w, None, a_bits=bits, acc_bits=acc_bits)
    return _biased(fine + (coarse << k), bias, acc_bits)


def outlier_two_scale_quantize(x, scale, k, flags, bits=ACT_BITS):
    """O-2SF: float ``x`` (..., C) -> signed ``bits``-bit codes, channel ``c`` on the scale
    ``scale * 2**(k * flags[c])``; ``flags`` (C,) 0/1 are fixed at calibration (the outlier
    channels), so every value keeps all ``bits`` bits."""
    _check_k(k)
    flags = check_range(flags, 1, signed=False, name="channel flag")
    step = np.asarray(scale, np.float64) * np.exp2(k * flags)
    return quantize(x, step, bits)


# Integer GELU and Softmax of I-BERT (Kim et al., ICML 2021), for the DeiT integer model of
# TSPTQ-ViT (docs/arithmetic.md §11). Integers in, integers out, each with a float scale; the
# intermediate products need up to 64 bits for small input scales (``IBERT_BITS``, checked).

IBERT_BITS = 64
IBERT_ERF = (-0.2888, -1.769, 1.0)  # erf(x) ~ sgn(x) [a (min(|x|, -b) + b)^2 + c]
IBERT_EXP = (0.3585, 1.353, 0.344)  # exp(p) ~ a (p + b)^2 + c on p in (-ln 2, 0]
SOFTMAX_OUT_BITS = 16  # i-softmax output: probabilities as fractions of 2**SOFTMAX_OUT_BITS


def _ibert_mul(x, y, name):
    """``x * y`` in int64, refused (never wrapped) where it would leave ``IBERT_BITS``."""
    x, y = np.asarray(x, np.int64), np.asarray(y, np.int64)
    if np.any(np.abs(x.astype(np.float64)) * np.abs(y.astype(np.float64)) >= 2.0 ** (IBERT_BITS - 1)):
        raise ValueError(f"{name} would leave {IBERT_BITS} bits (input scale too fine for its range)")
    return x * y


def ibert_poly(q, scale, a, b, c):
    """``a (x + b)^2 + c`` of ``x = q * scale`` in integers: (q_out, scale_out) with
    ``q_out = (q + floor(b / scale))^2 + floor(c / (a scale^2))``, ``scale_out = a scale^2``
    (``scale`` an array broadcasting against ``q``, e.g. per channel)."""
    scale = np.asarray(scale, np.float64)
    q_b, q_c = np.floor(b / scale), np.floor(c / (a * scale ** 2))
    if np.abs(q_c).max() >= 2.0 ** (IBERT_BITS - 2):
        raise ValueError(f"i-poly: input scale {float(np.min(scale)):.3g} too fine for {IBERT_BITS}-bit "
                         f"integers")
    q_b, q_c = q_b.astype(np.int64), q_c.astype(np.int64)
    t = check_range(np.asarray(q, np.int64) + q_b, IBERT_BITS // 2, name="i-poly operand")
    return _ibert_mul(t, t, "i-poly square") + q_c, a * scale ** 2


def ibert_gelu(q, scale):
    """I-BERT's i-GELU of ``x = q * scale``: (q_out, scale_out), ``x/2 (1 + erf(x / sqrt 2))``
    with the second-order erf polynomial; ``q`` int (e.g. an int32 accumulator), ``scale`` per
    element or channel. Max |error| of the result about 0.02 (I-BERT, Table 1)."""
    a, b, c = IBERT_ERF
    q = np.asarray(q, np.int64)
    s_erf_in = np.asarray(scale, np.float64) / np.sqrt(2)
    clip = np.floor(-b / s_erf_in).astype(np.int64)
    q_l, s_l = ibert_poly(np.minimum(np.abs(q), clip), s_erf_in, a, b, c)
    q_erf = np.sign(q) * q_l
    q_one = np.floor(1 / s_l).astype(np.int64)
    out = _ibert_mul(q, q_erf + q_one, "i-GELU product")
    return out, np.asarray(scale, np.float64) * s_l / 2


def ibert_exp(q, scale):
    """I-BERT's i-exp of ``x = q * scale <= 0``: x = -ln2 z + p, exp(p) by the polynomial, then
    shifted right by z. (q_out, scale_out)."""
    a, b, c = IBERT_EXP
    q = np.asarray(q, np.int64)
    if np.any(q > 0):
        raise ValueError("i-exp takes x <= 0 (subtract the maximum first)")
    scale = float(scale)
    q_ln2 = int(np.floor(np.log(2) / scale))
    if q_ln2 < 1:
        raise ValueError(f"i-exp: scale {scale} is too coarse for ln 2")
    z = np.floor(-q / q_ln2).astype(np.int64)
    q_p = q + z * q_ln2
    q_l, s_l = ibert_poly(q_p, scale, a, b, c)
    return q_l >> np.minimum(z, IBERT_BITS - 2), s_l


def ibert_softmax(q, scale, out_bits=SOFTMAX_OUT_BITS):
    """I-BERT's i-softmax over the last axis of ``x = q * scale``: i-exp of x - max(x), then
    each value as a fixed-point fraction of the row's sum, ``floor(e * 2**out_bits / sum)``
    (scale ``2**-out_bits``)."""
    q = np.asarray(q, np.int64)
    e, _ = ibert_exp(q - q.max(-1, keepdims=True), scale)
    total = e.sum(-1, keepdims=True)
    return _ibert_mul(e, 1 << out_bits, "i-softmax numerator") // total, 2.0 ** -out_bits


def ibert_isqrt(n):
    """``floor(sqrt(n))`` of non-negative integers by I-BERT's integer Newton iteration, from a
    power of two at or above the root (``x <- (x + n // x) // 2`` while it decreases)."""
    n = np.asarray(n, np.int64)
    if np.any(n < 0):
        raise ValueError("i-sqrt of a negative number")
    bits = np.where(n > 0, np.floor(np.log2(np.maximum(n, 1).astype(np.float64))).astype(np.int64) + 1, 0)
    x = np.left_shift(np.int64(1), (bits + 2) // 2)
    while True:
        y = (x + n // np.maximum(x, 1)) // 2
        smaller = y < x
        if not smaller.any():
            return np.where(n == 0, 0, x)
        x = np.where(smaller, y, x)


LN_FRAC_BITS = 15  # the normalized value (x - mean) / std as a fraction of 2**15
LN_GAMMA_BITS = 12  # gamma on 2**12, beta on 2**(15 + 12)


def ibert_layernorm(q, gamma, beta, frac_bits=LN_FRAC_BITS, gamma_bits=LN_GAMMA_BITS):
    """I-BERT's integer LayerNorm over the last axis of integers ``q`` (any common scale: it
    cancels): integer mean ``floor(sum / C)``, variance ``floor(sum((q - mean)^2) / C)``, its
    ``ibert_isqrt``, the normalized value ``floor((q - mean) * 2**frac_bits / std)``, then
    ``gamma`` and ``beta`` as integers on ``2**gamma_bits`` and ``2**(frac_bits + gamma_bits)``.
    Returns (out, scale ``2**-(frac_bits + gamma_bits)``). No epsilon: a row of equal values
    gives ``beta``."""
    q = np.asarray(q, np.int64)
    c = q.shape[-1]
    total = q.sum(-1, keepdims=True)
    y = q - np.floor_divide(total, c)
    var = _ibert_mul(y, y, "i-LayerNorm square").sum(-1, keepdims=True) // c
    std = np.maximum(ibert_isqrt(var), 1)
    xhat = _ibert_mul(y, 1 << frac_bits, "i-LayerNorm fraction") // std
    g = np.floor(np.asarray(gamma, np.float64) * 2.0 ** gamma_bits + 0.5).astype(np.int64)
    b = np.floor(np.asarray(beta, np.float64) * 2.0 ** (frac_bits + gamma_bits) + 0.5).astype(np.int64)
    return _ibert_mul(xhat, g, "i-LayerNorm affine") + b, 2.0 ** -(frac_bits + gamma_bits)
