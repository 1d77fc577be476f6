"""The integer model of a TSPTQ-ViT DeiT (``quant.tsptq.QuantizedViT``): every MatMul on integer
codes through the golden functions of ``quant.arith``; LayerNorm, Softmax and GELU by I-BERT's
integer methods; the residual stream in int32.

Per MatMul: the input site's codes -- uniform (``quantize``), V-2SF (``two_scale_quantize``: flag
and field per value) or O-2SF (``outlier_two_scale_quantize``: a flag per channel) -- and int8
weights (per output channel, the fake-quant model's grid) go through ``matmul_acc`` or, for a
two-scaled operand, ``two_scale_matmul_acc`` (two int8 partial sums, the coarse one shifted by k);
the bias enters the int32 accumulator on its step. The q·kᵀ and attention·v MatMuls take both
operands from sites (k and v codes as the "weights").

The residual stream is int32 on one calibrated step (``params["residual"]``: its largest value
on the calibration set at 2**20): the class token and position embedding are rounded onto it,
and every branch's accumulators join it by dyadic requantization (``dyadic``, ``requantize``).
The LayerNorms are I-BERT's integer LayerNorm of the stream (``ibert_layernorm``: integer mean,
variance, Newton square root; gamma and beta as integers), the Softmax and the GELU I-BERT's
integer methods (``ibert_softmax`` on the q·kᵀ accumulator, ``ibert_gelu`` on the fc1
accumulator); docs/arithmetic.md §11.

Host steps, as for EfficientViT: the image to the input site's codes, and the logits. Each
site's codes are computed from the value its producer's integer result stands for (accumulator
× step, or fixed-point × scale): a requantization done in float64 here rather than by a dyadic
multiplier.

``export_vit`` writes the integer tensors of one image per op -- MatMuls (codes, flags, int8
weights, int32 accumulators), LayerNorms, Softmaxes, GELUs (integer in, integer out) -- and a
manifest, as ``quant.integer.export`` does for EfficientViT.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from quant import arith
from quant.tsptq import weight_step

__all__ = ["ViTIntegerModel", "export_vit"]

SCHEMA = 1


def _w8(w):
    """(int8 codes (O, K), per-channel steps (O,)) of a weight on quant.tsptq's grid (O, ...)."""
    w = torch.as_tensor(w)
    s = weight_step(w)
    codes = torch.floor(w.reshape(w.shape[0], -1).double() / s.double()[:, None] + 0.5)
    return codes.clamp(-128, 127).long().numpy(), s.double().numpy()


