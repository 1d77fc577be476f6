"""TSPTQ-ViT on DeiT (docs/tsptq.md): post-training quantization of every MatMul input with the
baseline (per-tensor uniform 8-bit) or the two-scaled codes, and their calibration.

Methods (``METHODS``):

- ``baseline``: weights per output channel, symmetric 8-bit (MinMax); every activation site of
  ``quant.deit.QUANT_SITES`` per tensor uniform 8-bit, its step minimising the MSE on the
  calibration set (the Softmax output unsigned, the rest signed);
- ``v2sf``: the baseline, with the Softmax and GELU outputs in V-2SF codes (a flag and a 7-bit
  field per value; ``quant.arith.two_scale_quantize``), ``s`` and ``k`` by MSE;
- ``o2sf``: the baseline, with the LayerNorm outputs in O-2SF codes (per channel one of two
  steps, ``quant.arith.outlier_two_scale_quantize``), ``s``, ``k`` and the flags by MSE;
- ``tsptq``: both.

The fake-quantized forward (``QuantizedViT``) computes each site's values with torch versions of
the golden functions (``fake_uniform``, ``fake_v2sf``, ``fake_o2sf``), which the tests hold equal
to ``quant.arith``'s.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from quant.arith import TWO_SCALE_K_MAX, int_range
from quant.deit import quant_hook

__all__ = ["METHODS", "OBSERVERS", "weight_step", "fake_uniform", "fake_v2sf", "fake_o2sf",
           "calibrate_uniform", "calibrate_v2sf", "calibrate_o2sf", "QuantizedViT", "quantize_vit"]

METHODS = ("baseline", "v2sf", "o2sf", "tsptq")
BITS = 8
K_CHOICES = tuple(range(1, 5))  # coarse step s * 2**k searched (quant.arith allows up to TWO_SCALE_K_MAX)
GRID = 64  # candidate fine steps per k
RESIDUAL_BITS = 20  # the integer model's residual stream: int32 codes, the calibrated range at 2**20
assert max(K_CHOICES) <= TWO_SCALE_K_MAX


def weight_step(w):
    """The per-output-channel step of a weight's symmetric 8-bit MinMax grid (O,): every method's
    weights, the biases' accumulator steps and the integer model read it here."""
    return w.abs().reshape(w.shape[0], -1).amax(1).clamp_min(1e-12) / 127


def fake_uniform(x, s, signed, bits=BITS):
    """``quant.arith.quantize`` dequantized: round half up, saturate (signed or unsigned)."""
    lo, hi = int_range(bits, signed)
    return torch.clamp(torch.floor(x / s + 0.5), lo, hi) * s


def fake_v2sf(x, s, k, signed, bits=BITS):
    """``quant.arith.two_scale_quantize`` dequantized: the fine step where the code fits the
    (bits - 1)-bit field, else the coarse step ``s * 2**k``, saturated."""
    lo, hi = int_range(bits - 1, signed)
    fine = torch.floor(x / s + 0.5)
    coarse = torch.clamp(torch.floor(x / (s * 2.0 ** k) + 0.5), lo, hi) * 2.0 ** k
    return torch.where((fine < lo) | (fine > hi), coarse, fine) * s


def fake_o2sf(x, s, k, flags, bits=BITS):
    """``quant.arith.outlier_two_scale_quantize`` dequantized: channel c (last dim) on the step
    ``s * 2**(k * flags[c])``, signed ``bits``-bit."""
    step = s * torch.exp2(k * flags.to(x.dtype))
    return fake_uniform(x, step, True, bits)


def _mse(x, q):
    return float(((x - q) ** 2).mean())


OBSERVERS = ("omse", "minmax", "percentile")  # the EfficientViT quantizer's (quant.ptq._Stats)


