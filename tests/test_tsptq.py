"""TSPTQ-ViT on DeiT (quant.tsptq): the fake-quantized codes equal the golden functions of
quant.arith, the calibrations find what they are meant to, the stress transform keeps the
function, and every method quantizes a DeiT."""

import numpy as np
import pytest
import torch

from quant import arith
from quant.deit import QUANT_SITES, VIT_PROXY, DeiT, add_ln_outliers, quant_hook
from quant.tsptq import (
    METHODS,
    calibrate_o2sf,
    calibrate_uniform,
    calibrate_v2sf,
    fake_o2sf,
    fake_uniform,
    fake_v2sf,
    quantize_vit,
)


def _values(rng, n=20000):
    x = np.concatenate([rng.normal(0, 1, n), rng.standard_cauchy(n // 10) * 5, [0.0, -1e3, 1e3, 0.5, -0.5]])
    return x


@pytest.mark.parametrize("signed", [True, False])
def test_fake_codes_equal_the_golden_functions(signed):
    rng = np.random.default_rng(0)
    x = _values(rng)
    for s in (0.013, 0.5, 3.0):
        got = fake_uniform(torch.tensor(x), s, signed).numpy()
        lo = 0 if not signed else None
        want = arith.quantize(x if signed else np.clip(x, 0, None), s, 8 if signed else 9)
        want = np.clip(want, lo if lo is not None else -128, 255 if not signed else 127) * s
        np.testing.assert_array_equal(got, want)
        for k in (1, 3, 4):
            flag, m = arith.two_scale_quantize(x, s, k, signed)
            want = m * s * 2.0 ** (k * flag)
            np.testing.assert_array_equal(fake_v2sf(torch.tensor(x), s, k, signed).numpy(), want)


def test_fake_o2sf_equals_the_golden_function():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (300, 16)) * np.where(np.arange(16) % 5 == 0, 40, 1)
    flags = (np.arange(16) % 5 == 0).astype(np.int64)
    for s, k in ((0.02, 3), (0.1, 1), (0.01, 4)):
        want = arith.outlier_two_scale_quantize(x, s, k, flags) * s * np.exp2(k * flags)
        got = fake_o2sf(torch.tensor(x), s, k, torch.tensor(flags)).numpy()
        np.testing.assert_array_equal(got, want)


def test_v2sf_beats_uniform_on_a_softmax_like_tensor():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 65, generator=g) * 3
    p = logits.softmax(-1).reshape(-1).double()  # dense near 0, a sparse tail
    s_u = calibrate_uniform(p, signed=False)
    s, k = calibrate_v2sf(p, signed=False)
    mse_u = float(((fake_uniform(p, s_u, False) - p) ** 2).mean())
    mse_v = float(((fake_v2sf(p, s, k, False) - p) ** 2).mean())
    assert 1 <= k <= 4 and mse_v < mse_u


def test_o2sf_flags_the_outlier_channels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 32, generator=g).double()
    x[:, [3, 17]] *= 30
    s, k, flags = calibrate_o2sf(x)
    assert flags.nonzero().flatten().tolist() == [3, 17]
    mse_o = float(((fake_o2sf(x, s, k, flags) - x) ** 2).mean())
    s_u = calibrate_uniform(x.reshape(-1), signed=True)
    mse_u = float(((fake_uniform(x, s_u, True) - x) ** 2).mean())
    assert mse_o < mse_u / 4


def test_ln_outliers_keep_the_function():
    torch.manual_seed(0)
    m = DeiT(VIT_PROXY).eval()
    x = torch.randn(4, 3, 64, 64)
    before = m(x)
    seen = {}

    def hook(name, kind, t):
        if name == "blocks.0.norm1":
            seen["ln"] = t.detach().abs().amax((0, 1))
        return t

    picked = add_ln_outliers(m, channels=3, factor=32.0, seed=1)
    with quant_hook(hook):
        after = m(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    others = [c for c in range(VIT_PROXY.dim) if c not in picked]
    assert float(seen["ln"][picked].min()) > 8 * float(seen["ln"][others].max())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_quantizes_every_site(method):
    torch.manual_seed(0)
    m = DeiT(VIT_PROXY).eval()
    x = torch.randn(8, 3, 64, 64)
    q = quantize_vit(m, x, method)
    sites = 2 + VIT_PROXY.depth * (len(QUANT_SITES) - 2)
    assert len(q.sites) == sites
    codes = {name.split(".")[-1]: p["code"] for name, p in q.sites.items()}
    assert q.params["residual"]["code"] == "int32"
    assert codes["softmax"] == ("v2sf" if method in ("v2sf", "tsptq") else "uniform")
    assert codes["norm"] == ("o2sf" if method in ("o2sf", "tsptq") else "uniform")
    assert codes["q"] == "uniform"
    y = q(x)
    assert y.shape == (8, 10) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="unknown method"):
        quantize_vit(m, x, "nope")


