"""Trio-ViT PTQ: each technique at unit level, integer model vs fake-quant, golden-tensor schema."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quant import arith
from quant.data import digits_split
from quant.integer import FreezeError, IntegerModel, export, freeze
from quant.model import build_model
from quant.ptq import Program, QuantOptions, calibrate, evaluate, log2_code, quantize_model


def test_migration_is_exact_in_float():
    """Eq. 6: a depthwise conv of A / M with weights W * M equals the conv of A with W."""
    g = torch.Generator().manual_seed(0)
    spread = torch.logspace(-2, 2, 16).view(1, -1, 1, 1)
    a = torch.randn(2, 16, 9, 9, generator=g, dtype=torch.float64) * spread
    w = torch.randn(16, 1, 3, 3, generator=g, dtype=torch.float64)
    cmax = a.abs().amax((0, 2, 3))
    m = cmax / cmax.mean()  # eq. 8
    ref = F.conv2d(a, w, padding=1, groups=16)
    got = F.conv2d(a / m.view(1, -1, 1, 1), w * m.view(-1, 1, 1, 1), padding=1, groups=16)
    assert torch.allclose(ref, got, rtol=1e-12, atol=1e-12)
    # and migration shrinks the spread of per-channel ranges to 1
    assert float((a / m.view(1, -1, 1, 1)).abs().amax((0, 2, 3)).std()) < 1e-12


def test_shifting_is_exact_in_float():
    """Eq. 10: conv(A - c) with bias b + W c equals conv(A) + b (c: channel midpoints)."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 12, 5, 5, generator=g, dtype=torch.float64) * 4 + torch.arange(12).view(1, -1, 1, 1)
    w = torch.randn(7, 12, 1, 1, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64)
    c = (a.amax((0, 2, 3)) + a.amin((0, 2, 3))) / 2  # midpoint (eq. 9 prints (max - min) / 2)
    got = F.conv2d(a - c.view(1, -1, 1, 1), w, b + (w.sum((2, 3)) * c).sum(1))
    assert torch.allclose(F.conv2d(a, w, b), got, rtol=1e-12, atol=1e-12)
    shifted = a - c.view(1, -1, 1, 1)
    assert torch.allclose(shifted.amax((0, 2, 3)), -shifted.amin((0, 2, 3)))  # centred channels


def test_program_float_path_equals_model():
    """With quantization off, the lowered program (BN folded, migration and shifts set, biases
    compensated) computes the model."""
    torch.manual_seed(0)
    model = build_model("proxy")
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.2)
            mod.running_var.uniform_(0.5, 2)
    x = torch.randn(8, 3, 64, 64)
    prog = Program(model, QuantOptions(iters=0))
    calibrate(prog, x)
    assert any(prog.act(t).delta.abs().sum() > 0 for t in prog.shifted)
    assert any((prog.act(t).m != 1).any() for t in prog.migrated)
    prog.set_quant(False)
    with torch.no_grad():
        assert torch.allclose(prog(x), model(x), atol=1e-4, rtol=1e-4)


def test_lod_rule_mirror():
    """The fake-quant divisor code equals the contract's LOD rule, zero and powers of two included."""
    rng = np.random.default_rng(0)
    x = np.concatenate([[0, 1, 2, 3, 4, 5, 6, 7, 8, 0b01100011, 2**20, 2**20 + 2**19, 2**20 + 2**19 - 1],
                        rng.integers(0, 2**31, 5000)])
    for offset in (-20, -3, 0, 5):
        ref = arith.log2_quantize(x, offset)
        got = log2_code(torch.tensor(x, dtype=torch.float64), offset).numpy().astype(np.int64)
        assert np.array_equal(ref, got), offset


def test_hswish_product():
    three = 300
    h = np.arange(-2048, 2048)
    y = arith.hswish_product(h, three) * (3 / three) ** 2 / 6
    x = h * 3 / three
    assert np.allclose(y, x * np.clip(x + 3, 0, 6) / 6)
    with pytest.raises(ValueError):
        arith.hswish_product(np.array([4096]), three)


@pytest.fixture(scope="module")
def trained():
    from quant.proxy import train

    return train("/dev/null", epochs=6, seed=0, log=lambda *_: None)


@pytest.fixture(scope="module")
def quantized(trained):
    (xt, _), (xv, yv) = digits_split()
    prog = quantize_model(trained, xt[:128], QuantOptions(iters=20, seed=0))
    return prog, xv[:200], yv[:200]


def test_integer_model_agrees_with_fake_quant(quantized):
    """Top-1 agreement and a sanity bound on the largest logit difference. The two differ by
    rounding flips (16-bit dyadic multipliers) that a log2 divisor can amplify by 2x at an
    attention output; test_attention_matches_integer_on_the_same_inputs pins the ops exactly."""
    prog, xv, yv = quantized
    acc, fq = evaluate(prog, xv, yv)
    li = IntegerModel(freeze(prog)).logits(xv.numpy())
    agree = float((li.argmax(1) == fq.argmax(1)).float().mean())
    rel = float((li - fq).abs().max() / fq.abs().max())
    assert agree >= 0.97, agree
    assert rel < 0.25, rel