class ViTIntegerModel:
    """``run(image, trace=None)`` -> logits of one image (C, H, W) float; ``trace(name, arrays)``
    sees every MatMul's integer tensors."""

    def __init__(self, qvit):
        self.p = qvit.params
        self.s_res = qvit.params["residual"]["s"]
        m = qvit.model
        self.m = m
        self.spec = m.spec
        state = m.state_dict()
        sd = {k: v.detach().double().numpy() for k, v in state.items()}
        self.sd = sd
        self.w = {}
        for name in [k[:-len(".weight")] for k in sd if k.endswith(".weight") and sd[k].ndim >= 2]:
            self.w[name] = _w8(state[name + ".weight"].detach())

    def codes(self, name, x):
        """(operand in units of the fine step, the step, (flag, field, k) or None) of site ``name``."""
        p = self.p[name]
        if p["code"] == "uniform":
            bits = 8 if p["signed"] else 9  # an unsigned 0..255 code is a 9-bit signed operand
            q = arith.quantize(x, p["s"], bits)
            if not p["signed"]:
                q = np.clip(q, 0, 255)
            return q, p["s"], None
        if p["code"] == "v2sf":
            flag, m = arith.two_scale_quantize(x, p["s"], p["k"], p["signed"])
            return None, p["s"], (flag, m, p["k"])
        flags = p["flags"].numpy()
        m = arith.outlier_two_scale_quantize(x, p["s"], p["k"], flags)
        return None, p["s"], (np.broadcast_to(flags, m.shape), m, p["k"])

    def matmul(self, name, site, x, w, w_step, bias=None, trace=None):
        """Float result of site ``site``'s codes of ``x`` (..., K) times int8 ``w`` (K, O) on the
        per-column steps ``w_step`` (O,) plus ``bias`` (float, on the accumulator's step)."""
        q, s, two = self.codes(site, x)
        step = s * w_step
        b = None if bias is None else np.floor(bias / step + 0.5).astype(np.int64)
        if two is None:
            acc = arith.matmul_acc(q, w, b, a_bits=9)
            arrays = dict(x=q, w=w, acc=acc)
        else:
            flag, m, k = two
            acc = arith.two_scale_matmul_acc(flag, m, k, w, b)
            arrays = dict(flag=flag, m=m, w=w, acc=acc, k=np.asarray(k))
        if bias is not None:
            arrays["bias"] = b
        if trace:
            trace(name, "two_scale_matmul" if two else "matmul", arrays)
        return acc, step

    def linear(self, name, site, x, trace, integer=False):
        """The Linear ``name`` on site ``site``'s codes of ``x``: float, or (acc, step) if ``integer``."""
        wq, s = self.w[name]
        acc, step = self.matmul(name, site, x, wq.T, s, self.sd[name + ".bias"], trace)
        return (acc, step) if integer else acc * step

    def to_stream(self, acc, step):
        """A branch's int32 accumulators (steps per channel) on the residual stream's step: dyadic
        requantization (``quant.arith.dyadic``, ``requantize``) to int32."""
        mult, shift = arith.dyadic(np.asarray(step, np.float64) / self.s_res)
        return arith.requantize(acc, mult, shift, out_bits=32)

    def layernorm(self, t, name, trace):
        """I-BERT's integer LayerNorm of the int32 stream ``t``: the value the next site codes."""
        out, scale = arith.ibert_layernorm(t, self.sd[name + ".weight"], self.sd[name + ".bias"])
        if trace:
            trace(name, "layernorm", dict(x=t, y=out))
        return out * scale

    def run(self, image, trace=None):
        sp, sd = self.spec, self.sd
        x = np.asarray(image, np.float64)
        c, h, w = x.shape
        g = sp.patch
        patches = x.reshape(c, h // g, g, w // g, g).transpose(1, 3, 0, 2, 4).reshape(-1, c * g * g)
        acc, step = self.linear("patch_embed.proj", "input", patches, trace, integer=True)  # (N, D)
        embed = np.floor(np.concatenate([sd["cls_token"][0], np.zeros((len(acc), sp.dim))], 0) / self.s_res
                         + 0.5).astype(np.int64)  # the class token and position embedding on the step
        pos = np.floor(sd["pos_embed"][0] / self.s_res + 0.5).astype(np.int64)
        t = embed + np.concatenate([np.zeros((1, sp.dim), np.int64), self.to_stream(acc, step)], 0) + pos
        d = sp.dim // sp.heads
        for i in range(sp.depth):
            pre = f"blocks.{i}."
            y = self.layernorm(t, pre + "norm1", trace)
            qkv = self.linear(pre + "attn.qkv", pre + "norm1", y, trace).reshape(-1, 3, sp.heads, d)
            heads = []
            for hh in range(sp.heads):
                qf, kf, vf = qkv[:, 0, hh], qkv[:, 1, hh], qkv[:, 2, hh]
                kq, ks, _ = self.codes(pre + "k", kf)
                acc, step = self.matmul(f"{pre}attn.qk.{hh}", pre + "q", qf, kq.T, np.full(len(kq), ks),
                                        trace=trace)
                p, p_step = arith.ibert_softmax(acc, float(step[0]) * d ** -0.5)
                if trace:
                    trace(f"{pre}attn.softmax.{hh}", "softmax", dict(x=acc, y=p))
                vq, vs, _ = self.codes(pre + "v", vf)
                acc, step = self.matmul(f"{pre}attn.av.{hh}", pre + "softmax", p * p_step, vq, np.full(d, vs),
                                        trace=trace)
                heads.append(acc * step)
            out = np.concatenate(heads, -1)
            attn = self.linear(pre + "attn.proj", pre + "proj", out, trace, integer=True)
            t = arith.check_range(t + self.to_stream(*attn), 32, name="residual stream")
            y = self.layernorm(t, pre + "norm2", trace)
            acc, step = self.linear(pre + "mlp.fc1", pre + "norm2", y, trace, integer=True)
            g, g_step = arith.ibert_gelu(acc, step)
            if trace:
                trace(pre + "mlp.act", "gelu", dict(x=acc, y=g))
            mlp = self.linear(pre + "mlp.fc2", pre + "gelu", g * g_step, trace, integer=True)
            t = arith.check_range(t + self.to_stream(*mlp), 32, name="residual stream")
        y = self.layernorm(t[:1], "norm", trace)
        return self.linear("head", "norm", y, trace)[0]

    def logits(self, images):
        return np.stack([self.run(im) for im in np.asarray(images, np.float64)])


def export_vit(qvit, image, out_dir, meta):
    """Integer tensors of one image, one .npz per MatMul, and manifest.json; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []

    def trace(name, kind, arrays):
        fname = f"{len(entries):03d}_{name.replace('.', '_')}.npz"
        ints = {k: np.asarray(v, np.int64) for k, v in arrays.items()}  # I-BERT's values need 64 bits
        np.savez_compressed(out_dir / fname, **ints)
        entries.append(dict(index=len(entries), file=fname, name=name, kind=kind,
                            arrays={k: [str(v.dtype), list(v.shape)] for k, v in ints.items()}))

    logits = ViTIntegerModel(qvit).run(image, trace)
    manifest = dict(schema=SCHEMA, **meta, logits=[float(v) for v in logits], ops=entries)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