def calibrate_uniform(sample, signed, bits=BITS, observer="omse"):
    """The step of a per-tensor uniform code on ``sample`` (a float tensor) by one of the
    EfficientViT quantizer's observers (``quant.ptq._Stats.step``): the clipping range minimising
    the MSE (``omse``), the largest |value| (``minmax``) or its 99.99th percentile
    (``percentile``); the Softmax's unsigned code on 255 levels."""
    from quant.ptq import _Stats

    if observer not in OBSERVERS:
        raise ValueError(f"unknown observer {observer!r}; choose one of {', '.join(OBSERVERS)}")
    stats = _Stats(np.random.default_rng(0))
    stats.values(sample if signed else sample.clamp_min(0))
    return stats.step(observer, qmax=int_range(bits, signed)[1])


def calibrate_v2sf(sample, signed, bits=BITS):
    """(s, k) of a V-2SF code minimising the MSE on ``sample``: for each k in ``K_CHOICES``,
    ``GRID`` fine steps from the one whose coarse range just reaches the largest |value| down to
    1/64 of it (finer steps for the dense region, the tail clipped)."""
    hi = int_range(bits - 1, signed)[1]
    amax = max(float(sample.abs().max()), 1e-12)
    best = None
    for k in K_CHOICES:
        top = amax / (hi * 2.0 ** k)  # the fine step at which the coarse step reaches amax
        for f in np.geomspace(1 / 64, 1.0, GRID):
            s = top * f
            e = _mse(sample, fake_v2sf(sample, s, k, signed, bits))
            if best is None or e < best[0]:
                best = (e, s, k)
    return best[1], best[2]


def calibrate_o2sf(sample, bits=BITS):
    """(s, k, flags) of an O-2SF code minimising the MSE on ``sample`` (rows x channels): for each
    k and fine step, a channel is flagged when its largest |value| does not fit the fine step."""
    hi = int_range(bits, True)[1]
    cmax = sample.abs().amax(0)
    amax = max(float(cmax.max()), 1e-12)
    best = None
    for k in K_CHOICES:
        for f in np.geomspace(1 / 2.0 ** (k + 2), 1.0, GRID):
            s = amax * f / hi
            flags = (cmax > (hi + 0.5) * s).to(torch.int64)
            if bool(flags.all()):  # every channel coarse: the plain code with a larger step
                continue
            e = _mse(sample, fake_o2sf(sample, s, k, flags, bits))
            if best is None or e < best[0]:
                best = (e, s, k, flags)
    if best is None:
        s = calibrate_uniform(sample, True, bits)
        return s, 1, torch.zeros_like(cmax, dtype=torch.int64)
    return best[1], best[2], best[3]


class _Collector:
    """Calibration statistics of every site: a seeded sample of values (rows of channels for
    LayerNorm outputs)."""

    def __init__(self, seed, per_batch=1 << 14):
        self.g = torch.Generator().manual_seed(seed)
        self.samples = {}
        self.kinds = {}
        self.per_batch = per_batch

    def __call__(self, name, kind, x):
        self.kinds[name] = kind
        flat = x.detach().reshape(-1, x.shape[-1]) if kind == "ln" else x.detach().reshape(-1)
        n = min(len(flat), self.per_batch if kind != "ln" else max(1, self.per_batch // x.shape[-1]))
        idx = torch.randperm(len(flat), generator=self.g)[:n]
        self.samples.setdefault(name, []).append(flat[idx])
        return x


class QuantizedViT(nn.Module):
    """A DeiT with per-channel 8-bit weights (its Linear and Conv layers), biases on their int32
    accumulators' steps, and every activation site quantized by its calibrated code; ``params``
    describes them (site -> dict)."""

    def __init__(self, model, params):
        super().__init__()
        self.model = model
        self.params = params

    sites = property(lambda self: {n: p for n, p in self.params.items() if n != "residual"})

    def _site(self, name, kind, x):
        p = self.params[name]
        if p["code"] == "uniform":
            return fake_uniform(x, p["s"], p["signed"])
        if p["code"] == "v2sf":
            return fake_v2sf(x, p["s"], p["k"], p["signed"])
        return fake_o2sf(x, p["s"], p["k"], p["flags"])

    def forward(self, x):
        with quant_hook(self._site):
            return self.model(x)


def _weights_w8(model):
    """A copy of ``model`` with every Linear/Conv weight on a per-output-channel symmetric 8-bit
    grid (MinMax)."""
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                w = mod.weight
                s = weight_step(w).view(-1, *([1] * (w.dim() - 1)))
                w.copy_(torch.clamp(torch.floor(w / s + 0.5), -128, 127) * s)
    return m


# The site whose codes each Linear (or the patch embedding) reads, by module path suffix.
_INPUT_SITE = {"patch_embed.proj": "input", "attn.qkv": "norm1", "attn.proj": "proj", "mlp.fc1": "norm2",
               "mlp.fc2": "gelu", "head": "norm"}


@torch.no_grad()
def _bias_on_acc_step(model, params):
    """Every bias rounded to its int32 accumulator's step (input site's fine step x the weight's
    channel step), as the integer model adds it."""
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, nn.Conv2d)) or mod.bias is None:
            continue
        suffix = next(k for k in _INPUT_SITE if name.endswith(k))
        prefix = name[:-len(suffix)]
        s_in = params[prefix + _INPUT_SITE[suffix]]["s"]
        w = mod.weight
        s_w = weight_step(w)
        step = (s_in * s_w.double())
        mod.bias.copy_((torch.floor(mod.bias.double() / step + 0.5) * step).to(mod.bias.dtype))
    return model