def test_weights_are_int8_and_migration_folds_into_requant(quantized):
    prog, _, _ = quantized
    frozen = freeze(prog)
    for r in frozen:
        if "w" in r:
            assert r["w"].min() >= -128 and r["w"].max() <= 127
            assert r["w"].dtype.kind == "i"
    dw = [r for r in frozen if r["kind"] == "conv" and r["groups"] > 1 and r["srcs"][0] in prog.migrated]
    assert dw and all(np.ptp(prog.act(r["srcs"][0]).m.numpy()) > 0 for r in dw)


def test_uniform_divisor_is_float_only(trained):
    (xt, _), _ = digits_split()
    prog = quantize_model(trained, xt[:32], QuantOptions.preset("vanilla", iters=0))
    with pytest.raises(FreezeError, match="log2-4"):
        freeze(prog)


def test_export_schema(tmp_path, quantized):
    prog, xv, _ = quantized
    man = export(freeze(prog), xv[0].numpy(), tmp_path, dict(model="proxy", resolution=64))
    assert json.loads((tmp_path / "manifest.json").read_text())["schema"] == 1
    # host steps, by name: the image quantization and the LayerNorm after the first head linear
    assert [e["host"] for e in man["ops"] if e["kind"] in ("input", "linear")] == [True, True, False]
    kinds = {e["kind"] for e in man["ops"]}
    assert kinds == {"input", "conv", "add", "attn", "pool", "linear"}
    for e in man["ops"]:
        z = np.load(tmp_path / e["file"])
        assert set(z.files) == set(e["arrays"])
        if e["kind"] == "conv":
            x, w, bias, y = z["x0"], z["w"], z["bias"], z["y"]
            assert x.dtype == np.int32 and -128 <= x.min() and x.max() <= 127
            assert -128 <= y.min() and y.max() <= 127
            acc = arith.conv2d_acc(x, w, bias, int(z["stride"]), int(z["pad"]), int(z["groups"]))
            assert np.array_equal(acc, z["acc"])
            if "three" in z.files:  # Hardswish: pre-activation requant, product, offset, requant
                h = arith.requantize(acc, z["h_mult"][:, None, None], z["h_shift"][:, None, None], 12)
                p = arith.hswish_product(h, int(z["three"])) - z["offset"][:, None, None]
            else:
                p = acc
            assert np.array_equal(arith.requantize(p, z["mult"][:, None, None], z["shift"][:, None, None]), y)
        if e["kind"] == "attn":
            assert {"b0_log2", "b0_dividend", "b0_den", "log2_offset", "g"} <= set(z.files)
            assert z["b0_log2"].min() >= arith.LOG2_MIN and z["b0_log2"].max() <= arith.LOG2_MAX


def test_attention_matches_integer_on_the_same_inputs(quantized):
    """Fed the integer model's own int8 inputs, the fake-quant attention (dyadic requants, log2
    divisor, shift division, all in code space) gives exactly the integer model's codes."""
    prog, xv, _ = quantized
    im = IntegerModel(freeze(prog))
    for img in xv[:8]:
        rec = {}

        def keep(r, ins, out, extra, rec=rec):
            if r["kind"] == "attn":
                rec[r["name"]] = (ins, out)

        im.run(img.numpy().astype(np.float64), keep)
        for op in (o for o in prog.ops if o.kind == "attn"):
            ins, out = rec[op.name]
            steps = [prog.act(s).step for s in op.srcs]
            branches = [torch.tensor(v[None]).float() * st for v, st in zip(ins.values(), steps, strict=True)]
            with torch.no_grad():
                y = prog.attention(op, branches)
            codes = torch.round(y[0] / prog.act(op.dst).step).numpy()
            assert np.array_equal(codes, out.reshape(codes.shape)), op.name


def test_zero_divisor():
    """One head (dim 2, 4 tokens): the keys are small against the tensor-wide step of sum(k), so
    sum(k) requantizes to 0 and the integer divisor q . sum(k) is 0 although the real one (0.8)
    is not. The zero divisor counts as 1 (code = offset): 8 << 3 = 64, against float 10; the
    earlier rule (code lo = -8) gave 8 << 8, saturated to 127. An all-zero query still gives 0."""
    s_t, s_ks, s_vk, s_o, g = 0.1, 1.0, 0.02, 0.5, 0
    q = np.full((2, 4), 10)  # (dim, tokens) codes: q = 1.0
    k = np.full((2, 4), 1)  # k = 0.1 per token: sum(k) = 0.4 per dim, below half of s_ks
    v = np.full((2, 4), 50)
    ks8 = arith.requantize(arith.adder_tree(k), *arith.dyadic(s_t / s_ks))
    assert ks8.tolist() == [0, 0]
    vk8 = arith.requantize(v @ k.T, *arith.dyadic(s_t * s_t / s_vk))
    num, den = vk8 @ q, ks8 @ q
    assert den.tolist() == [0, 0, 0, 0]
    offset = int(arith.log2_offset(s_ks * s_t / 2.0 ** g))
    e = arith.log2_quantize(den, offset)
    assert e.tolist() == [offset] * 4 == [-3] * 4
    x16 = arith.requantize(num, *arith.dyadic(s_vk * s_t / (2.0 ** g * s_o)), out_bits=16)
    y = arith.shift_divide(x16, e[None, :])
    real = (v * 0.1 @ (k * 0.1).T) @ (q * 0.1) / ((k * 0.1).sum(1) @ (q * 0.1)) / s_o
    assert np.allclose(real, 10.0) and (y == 64).all()
    assert (arith.shift_divide(x16, np.full_like(x16, arith.LOG2_MIN)) == 127).all()  # the old rule
    zero_q = arith.shift_divide(arith.requantize(vk8 @ np.zeros_like(q), 1, 0, out_bits=16),
                                arith.log2_quantize(ks8 @ np.zeros_like(q), offset)[None, :])
    assert (zero_q == 0).all()


