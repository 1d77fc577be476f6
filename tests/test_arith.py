"""The golden functions of the arithmetic contract, checked against independent definitions."""

import math
from fractions import Fraction

import numpy as np
import pytest

from quant import arith


def ref_round_half_up(num, den):
    """floor(num/den + 1/2) with exact rationals."""
    return math.floor(Fraction(num, den) + Fraction(1, 2))


# -- ranges and saturation ----------------------------------------------------------------------
def test_int_range_and_signed_bits():
    assert arith.int_range(8) == (-128, 127)
    assert arith.int_range(8, signed=False) == (0, 255)
    assert arith.signed_bits(-8, 7) == 4
    assert arith.signed_bits(-9, 7) == 5
    assert arith.signed_bits(-128, 127) == 8
    assert arith.signed_bits(0, 8) == 5


def test_check_range_rejects_and_names_the_value():
    with pytest.raises(ValueError, match=r"accumulator 2147483648 outside the 32-bit signed"):
        arith.requantize([2**31], 1, 0)
    with pytest.raises(ValueError, match=r"multiplier -1 outside the 16-bit unsigned"):
        arith.requantize([0], -1, 0)
    with pytest.raises(ValueError, match="must be integers"):
        arith.check_range([0.5], 8)


def test_saturate_both_ways():
    assert arith.saturate([-1000, -129, -128, 0, 127, 128, 1000], 8).tolist() == \
        [-128, -128, -128, 0, 127, 127, 127]


# -- rounding -----------------------------------------------------------------------------------
def test_round_shift_is_round_half_up_exhaustively_on_small_values():
    for n in range(0, 8):
        for x in range(-300, 301):
            assert arith.round_shift(x, n) == ref_round_half_up(x, 2**n), (x, n)


def test_round_shift_ties_go_up():
    assert arith.round_shift([1, 3, -1, -3, 5, -5], 1).tolist() == [1, 2, 0, -1, 3, -2]


def test_round_shift_large_shifts_leave_zero():
    big = [2**47 - 1, -(2**47), 1, -1]
    assert arith.round_shift(big, 62).tolist() == [0, 0, 0, 0]
    assert arith.round_shift(big, 63).tolist() == [0, 0, 0, 0]


def test_quantize_rounds_half_up_and_saturates():
    assert arith.quantize([0.5, -0.5, 1.49, -1.5, 300.0, -300.0], 1.0).tolist() == \
        [1, 0, 1, -1, 127, -128]


# -- accumulation -------------------------------------------------------------------------------
def test_matmul_acc_matches_python_and_never_wraps():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(3, 40))
    w = rng.integers(-128, 128, size=(40, 5))
    b = rng.integers(-1000, 1000, size=5)
    want = [[sum(int(a[i, k]) * int(w[k, j]) for k in range(40)) + int(b[j]) for j in range(5)]
            for i in range(3)]
    assert arith.matmul_acc(a, w, b).tolist() == want
    with pytest.raises(OverflowError):
        arith.matmul_acc(np.full((1, 2), -128), np.full((2, 1), -128), [2**31 - 1])


def test_largest_efficientvit_reduction_fits_int32():
    # B2's classifier reduces over 2560 inputs, the widest reduction of B1/B2; with the worst
    # operands (-128 * -128) and the largest bias magnitude still representable it stays in int32.
    k = 2560
    acc = arith.matmul_acc(np.full((1, k), -128), np.full((k, 1), -128))
    assert acc[0, 0] == k * 128 * 128 < 2**31 - 1


# -- dyadic requantization ----------------------------------------------------------------------
def test_requantize_against_exact_rationals():
    rng = np.random.default_rng(1)
    acc = rng.integers(-(2**31), 2**31, size=2000)
    b = rng.integers(0, 2**16, size=2000)
    c = rng.integers(0, 64, size=2000)
    got = arith.requantize(acc, b, c)
    for x, m, s, g in zip(acc.tolist(), b.tolist(), c.tolist(), got.tolist(), strict=True):
        assert g == min(127, max(-128, ref_round_half_up(x * m, 2**s)))


def test_requantize_per_channel_broadcasts_on_last_axis():
    acc = np.array([[100, 100, 100]])
    assert arith.requantize(acc, [1, 2, 4], [2, 2, 2]).tolist() == [[25, 50, 100]]
    assert arith.requantize(acc, 3, 2).tolist() == [[75, 75, 75]]


def test_requantize_saturates_and_wider_outputs():
    assert arith.requantize([2**31 - 1, -(2**31)], 2**16 - 1, 0).tolist() == [127, -128]
    assert arith.requantize([40000, -40000], 1, 0, out_bits=16).tolist() == [32767, -32768]