@torch.no_grad()
def quantize_vit(model, images, method="tsptq", seed=0, batch=64, observer="omse"):
    """``QuantizedViT`` of a DeiT ``model`` calibrated on ``images`` with ``method``; ``observer``
    sets the uniform codes' steps (``calibrate_uniform``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    col = _Collector(seed)
    stream = [0.0]  # the largest |value| of the residual stream (every LayerNorm's input)

    def ln_input(module, args):
        stream[0] = max(stream[0], float(args[0].detach().abs().max()))

    hooks = [m.register_forward_pre_hook(ln_input) for m in model.modules() if isinstance(m, nn.LayerNorm)]
    try:
        with quant_hook(col):
            for i in range(0, len(images), batch):
                model(images[i:i + batch])
    finally:
        for h in hooks:
            h.remove()
    params = {"residual": dict(code="int32", s=max(stream[0], 1e-12) / 2.0 ** RESIDUAL_BITS)}
    for name, parts in col.samples.items():
        kind = col.kinds[name]
        sample = torch.cat(parts).double()
        signed = kind != "softmax"
        if kind in ("softmax", "gelu") and method in ("v2sf", "tsptq"):
            s, k = calibrate_v2sf(sample, signed)
            params[name] = dict(code="v2sf", s=s, k=k, signed=signed)
        elif kind == "ln" and method in ("o2sf", "tsptq"):
            s, k, flags = calibrate_o2sf(sample)
            params[name] = dict(code="o2sf", s=s, k=k, flags=flags)
        else:
            s = calibrate_uniform(sample.reshape(-1), signed, observer=observer)
            params[name] = dict(code="uniform", s=s, signed=signed)
    return QuantizedViT(_bias_on_acc_step(_weights_w8(model), params), params).eval()


def describe(qm):
    """One line per code kind: how many sites, the k used, the share of flagged LN channels."""
    rows = {}
    for p in qm.sites.values():
        rows.setdefault(p["code"], []).append(p)
    out = []
    for code, ps in sorted(rows.items()):
        extra = ""
        if code != "uniform":
            extra = f", k in {sorted({p['k'] for p in ps})}"
        if code == "o2sf":
            share = float(np.mean([float(p["flags"].double().mean()) for p in ps]))
            extra += f", {share * 100:.1f} % of channels flagged"
        out.append(f"{code}: {len(ps)} sites{extra}")
    return "; ".join(out) if out else "no sites"


def logit_error(q, fp):
    """Relative MSE of logits ``q`` against the float ``fp``."""
    err = float(((q - fp) ** 2).mean() / (fp ** 2).mean())
    return "NaN" if math.isnan(err) else f"{err:.2e}"