def test_dead_depthwise_input_channel_quantizes_and_exports(tmp_path, trained):
    """A channel of an expand conv whose Hardswish output is 0 on every image (its BN shifts it
    far below -3) feeds a depthwise conv with migration: the factor is bounded (0.1), the
    program calibrates, freezes and exports, and the integer model runs."""
    import copy

    model = copy.deepcopy(trained)
    mb = next(m for n, m in model.named_modules() if n.endswith("inverted_conv"))
    mb.norm.bias.data[0] = -1e3  # pre-activation << -3: hswish gives exactly 0
    (xt, _), (xv, _) = digits_split()
    prog = quantize_model(model, xt[:64], QuantOptions(iters=0, seed=0))
    dead = [t for t in prog.migrated if float(prog.act(t).m.min()) <= 0.1 + 1e-6]
    assert dead, "the dead channel should hit the lower bound of the migration factor"
    frozen = freeze(prog)
    man = export(frozen, xv[0].numpy(), tmp_path, dict(model="proxy", resolution=64))
    assert man["ops"] and np.isfinite(man["logits"]).all()


def test_dyadic_pair_refuses_to_drop_an_input():
    ma, mb, c = arith.dyadic_pair(0.5, 0.25)
    assert (int(ma), int(mb)) == (int(0.5 * 2 ** int(c)), int(0.25 * 2 ** int(c)))
    with pytest.raises(ValueError, match="second input's scale .* rounds to 0 under the shared shift"):
        arith.dyadic_pair(2.0, 1e-6)  # c is at most 14 for 2.0: 1e-6 * 2**14 rounds to 0
    with pytest.raises(ValueError, match=r"first input.*\(channel 1\)"):
        arith.dyadic_pair(np.array([0.5, 1e-7]), np.array([0.5, 3.0]))


def test_freeze_names_the_layer_whose_scale_does_not_fit(quantized):
    """Any scale the 16-bit dyadic pairs cannot hold is a FreezeError naming the op."""
    import copy

    prog = copy.deepcopy(quantized[0])
    add = next(op for op in prog.ops if op.kind == "add")
    prog.act(add.dst).step.data *= 1e-9
    with pytest.raises(FreezeError, match=f"^{add.name}: "):
        freeze(prog)


def test_per_tensor_steps_are_checked():
    from quant.integer import _per_tensor
    from quant.ptq import Op

    op = Op("attn", "stage.attn", ["t"], "u")
    assert _per_tensor(op, "the input", np.full(4, 0.25)) == 0.25
    with pytest.raises(FreezeError, match="stage.attn: the input has per-channel steps"):
        _per_tensor(op, "the input", np.array([0.25, 0.5]))


def test_every_parameter_is_frozen(quantized):
    """The pool's dyadic pair is frozen for the calibrated area (2 x 2 at R64); a different
    resolution is refused. The numerator multiplier carries the log2 offset's residual."""
    prog, xv, _ = quantized
    frozen = freeze(prog)
    pool = next(r for r in frozen if r["kind"] == "pool")
    assert pool["hw"] == 4 and int(pool["mult"]) > 0 and "ratio" not in pool
    with pytest.raises(FreezeError, match="frozen for 4 pooled pixels, run on 9"):
        IntegerModel(frozen).run(np.zeros((3, 96, 96)))
    attn = next(r for r in frozen if r["kind"] == "attn")
    op = next(o for o in prog.ops if o.name == attn["name"])
    p, s_t = prog.attn_params[op.name], float(prog.act(op.srcs[0]).step)
    s_o = float(prog.act(op.dst).step)
    plain = p["s_vk"] * s_t / (2.0 ** p["g"] * s_o)
    fold = 2.0 ** (p["offset"][0] - np.log2(p["s_ks"] * s_t / 2.0 ** p["g"]))
    br = attn["branches"][0]
    got = int(br["num_mult"]) / 2.0 ** int(br["num_shift"])
    assert got == pytest.approx(plain * fold, rel=2e-5) and 2 ** -0.5 <= fold <= 2 ** 0.5