def test_add_requantize_is_the_requantized_residual_sum():
    """The computing core's residual add: the adder's exact sum, rounded by the post-processor as
    ``requantize(sum, 1, c)`` — equal to add_requantize, against exact rationals too."""
    rng = np.random.default_rng(2)
    a, b = rng.integers(-128, 128, size=(2, 5000))
    ma, mb = rng.integers(0, 2**16, size=(2, 5000))
    c = rng.integers(0, 64, size=5000)
    corners = np.array([[-128, -128, 2**16 - 1, 2**16 - 1, 0], [127, 127, 2**16 - 1, 2**16 - 1, 0],
                        [-128, 127, 2**16 - 1, 0, 63], [1, 0, 1, 0, 1], [-1, 0, 1, 0, 1]]).T
    a, b, ma, mb, c = (np.concatenate([x, k]) for x, k in zip((a, b, ma, mb, c), corners, strict=True))
    total = arith.residual_sum(a, b, ma, mb)
    assert total.tolist() == (a * ma + b * mb).tolist()
    got = arith.add_requantize(a, b, ma, mb, c)
    assert got.tolist() == arith.requantize(total, 1, c).tolist()
    for x, s, g in zip(total.tolist(), c.tolist(), got.tolist(), strict=True):
        assert g == min(127, max(-128, ref_round_half_up(x, 2**s)))


@pytest.mark.parametrize("scale", [1.0, 0.5, 3e-3, 1.7e-6, 123.456, 2.0**-40])
def test_dyadic_is_closest_and_normalized(scale):
    b, c = arith.dyadic(scale)
    assert 0 < b < 2**16 and 0 <= c <= 63
    assert abs(b / 2.0**c - scale) <= 0.5 / 2.0**c  # the nearest b at this c
    if c < 63:
        assert b >= 2**15 - 1  # as many significant bits as the multiplier has


def test_dyadic_rejects_unrepresentable_scales():
    for bad in (0.0, -1.0, float("nan"), 2.0**17, 2.0**-80):
        with pytest.raises(ValueError):
            arith.dyadic(bad)


# -- log2 quantization --------------------------------------------------------------------------
def test_lod_paper_example():
    x = 0b01100011
    assert arith.leading_one(x) == 6
    assert arith.log2_round(x) == 7
    assert arith.log2_quantize(x, 0) == 7


def test_log2_round_rounds_up_from_one_and_a_half():
    for i in range(1, 31):
        assert arith.log2_round(2**i) == i
        assert arith.log2_round(3 * 2**(i - 1) - 1) == i
        assert arith.log2_round(3 * 2**(i - 1)) == i + 1
        assert arith.log2_round(2**(i + 1) - 1) == i + 1
    assert arith.log2_round([1, 2, 3]).tolist() == [0, 1, 2]


def test_log2_round_matches_bit_definition():
    for x in range(1, 5000):
        i = x.bit_length() - 1
        assert arith.log2_round(x) == i + ((x >> (i - 1)) & 1 if i else 0)


def test_log2_quantize_offset_clip_and_zero_divisor():
    assert arith.log2_quantize(0, 5).tolist() == 5  # zero divisor counts as 1: log2 = 0
    assert arith.log2_quantize([0, 1], -20).tolist() == [-8, -8]
    assert arith.log2_quantize(1, -20).tolist() == -8  # clipped below
    assert arith.log2_quantize(2**31, 5).tolist() == 7  # clipped above
    assert arith.log2_quantize(2**31 + 2**30, -31, lo=-8, hi=7).tolist() == 1
    assert arith.log2_quantize([4, 6], -2, lo=-3, hi=5).tolist() == [0, 1]
    with pytest.raises(ValueError, match="divisor"):
        arith.log2_quantize(2**32, 0)
    with pytest.raises(ValueError, match="log2 offset"):
        arith.log2_quantize(1, 32)


def test_log2_offset_rounds_half_up():
    assert arith.log2_offset([1.0, 2.0**-5, 2.0**3.5, 2.0**3.49]).tolist() == [0, -5, 4, 3]


# -- division as shift --------------------------------------------------------------------------
def test_shift_divide_both_directions_exhaustive_small():
    for e in range(-8, 8):
        for x in range(-600, 601, 7):
            want = ref_round_half_up(x, 2**e) if e >= 0 else x * 2**-e
            assert arith.shift_divide(x, e) == max(-128, min(127, want)), (x, e)


def test_shift_divide_saturates_and_widths():
    assert arith.shift_divide([32767, -32768], [-8, -8]).tolist() == [127, -128]
    assert arith.shift_divide([32767, -32768], [-8, -8], out_bits=32).tolist() == \
        [32767 * 256, -32768 * 256]
    with pytest.raises(ValueError, match="log2 code"):
        arith.shift_divide(1, 8)


# -- adder tree ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n,bits,out", [(1, 8, 8), (2, 8, 9), (8, 8, 11), (9, 8, 12), (64, 8, 14)])
def test_tree_output_bits(n, bits, out):
    assert arith.tree_output_bits(n, bits) == out
    lo, hi = arith.int_range(out)
    assert lo <= n * -128 and n * 127 <= hi  # the extreme signed sums fit
    assert n * 255 <= 2**out - 1  # and the unsigned one