@pytest.mark.parametrize("method", ["baseline", "tsptq"])
def test_integer_model_agrees_with_fake_quant(method, tmp_path):
    from quant.vit_integer import ViTIntegerModel, export_vit

    torch.manual_seed(0)
    m = DeiT(VIT_PROXY).eval()
    add_ln_outliers(m, 3, 16.0)
    x = torch.randn(6, 3, 64, 64)
    q = quantize_vit(m, x, method)
    with torch.no_grad():  # in float64, as the integer model's host steps
        fq = q.double()(x.double()).numpy()
    li = ViTIntegerModel(q).logits(x.numpy())
    assert (li.argmax(1) == fq.argmax(1)).all()
    # the same MatMuls; LayerNorm, Softmax and GELU by I-BERT (errors ~1e-3, ~1e-3 and ~0.02)
    assert np.abs(li - fq).max() < 0.15 * np.abs(fq).max()
    man = export_vit(q, x[0].numpy(), tmp_path, dict(model="vit-proxy"))
    two = [e for e in man["ops"] if e["kind"] == "two_scale_matmul"]
    assert len(two) == (VIT_PROXY.depth * (3 + VIT_PROXY.heads) + 1 if method == "tsptq" else 0)
    by_name = {e["name"]: e for e in man["ops"]}
    assert {e["kind"] for e in man["ops"]} >= {"matmul", "layernorm", "softmax", "gelu"}
    z = np.load(tmp_path / by_name["blocks.0.attn.qkv"]["file"])  # its int32 accumulator re-derived
    if method == "tsptq":
        acc = arith.two_scale_matmul_acc(z["flag"], z["m"], int(z["k"]), z["w"], z["bias"])
    else:
        acc = arith.matmul_acc(z["x"], z["w"], z["bias"], a_bits=9)
    np.testing.assert_array_equal(acc, z["acc"])


def test_ibert_gelu_and_softmax_within_their_published_error():
    from math import erf

    x = np.linspace(-8, 8, 4001)
    ref = 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))
    for s in (1e-2, 1e-4, 3e-6, np.full(x.shape, 1e-3)):  # per element scales too
        q = np.floor(x / s + 0.5).astype(np.int64)
        g, gs = arith.ibert_gelu(q, s)
        assert np.abs(g * gs - ref).max() < 0.023  # I-BERT Table 1: L-inf 0.018 at fine scales
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, (64, 65))
    ref = np.exp(z - z.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    for s in (1e-2, 1e-3, 1e-5):
        p, ps = arith.ibert_softmax(np.floor(z / s + 0.5).astype(np.int64), s)
        assert np.abs(p * ps - ref).max() < 6e-3 and p.dtype == np.int64
        assert (p >= 0).all() and (p.sum(-1) <= 1 << arith.SOFTMAX_OUT_BITS).all()
    with pytest.raises(ValueError, match="x <= 0"):
        arith.ibert_exp(np.array([1]), 0.1)
    with pytest.raises(ValueError, match="too fine"):
        arith.ibert_gelu(np.array([1 << 40]), 1e-12)
    with pytest.raises(ValueError, match="i-GELU product would leave 64 bits"):
        arith.ibert_gelu(np.array([1 << 40]), 1e-8)


def test_ibert_isqrt_and_layernorm():
    import math

    rng = np.random.default_rng(0)
    n = np.concatenate([[0, 1, 2, 3, 4, 15, 16, 17, (1 << 62) - 1], rng.integers(0, 1 << 62, 20000)])
    assert [int(v) for v in arith.ibert_isqrt(n)] == [math.isqrt(int(v)) for v in n]
    x = rng.normal(0, 3, (32, 96))
    x[:, 7] *= 40  # an outlier channel
    gamma, beta = rng.normal(1, 0.3, 96), rng.normal(0, 0.2, 96)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-6) * gamma + beta
    for bits, tol in ((20, 2e-3), (12, 0.25)):  # the integer std's floor: coarse inputs cost accuracy
        step = np.abs(x).max() / 2 ** bits
        out, scale = arith.ibert_layernorm(np.floor(x / step + 0.5).astype(np.int64), gamma, beta)
        assert np.abs(out * scale - ref).max() < tol
    out, _ = arith.ibert_layernorm(np.full((1, 8), 5), np.ones(8), np.full(8, 0.5))
    assert (out == 1 << (arith.LN_FRAC_BITS + arith.LN_GAMMA_BITS - 1)).all()  # a flat row: beta


def test_uniform_observers():
    x = torch.cat([torch.linspace(-1, 1, 100001), torch.tensor([50.0])]).double()
    assert calibrate_uniform(x, True, observer="minmax") == pytest.approx(50 / 127)
    assert calibrate_uniform(x, True, observer="percentile") < 1.01 / 127
    assert calibrate_uniform(x, True, observer="omse") < 50 / 127
    with pytest.raises(ValueError, match="unknown observer"):
        calibrate_uniform(x, True, observer="ema")
