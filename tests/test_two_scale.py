"""The two-scaled codes of TSPTQ-ViT (quant/arith.py, docs/arithmetic.md §10) against independent
definitions: exact rational rounding, the representable value sets, and MatMuls in exact
integers on the dequantized values."""

import math
from fractions import Fraction

import numpy as np
import pytest

from quant import arith


def reference_code(x, scale, k, signed, bits=8):
    """The V-2SF rule written per value with exact rationals."""
    lo, hi = (-(1 << (bits - 2)), (1 << (bits - 2)) - 1) if signed else (0, (1 << (bits - 1)) - 1)
    x, s = Fraction(x), Fraction(scale)
    fine = math.floor(x / s + Fraction(1, 2))
    if lo <= fine <= hi:
        return 0, fine
    coarse = math.floor(x / (s * 2 ** k) + Fraction(1, 2))
    return 1, min(max(coarse, lo), hi)


@pytest.mark.parametrize("signed,k", [(False, 3), (False, 4), (True, 2), (True, 5)])
def test_v2sf_matches_the_rule_exactly(signed, k):
    rng = np.random.default_rng(k)
    s = 2.0 ** -9  # a power of two: x / s is exact in floating point, so both sides see one rational
    edges = np.array([0, 63, 63.5, 64, 127, 127.49, 127.5, 128, 4096, 1e6, -0.5, -64, -64.5, -65, -1e6]) * s
    x = np.concatenate([edges, rng.normal(0, 40 * s, 2000), rng.exponential(200 * s, 2000)])
    if not signed:
        x = np.abs(x)
    flag, m = arith.two_scale_quantize(x, s, k, signed)
    want = [reference_code(v, s, k, signed) for v in x]
    assert list(zip(flag.tolist(), m.tolist(), strict=True)) == want


def test_fine_values_keep_the_fine_step():
    s, k = 1 / 256, 4
    x = np.linspace(0, 1, 5001)  # post-Softmax range
    flag, m = arith.two_scale_quantize(x, s, k, signed=False)
    back = m * s * 2.0 ** (k * flag)
    fine = flag == 0
    assert np.all(np.abs(back[fine] - x[fine]) <= s / 2 + 1e-12)
    assert np.all(np.abs(back[~fine] - x[~fine]) <= s * 2 ** k / 2 + 1e-12)
    assert fine.mean() > 0.45  # values under 127.5 * s stay fine: half of [0, 1] at s = 1/256


def test_pack_unpack_round_trip():
    for signed in (False, True):
        lo, hi = (-64, 63) if signed else (0, 127)
        flag, m = np.meshgrid([0, 1], np.arange(lo, hi + 1))
        code = arith.two_scale_pack(flag, m, signed)
        assert code.min() >= 0 and code.max() <= 255 and len(np.unique(code)) == code.size
        f2, m2 = arith.two_scale_unpack(code, signed)
        assert np.array_equal(f2, flag) and np.array_equal(m2, m)
    with pytest.raises(ValueError, match="two-scale field 64"):
        arith.two_scale_pack([0], [64], signed=True)


def test_matmul_as_two_partial_sums_equals_the_widened_operand_and_the_exact_product():
    rng = np.random.default_rng(0)
    for signed, k in ((False, 4), (True, 3)):
        x = rng.normal(0, 1, (6, 50)) * (1 if signed else 0) + rng.exponential(0.3, (6, 50))
        flag, m = arith.two_scale_quantize(x, 1 / 64, k, signed)
        w = rng.integers(-128, 128, (50, 7))
        bias = rng.integers(-1000, 1000, 7)
        acc = arith.two_scale_matmul_acc(flag, m, k, w, bias)
        widened = arith.two_scale_operand(flag, m, k) @ w + bias
        exact = [[sum(Fraction(int(m[i, j]) * 2 ** (k * int(flag[i, j]))) * int(w[j, o]) for j in range(50))
                  + int(bias[o]) for o in range(7)] for i in range(6)]
        assert np.array_equal(acc, widened) and acc.tolist() == exact


def test_o2sf_per_channel_scales():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (20, 8))
    x[:, 3] *= 40  # an outlier channel
    flags = np.array([0, 0, 0, 1, 0, 0, 0, 0])
    q = arith.outlier_two_scale_quantize(x, 1 / 32, 5, flags)
    assert q.min() >= -128 and q.max() <= 127
    assert np.array_equal(q[:, 3], arith.quantize(x[:, 3], 32 / 32))  # 1/32 * 2**5
    assert np.array_equal(q[:, 0], arith.quantize(x[:, 0], 1 / 32))
    w = rng.integers(-128, 128, (8, 4))
    acc = arith.two_scale_matmul_acc(np.broadcast_to(flags, q.shape), q, 5, w)
    assert np.array_equal(acc, (q << (5 * flags)) @ w)


def test_errors():
    with pytest.raises(ValueError, match="exponent k"):
        arith.two_scale_quantize([0.0], 1.0, 0, signed=False)
    with pytest.raises(ValueError, match="channel flag 2"):
        arith.outlier_two_scale_quantize([[0.0, 0.0]], 1.0, 2, [0, 2])
    with pytest.raises(OverflowError):
        arith.two_scale_matmul_acc(np.ones((1, 4096), np.int64), np.full((1, 4096), 127), 8,
                                   np.full((4096, 1), 127))