def test_adder_tree_sum():
    x = np.array([[-128] * 8, [127] * 8, [255] * 8])
    assert arith.adder_tree(x[:2]).tolist() == [-1024, 1016]
    assert arith.adder_tree(x[2:], signed=False).tolist() == [2040]


# -- layer-level golden: convolution -------------------------------------------------------------
@pytest.mark.parametrize("c,o,k,stride,pad,groups,hw", [
    (3, 16, 3, 2, 1, 1, 9),  # stem
    (16, 64, 1, 1, 0, 1, 5),  # PW
    (48, 48, 1, 1, 0, 3, 4),  # grouped PW (3 groups of 16)
    (8, 8, 3, 1, 1, 8, 7),  # DW 3x3 s1
    (8, 8, 3, 2, 1, 8, 8),  # DW 3x3 s2
    (4, 4, 5, 1, 2, 4, 6),  # DW 5x5
])
def test_conv2d_acc_matches_torch(c, o, k, stride, pad, groups, hw):
    import torch  # installed by make test (extra "quant")
    rng = np.random.default_rng(c + o + k)
    x = rng.integers(-128, 128, size=(c, hw, hw))
    w = rng.integers(-128, 128, size=(o, c // groups, k, k))
    b = rng.integers(-1000, 1000, size=o)
    ref = torch.nn.functional.conv2d(torch.tensor(x[None], dtype=torch.float64),
                                     torch.tensor(w, dtype=torch.float64),
                                     torch.tensor(b, dtype=torch.float64), stride, pad,
                                     groups=groups)[0].numpy()
    assert (arith.conv2d_acc(x, w, b, stride, pad, groups) == ref).all()


# -- post-processing ops of the computing core (docs/arithmetic.md section 9) ---------------------
def _clamp(v, bits):
    return min((1 << (bits - 1)) - 1, max(-(1 << (bits - 1)), v))


def test_hswish_requantize_against_exact_rationals():
    rng = np.random.default_rng(5)
    n = 3000
    acc = rng.integers(-(2**31), 2**31, size=n)
    hm, hc = rng.integers(0, 2**16, size=n), rng.integers(20, 40, size=n)
    three = rng.integers(1, 2048, size=n)
    d = rng.integers(-(2**23), 2**23, size=n)
    m, c = rng.integers(0, 2**16, size=n), rng.integers(10, 40, size=n)
    got = arith.hswish_requantize(acc, hm, hc, three, d, m, c)
    for row in zip(acc.tolist(), hm.tolist(), hc.tolist(), three.tolist(), d.tolist(), m.tolist(), c.tolist(),
                   got.tolist(), strict=True):
        a, b1, c1, t, off, b2, c2, g = row
        h = _clamp(ref_round_half_up(a * b1, 2**c1), 12)
        p = h * min(2 * t, max(0, h + t)) - off
        assert g == _clamp(ref_round_half_up(p * b2, 2**c2), 8)


def test_hswish_requantize_refuses_out_of_contract_operands():
    with pytest.raises(ValueError, match="filter-wise shift 8388608 outside the 24-bit"):
        arith.hswish_requantize(0, 1, 0, 3, 1 << 23, 1, 0)
    with pytest.raises(ValueError, match="hswish threshold 2048 outside 1..2047"):
        arith.hswish_requantize(0, 1, 0, 2048, 0, 1, 0)


def test_accumulate_sums_exactly_and_refuses_overflow():
    x = np.array([[127] * 49, [-128] * 49])
    assert arith.accumulate(x).tolist() == [127 * 49, -128 * 49]
    assert arith.accumulate(np.full((1024, 2), 2047), in_bits=11, signed=False, axis=0).tolist() == \
        [1024 * 2047] * 2
    with pytest.raises(OverflowError, match="leaves the 16-bit range"):
        arith.accumulate(np.full(300, 127), acc_bits=16)


def test_attention_output_composes_requantize_log2_and_shift():
    rng = np.random.default_rng(6)
    num = rng.integers(-(2**31), 2**31, size=(500, 4))
    den = rng.integers(0, 2**32, size=(500, 1)) >> rng.integers(0, 32, size=(500, 1))
    m, c = rng.integers(0, 2**16, size=500), rng.integers(16, 40, size=500)
    off = rng.integers(-32, 32, size=500)
    got = arith.attention_output(num, den, m[:, None], c[:, None], off[:, None])
    for i in range(500):
        dv = max(int(den[i, 0]), 1)
        lod = dv.bit_length() - 1
        e = min(7, max(-8, lod + ((dv >> (lod - 1)) & 1 if lod else 0) + int(off[i])))
        for j in range(4):
            x = _clamp(ref_round_half_up(int(num[i, j]) * int(m[i]), 2 ** int(c[i])), 16)
            want = _clamp(x << -e if e < 0 else ref_round_half_up(x, 2**e), 8)
            assert got[i, j] == want
