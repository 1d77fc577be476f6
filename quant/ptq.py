"""The Trio-ViT post-training quantizer: a quantized program of the network, its fake-quant
execution, calibration (MinMax/Percentile/OMSE/EMA), channel-wise migration, filter-wise shifting,
log2 divisors and BRECQ-style block reconstruction (AdaRound weights, LSQ activation steps).

The network is lowered to a flat list of ops (`Program`): convolutions with BN folded, residual
adds, the LiteMLA attention, pooling and linears. Every tensor between ops carries one activation
quantizer (`ActQ`). The same program runs in float with fake quantization (here) and in integers
(`quant.integer`), so the two agree op for op.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import arith
from .model import ConvLayer, DSConv, EfficientViTBlock, LiteMLA, MBConv, ResidualBlock

QMIN, QMAX = arith.int_range(arith.ACT_BITS)
HMAX = (1 << (arith.HSWISH_BITS - 1)) - 1
DIV_MIN, DIV_MAX = arith.LOG2_MIN, arith.LOG2_MAX
OBSERVERS = ("minmax", "percentile", "omse", "ema")


@dataclass
class QuantOptions:
    migration: bool = True  # channel-wise migration of depthwise inputs (eq. 6-8)
    shift: bool = True  # filter-wise shifting of second-pointwise inputs (eq. 9-10, midpoint)
    divisor: str = "log2-4"  # or "uniform8"
    observer: str = "omse"
    reconstruct: bool = True  # BRECQ-style block reconstruction
    offset_residual: bool = True  # fold log2(S) - round(log2(S)) of the divisor into the numerator
    iters: int = 200  # reconstruction iterations per block
    batch: int = 32
    seed: int = 0

    @classmethod
    def preset(cls, name, **kw):
        presets = {
            "trio": {},
            "vanilla": dict(migration=False, shift=False, divisor="uniform8", observer="minmax"),
        }
        if name not in presets:
            raise ValueError(f"unknown method {name!r}")
        return cls(**{**presets[name], **kw})


MIGRATION_MIN, MIGRATION_MAX = 0.1, 64.0  # range of the migration factor m_c (authors: [0.1, 64])


def round_half_up(x):
    return torch.floor(x + 0.5)


def ste_round(x):
    return x + (round_half_up(x) - x).detach()


# --------------------------------------------------------------------------------------------------
# Quantizers

class ActQ(nn.Module):
    """Symmetric int8 activation quantizer of one tensor: value = code * step * m[c] + delta[c].

    step: learnable (LSQ); m: per-channel migration factors (1 without migration); delta:
    per-channel shift (0 without shifting). The program carries tensors as their represented
    values *minus delta*, i.e. consumers see the shifted tensor and fold delta into their bias.
    """

    def __init__(self, channels):
        super().__init__()
        self.step = nn.Parameter(torch.tensor(1.0), requires_grad=False)
        self.register_buffer("m", torch.ones(channels))
        self.register_buffer("delta", torch.zeros(channels))
        self.enabled = False

    def scale(self):
        return self.step * self.m  # (C,)

    def forward(self, x):
        """x: the real tensor; returns the fake-quantized *shifted* tensor (x - delta)."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        x = x - self.delta.view(shape)
        if not self.enabled:
            return x
        s = self.scale().view(shape)
        return torch.clamp(ste_round(x / s), QMIN, QMAX) * s


class WeightQ(nn.Module):
    """Filter-wise symmetric int8 weights with AdaRound (soft during reconstruction, then hard)."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w.detach().clone())
        amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
        self.register_buffer("s", amax / QMAX)
        self.v = None
        self.mode = "nearest"  # nearest | soft | hard | float

    def _s(self):
        return self.s.view((-1,) + (1,) * (self.w.dim() - 1))

    def start_adaround(self):
        t = self.w / self._s()
        rest = (t - torch.floor(t)).clamp(0.01, 0.99)
        # h(v) = clamp(sigmoid(v) * 1.2 - 0.1, 0, 1) starts at the fractional part
        self.v = nn.Parameter(-torch.log(1.2 / (rest + 0.1) - 1))
        self.mode = "soft"

    def h(self):
        return torch.clamp(torch.sigmoid(self.v) * 1.2 - 0.1, 0, 1)

    def round_loss(self, beta):
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()

    def codes(self):
        t = self.w / self._s()
        if self.mode == "nearest":
            q = round_half_up(t)
        elif self.mode == "soft":
            q = torch.floor(t) + self.h()
        else:
            q = torch.floor(t) + (self.v >= 0).float()
        return torch.clamp(q, QMIN, QMAX)

    def forward(self):
        if self.mode == "float":
            return self.w
        return self.codes() * self._s()

    def harden(self):
        if self.v is not None:
            self.mode = "hard"


# --------------------------------------------------------------------------------------------------
# Program ops

@dataclass
class Op:
    kind: str  # conv | add | attn | pool | linear
    name: str
    srcs: list
    dst: str
    block: str = ""
    attrs: dict = field(default_factory=dict)


def fold_bn(layer):
    """(weight, bias) of a ConvLayer / Conv2d with its BN folded (float64 math, float32 result)."""
    conv = layer.conv if isinstance(layer, ConvLayer) else layer
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    norm = getattr(layer, "norm", None)
    if norm is not None:
        g = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
        w = w * g.view(-1, 1, 1, 1)
        b = (b - norm.running_mean.double()) * g + norm.bias.detach().double()
    return w.float(), b.float(), conv


class Program(nn.Module):
    """The quantized network: ops, one ActQ per tensor, one WeightQ per weight."""

    def __init__(self, model, options: QuantOptions):
        super().__init__()
        self.options = options
        self.spec = model.spec
        self.ops: list[Op] = []
        self.acts = nn.ModuleDict()
        self.weights = nn.ModuleDict()
        self.biases = {}
        self.hswish = {}  # conv name -> pre-activation step (3 / T)
        self.attn_params = {}  # attn name -> dict of internal scales
        self.blocks = []  # (block name, input tensor, output tensor)
        self.quant_enabled = False
        self.pre_observer = None  # f(conv name, pre-activation) during calibration
        self.migrated = set()  # tensors that feed a depthwise conv only (plus elementwise adds)
        self.shifted = set()  # tensors that feed a second pointwise conv only
        self._lower(model)

    def to_device(self, device):
        """Move every tensor of the program (modules, biases, LayerNorm parameters) to ``device``."""
        self.to(device)
        self.biases = {k: v.to(device) for k, v in self.biases.items()}
        for op in self.ops:
            if "ln" in op.attrs:
                g, b, eps = op.attrs["ln"]
                op.attrs["ln"] = (g.to(device), b.to(device), eps)
        return self

    # --- lowering ---------------------------------------------------------------------------------
    def _tensor(self, name, channels):
        key = name.replace(".", "/")
        if key not in self.acts:
            self.acts[key] = ActQ(channels)
        return name

    def act(self, name):
        return self.acts[name.replace(".", "/")]

    def _conv(self, name, layer, src, act, block):
        w, b, conv = fold_bn(layer)
        key = name.replace(".", "/")
        self.weights[key] = WeightQ(w)
        self.biases[name] = b
        dst = self._tensor(name, w.shape[0])
        self.ops.append(Op("conv", name, [src], dst, block, dict(
            stride=conv.stride[0], pad=conv.padding[0], groups=conv.groups, act=act)))
        return dst

    def _add(self, name, a, b, channels, block):
        dst = self._tensor(name, channels)
        self.ops.append(Op("add", name, [a, b], dst, block))
        return dst

    def _mbconv(self, prefix, m: MBConv | DSConv, src, block):
        if isinstance(m, MBConv):
            t = self._conv(f"{prefix}.inverted_conv", m.inverted_conv, src, "hswish", block)
            self.migrated.add(t)
        else:
            t = src
            self.migrated.add(src)
        t = self._conv(f"{prefix}.depth_conv", m.depth_conv, t, "hswish", block)
        self.shifted.add(t)
        return self._conv(f"{prefix}.point_conv", m.point_conv, t, None, block)

    def _residual(self, prefix, r: ResidualBlock, src, channels_out):
        block = prefix
        self.blocks.append((block, src, None))
        if isinstance(r.main, LiteMLA):
            out = self._attention(f"{prefix}.main", r.main, src, block)
        else:
            out = self._mbconv(f"{prefix}.main", r.main, src, block)
        if r.shortcut is not None:
            out = self._add(f"{prefix}.add", out, src, channels_out, block)
        self.blocks[-1] = (block, src, out)
        return out

    def _attention(self, prefix, m: LiteMLA, src, block):
        qkv = self._conv(f"{prefix}.qkv", m.qkv, src, None, block)
        branches = [qkv]
        for i, seq in enumerate(m.aggreg):
            t = self._conv(f"{prefix}.aggreg.{i}.0", seq[0], qkv, None, block)
            branches.append(self._conv(f"{prefix}.aggreg.{i}.1", seq[1], t, None, block))
        dst = self._tensor(f"{prefix}.attn", m.heads * m.dim * len(branches))
        self.ops.append(Op("attn", f"{prefix}.attn", branches, dst, block, dict(dim=m.dim, heads=m.heads)))
        self.attn_params[f"{prefix}.attn"] = {}
        return self._conv(f"{prefix}.proj", m.proj, dst, None, block)

    def _lower(self, model):
        bb = model.backbone
        src = self._tensor("input", self.spec.in_channels)
        stem = bb.input_stem.op_list
        self.blocks.append(("stem", src, None))
        t = self._conv("backbone.input_stem.op_list.0", stem[0], src, "hswish", "stem")
        self.blocks[-1] = ("stem", src, t)
        for j, r in enumerate(stem[1:], 1):
            t = self._residual(f"backbone.input_stem.op_list.{j}", r, t, self.spec.widths[0])
        for s, stage in enumerate(bb.stages):
            for j, blk in enumerate(stage.op_list):
                prefix = f"backbone.stages.{s}.op_list.{j}"
                if isinstance(blk, EfficientViTBlock):
                    c = blk.context_module.main.proj.conv.out_channels
                    t = self._residual(f"{prefix}.context_module", blk.context_module, t, c)
                    t = self._residual(f"{prefix}.local_module", blk.local_module, t, c)
                else:
                    t = self._residual(prefix, blk, t, blk.main.point_conv.conv.out_channels)
        head = model.head.op_list
        self.blocks.append(("head", t, None))
        t = self._conv("head.op_list.0", head[0], t, "hswish", "head")
        c = head[0].conv.out_channels
        pooled = self._tensor("head.op_list.1", c)
        self.ops.append(Op("pool", "head.op_list.1", [t], pooled, "head"))
        for i, post in ((2, "ln_hswish"), (3, None)):
            lin = head[i]
            key = f"head.op_list.{i}"
            self.weights[key.replace(".", "/")] = WeightQ(lin.linear.weight.detach().float())
            bias = lin.linear.bias
            self.biases[key] = (bias.detach().float() if bias is not None
                                else torch.zeros(lin.linear.out_features))
            attrs = dict(post=post)
            if post:
                attrs["ln"] = (lin.norm.weight.detach().float(), lin.norm.bias.detach().float(), lin.norm.eps)
            dst = self._tensor(key, lin.linear.out_features) if post else "logits"
            self.ops.append(Op("linear", key, [pooled], dst, "head", attrs))
            pooled = dst
        self.blocks[-1] = ("head", self.blocks[-1][1], "logits")

    # --- execution --------------------------------------------------------------------------------
    def weight(self, name):
        return self.weights[name.replace(".", "/")]

    def bias(self, op, w):
        """Bias with the consumer side of filter-wise shifting folded in (eq. 10): b + W . delta."""
        b = self.biases[op.name]
        delta = self.act(op.srcs[0]).delta
        if op.kind == "conv" and delta.abs().sum() > 0:
            if op.attrs["groups"] != 1:
                raise ValueError(f"{op.name}: a shifted input must feed a dense convolution")
            b = b + (w.sum((2, 3)) * delta.view(1, -1)).sum(1)
        return b

    def run_op(self, op, env, quant=True):
        quant = quant and self.quant_enabled
        x = [env[s] for s in op.srcs]
        if op.kind == "conv":
            wq = self.weight(op.name)
            w = wq()
            a = op.attrs
            b = self.bias(op, w)
            if quant and wq.mode != "float":  # the integer model's int32 bias: round(b / s_acc)
                sx = self.act(op.srcs[0]).scale()
                sa = (sx if a["groups"] == w.shape[0] and a["groups"] > 1 else sx[0]) * wq.s
                b = b + (round_half_up(b / sa) * sa - b).detach()
            y = F.conv2d(x[0], w, b, a["stride"], a["pad"], 1, a["groups"])
            if a["act"] == "hswish":
                if self.pre_observer is not None:  # calibration: the pre-activation's range
                    self.pre_observer(op.name, y)
                if quant and op.name in self.hswish:
                    s = self.hswish[op.name]
                    y = torch.clamp(ste_round(y / s), -HMAX - 1, HMAX) * s
                y = F.hardswish(y)
            return self.act(op.dst)(y)
        if op.kind == "add":
            return self.act(op.dst)(x[0] + x[1])
        if op.kind == "attn":
            return self.act(op.dst)(self.attention(op, x, quant))
        if op.kind == "pool":
            return self.act(op.dst)(x[0].mean((2, 3)))
        if op.kind == "linear":
            w = self.weight(op.name)()
            y = F.linear(x[0], w, self.biases[op.name])
            if op.attrs["post"] == "ln_hswish":
                g, b, eps = op.attrs["ln"]
                return self.act(op.dst)(F.hardswish(F.layer_norm(y, y.shape[-1:], g, b, eps)))
            return y
        raise ValueError(op.kind)

    def attention(self, op, branches, quant=True):
        """LiteMLA ReLU attention per head; with ``quant`` and calibrated internals, the integer
        dataflow of the accelerator: int8 v.k^T and sum(k), int32 numerator and divisor, divisor
        log2-quantized (4 bit, LOD rule) and division as a shift (or a uniform 8-bit divisor)."""
        dim = op.attrs["dim"]
        p = self.attn_params[op.name]
        outs = []
        for bi, t in enumerate(branches):
            b, _, h, w = t.shape
            qkv = t.reshape(b, -1, 3 * dim, h * w).double()
            q, k, v = F.relu(qkv[:, :, :dim]), F.relu(qkv[:, :, dim:2 * dim]), qkv[:, :, 2 * dim:]
            vk = v @ k.transpose(-1, -2)  # (B, h, dim, dim)
            ks = k.sum(-1, keepdim=True).transpose(-1, -2)  # (B, h, 1, dim)
            if not (quant and p.get("ready")):
                num, den = vk @ q, ks @ q
                outs.append((num / (den + 1e-15)).float())
                continue
            # In code space, as the integer model computes it: int8 codes, exact integer sums
            # (float64), dyadic requantizations with the same (b, c) pairs, STE for the gradients.
            s_t = float(self.act(op.srcs[bi]).step.detach())
            qc, kc, vc = ste_round(q / s_t), ste_round(k / s_t), ste_round(v / s_t)
            vk8 = dyadic_requant(vc @ kc.transpose(-1, -2), s_t * s_t / p["s_vk"], arith.ACT_BITS)
            ks8 = dyadic_requant(kc.sum(-1, keepdim=True).transpose(-1, -2), s_t / p["s_ks"], arith.ACT_BITS)
            num, den = vk8 @ qc, ks8 @ qc  # int32 dividends and divisors
            if self.options.divisor == "uniform8":
                den = den * (p["s_ks"] * s_t)
                s_d = p["s_den"]
                den_q = torch.clamp(round_half_up(den / s_d), 0, QMAX) * s_d
                outs.append((num * (p["s_vk"] * s_t) / den_q).float())
                continue
            e = log2_code(den.detach(), p["offset"][bi])
            residual = getattr(self.options, "offset_residual", True)  # files from before the option
            x16 = dyadic_requant(num, numerator_scale(p, bi, s_t, p["s_o"], residual), arith.DIVIDEND_BITS)
            y = x16 / torch.exp2(e)  # shift_divide: exact left shifts, right shifts rounded half up
            y = y + (round_half_up(y) - y).detach()
            outs.append((torch.clamp(y, QMIN, QMAX) * p["s_o"]).float())
        out = torch.cat(outs, 1)  # (B, heads', dim, HW)
        b, _, h, w = branches[0].shape
        return out.reshape(b, -1, h, w)

    def forward(self, x, quant=True, upto=None):
        """Logits, or with ``upto`` the dict of every tensor computed by the first ``upto`` ops."""
        env = {"input": self.act("input")(x)}
        for op in self.ops[:upto]:
            env[op.dst] = self.run_op(op, env, quant)
        return env if upto is not None else env["logits"]

    def set_quant(self, enabled):
        self.quant_enabled = enabled
        for a in self.acts.values():
            a.enabled = enabled
        for w in self.weights.values():
            if w.mode != "hard":
                w.mode = "nearest" if enabled else "float"


def numerator_scale(p, bi, s_t, s_o, residual=True):
    """Real step of the int32 numerator into the int16 dividend: s_vk * s_t / (2**g * s_o). The
    log2 offset keeps only round(log2(S)) of the divisor's scale S = s_ks * s_t / 2**g, which
    scales every quotient by 2**(log2(S) - offset) (0.71..1.41); with ``residual`` that factor is
    divided out here, in a parameter, not in the hardware."""
    scale = p["s_vk"] * s_t / (2.0 ** p["g"] * s_o)
    if residual:
        scale *= 2.0 ** (p["offset"][bi] - math.log2(p["s_ks"] * s_t / 2.0 ** p["g"]))
    return scale


def dyadic_requant(codes, scale, bits):
    """Torch mirror of arith.requantize with arith.dyadic(scale): round_half_up(codes * b / 2**c),
    saturated to signed ``bits``; exact for integer codes below 2**37 (float64), STE gradient."""
    b, c = arith.dyadic(scale)
    lo, hi = arith.int_range(bits)
    return torch.clamp(ste_round(codes * (float(b) / 2.0 ** int(c))), lo, hi)


def log2_code(den_int, offset):
    """Torch mirror of arith.log2_quantize (LOD rule): clip(i + bit(i-1) + offset), 0 counts as 1."""
    d = torch.clamp(den_int, min=1)
    i = torch.floor(torch.log2(d))
    # guard float log2 at exact powers of two
    i = torch.where(torch.exp2(i) > d, i - 1, i)
    i = torch.where(torch.exp2(i + 1) <= d, i + 1, i)
    below = torch.where(i >= 1, torch.floor(d / torch.exp2(i - 1)) % 2, torch.zeros_like(d))
    return torch.clamp(i + below + offset, DIV_MIN, DIV_MAX)


# --------------------------------------------------------------------------------------------------
# Calibration

class _Stats:
    """Running statistics of one tensor over the calibration set."""

    def __init__(self, rng):
        self.rng = rng
        self.cmax = None
        self.cmin = None
        self.sample = []
        self.absmax = 0.0
        self.ema = None

    def channels(self, x):
        c = x.transpose(0, 1).flatten(1)
        mx, mn = c.amax(1), c.amin(1)
        self.cmax = mx if self.cmax is None else torch.maximum(self.cmax, mx)
        self.cmin = mn if self.cmin is None else torch.minimum(self.cmin, mn)

    def values(self, x):
        a = x.detach().abs().flatten()
        m = float(a.max())
        self.absmax = max(self.absmax, m)
        self.ema = m if self.ema is None else 0.9 * self.ema + 0.1 * m
        n = min(a.numel(), 1 << 16)
        idx = torch.from_numpy(self.rng.choice(a.numel(), n, replace=False)) if n < a.numel() else slice(None)
        self.sample.append(a[idx].cpu())  # the observers run on the CPU, whatever the device

    def step(self, observer, qmax=QMAX):
        """The step of a code whose largest level is ``qmax`` (127 signed 8-bit, 255 unsigned)."""
        a = torch.cat(self.sample) if self.sample else torch.zeros(1)
        if observer == "minmax":
            r = self.absmax
        elif observer == "ema":
            r = self.ema or 0.0
        elif observer == "percentile":
            r = float(torch.quantile(a[: 1 << 24].double(), 0.9999))
        elif observer == "omse":
            r = omse_range(a, self.absmax, qmax=qmax)
        else:
            raise ValueError(observer)
        return max(r, 1e-8) / qmax


def omse_range(a, amax, steps=100, sample=1 << 15, qmax=QMAX):
    """Clipping range minimising the quantization MSE of the |x| sample ``a`` (a seeded subsample of
    at most ``sample`` values; all ``steps`` candidate ranges evaluated at once) on ``qmax`` levels."""
    a = a.double()
    if a.numel() > sample:
        a = a[torch.randperm(a.numel(), generator=torch.Generator().manual_seed(0))[:sample]]
    r = amax * torch.arange(1, steps + 1, dtype=torch.float64) / steps
    s = (r.clamp_min(1e-12) / qmax).view(-1, 1)
    q = torch.clamp(torch.floor(a.view(1, -1) / s + 0.5), 0, qmax) * s
    err = ((a.view(1, -1) - q) ** 2).sum(1)
    return float(r[int(torch.argmin(err))])


@torch.no_grad()
def _fp_pass(prog, images, batch, visit):
    for i in range(0, len(images), batch):
        env = {}
        env["input"] = images[i:i + batch]
        for op in prog.ops:
            env[op.dst] = prog.run_op(op, env, quant=False)
            visit(op, env)
        visit(None, env)


@torch.no_grad()
def calibrate(prog: Program, images, progress=None):
    """Set migration factors, shifts and initial steps from float activations of ``images``."""
    opts = prog.options
    rng = np.random.default_rng(opts.seed)
    prog.set_quant(False)
    names = ["input"] + [op.dst for op in prog.ops if op.dst != "logits"]
    stats = {n: _Stats(rng) for n in names}
    pre = {op.name: _Stats(rng) for op in prog.ops if op.kind == "conv" and op.attrs["act"] == "hswish"}

    # pass 1: per-channel ranges (migration, shift), pre-activation ranges (integer Hardswish)
    def channel_visit(op, env):
        if op is None:
            stats["input"].channels(env["input"])
            return
        if op.dst in stats:
            stats[op.dst].channels(env[op.dst])
        if op.kind == "pool":  # the pooled area, frozen into the pool's requantization
            op.attrs["hw"] = int(env[op.srcs[0]].shape[2] * env[op.srcs[0]].shape[3])

    def pre_visit(name, y):
        pre[name].absmax = max(pre[name].absmax, float(y.abs().max()))

    prog.pre_observer = pre_visit
    try:
        _fp_pass(prog, images, opts.batch, channel_visit)
    finally:
        prog.pre_observer = None
    for name in names:
        a, st = prog.act(name), stats[name]
        if opts.migration and name in prog.migrated:
            cmax = torch.maximum(st.cmax.abs(), st.cmin.abs())
            # eq. 8, bounded as the authors' code bounds it: a channel that is zero on the
            # calibration data (dead after Hardswish) must not get a factor near 0, whose
            # requantization scale no 16-bit multiplier can hold
            a.m.copy_((cmax / cmax.mean().clamp_min(1e-12)).clamp(MIGRATION_MIN, MIGRATION_MAX))
        if opts.shift and name in prog.shifted:
            a.delta.copy_((st.cmax + st.cmin) / 2)  # midpoint, not eq. 9's (max - min) / 2
    for name, st in pre.items():
        three = max(1, min(HMAX, math.floor(3 * HMAX / max(st.absmax, 3.0))))
        prog.hswish[name] = 3.0 / three  # the int12 pre-activation step: 3 / T, T integer

    # pass 2: value statistics of each (shifted, migrated) tensor
    def value_visit(op, env):
        if op is None:
            name = "input"
        elif op.dst in stats:
            name = op.dst
        else:
            return
        a = prog.act(name)
        shape = (1, -1) + (1,) * (env[name].dim() - 2)
        stats[name].values(env[name] / a.m.view(shape))  # env already holds x - delta

    _fp_pass(prog, images, opts.batch, value_visit)
    for name in names:
        prog.act(name).step.data.fill_(stats[name].step(opts.observer))
    if progress:
        progress(f"calibrated {len(names)} activation quantizers")
    _calibrate_attention(prog, images)
    prog.set_quant(True)


@torch.no_grad()
def _calibrate_attention(prog, images):
    """Internal scales of each attention from float statistics: v.k^T and sum(k) steps, the output
    step, the divisor normaliser 2**g (max divisor lands at code 7) and the log2 offsets."""
    opts = prog.options
    acc = {op.name: dict(vk=0.0, ks=0.0, den=0.0) for op in prog.ops if op.kind == "attn"}

    def visit(op, env):
        if op is None or op.kind != "attn":
            return
        dim = op.attrs["dim"]
        for t in (env[s] for s in op.srcs):
            b, _, h, w = t.shape
            qkv = t.reshape(b, -1, 3 * dim, h * w).double()
            q, k, v = F.relu(qkv[:, :, :dim]), F.relu(qkv[:, :, dim:2 * dim]), qkv[:, :, 2 * dim:]
            ks = k.sum(-1, keepdim=True).transpose(-1, -2)
            a = acc[op.name]
            a["vk"] = max(a["vk"], float((v @ k.transpose(-1, -2)).abs().max()))
            a["ks"] = max(a["ks"], float(ks.max()))
            a["den"] = max(a["den"], float((ks @ q).max()))

    # the float pass runs with the quantizers enabled up to the attention inputs
    prog.set_quant(True)
    _fp_pass(prog, images, opts.batch, visit)
    for op in prog.ops:
        if op.kind != "attn":
            continue
        a = acc[op.name]
        s_vk = max(a["vk"], 1e-8) / QMAX
        s_ks = max(a["ks"], 1e-8) / QMAX
        g = math.ceil(math.log2(max(a["den"], 1e-8))) - DIV_MAX
        p = dict(s_vk=s_vk, s_ks=s_ks, s_o=float(prog.act(op.dst).step), g=g,
                 s_den=max(a["den"], 1e-8) / QMAX)
        p["offset"] = [int(arith.log2_offset(s_ks * float(prog.act(s).step) / 2.0 ** g)) for s in op.srcs]
        p["ready"] = True
        prog.attn_params[op.name] = p


def refresh_attention(prog):
    """Keep the attention's output step equal to its tensor's (LSQ may move it)."""
    for op in prog.ops:
        if op.kind == "attn" and prog.attn_params[op.name].get("ready") and prog.options.divisor == "log2-4":
            p = prog.attn_params[op.name]
            p["s_o"] = float(prog.act(op.dst).step)
            p["offset"] = [int(arith.log2_offset(p["s_ks"] * float(prog.act(s).step) / 2.0 ** p["g"]))
                           for s in op.srcs]


# --------------------------------------------------------------------------------------------------
# Block reconstruction (BRECQ-style: AdaRound + LSQ, MSE objective)

def _block_ops(prog, block):
    idx = [i for i, op in enumerate(prog.ops) if op.block == block]
    return idx[0], idx[-1] + 1


def reconstruct(prog: Program, images, progress=None):
    opts = prog.options
    gen = torch.Generator().manual_seed(opts.seed)
    with torch.no_grad():
        prog.set_quant(True)
        q_in = prog.act("input")(images)
        prog.set_quant(False)
        fp_in = prog.act("input")(images)
        prog.set_quant(True)
    t_start = time.time()

    def eta(done):  # done: fraction of the reconstruction finished
        el = time.time() - t_start
        return f"{el:.0f} s elapsed" + (f", ETA {el * (1 - done) / done:.0f} s" if done > 0 else "")

    for bi, (block, src, _dst) in enumerate(prog.blocks):
        start, stop = _block_ops(prog, block)
        ops = prog.ops[start:stop]
        with torch.no_grad():
            prog.set_quant(False)
            fp_out = _run_block(prog, ops, src, fp_in, quant=False)
            prog.set_quant(True)
        wqs = [prog.weight(op.name) for op in ops if op.kind in ("conv", "linear")]
        steps = [prog.act(op.dst).step for op in ops if op.dst != "logits"]
        if opts.iters > 0:
            for wq in wqs:
                wq.start_adaround()
            for s in steps:
                s.requires_grad_(True)
            opt_w = torch.optim.Adam([wq.v for wq in wqs], lr=1e-3)
            # LSQ: Adam moves a parameter by about lr per step whatever its size, so each step size
            # gets a learning rate relative to its own value (BRECQ's 4e-5 for steps ~0.04)
            opt_s = torch.optim.Adam([{"params": [st], "lr": 1e-3 * float(st.detach())} for st in steps]) \
                if steps else None
            warm = int(0.2 * opts.iters)
            skipped = 0
            next_report = time.time() + 10
            for it in range(opts.iters):
                if progress and time.time() >= next_report:
                    done = (bi + it / opts.iters) / len(prog.blocks)
                    progress(f"block {bi + 1}/{len(prog.blocks)} {block}: iteration {it}/{opts.iters} "
                             f"({eta(done)})")
                    next_report = time.time() + 10
                idx = torch.randint(0, len(q_in), (min(opts.batch, len(q_in)),), generator=gen)
                out = _run_block(prog, ops, src, q_in[idx], quant=True)
                loss = F.mse_loss(out, fp_out[idx])
                if it >= warm:
                    beta = 20 - (20 - 2) * (it - warm) / max(1, opts.iters - warm)
                    loss = loss + 0.01 * sum(wq.round_loss(beta) for wq in wqs) / max(1, sum(
                        wq.w.numel() for wq in wqs)) * 1000
                opt_w.zero_grad()
                if opt_s:
                    opt_s.zero_grad()
                if not torch.isfinite(loss):  # e.g. a uniform 8-bit divisor hit zero: nothing to learn
                    skipped += 1
                    continue
                loss.backward()
                opt_w.step()
                if opt_s:
                    opt_s.step()
                    for st in steps:
                        st.data.clamp_(min=1e-12)
            for s in steps:
                s.requires_grad_(False)
            if skipped and progress:
                progress(f"block {block}: {skipped}/{opts.iters} iterations had a non-finite loss "
                         "and were skipped")
        for wq in wqs:
            wq.harden()
        refresh_attention(prog)
        with torch.no_grad():
            q_in = _run_block(prog, ops, src, q_in, quant=True)
            fp_in = fp_out
            err = float(F.mse_loss(q_in, fp_out)) / max(float(fp_out.pow(2).mean()), 1e-12)
        if progress:
            progress(f"block {bi + 1}/{len(prog.blocks)} {block}: relative MSE {err:.4g} "
                     f"({eta((bi + 1) / len(prog.blocks))})")


def _run_block(prog, ops, src, x, quant, batch=64):
    outs = []
    for i in range(0, len(x), batch):
        env = {src: x[i:i + batch]}
        for op in ops:
            env[op.dst] = prog.run_op(op, env, quant)
        outs.append(env[ops[-1].dst])
    return torch.cat(outs)


def quantize_model(model, images, options: QuantOptions, progress=None, device="cpu"):
    """Calibrate (and reconstruct) a Program for ``model`` on the calibration ``images``, computing
    on ``device``; the returned program is on the CPU (what `freeze` and `torch.save` take)."""
    torch.manual_seed(options.seed)
    prog = Program(model, options).to_device(device)
    images = images.to(device)
    calibrate(prog, images, progress)
    if options.reconstruct:
        reconstruct(prog, images, progress)
    else:
        for w in prog.weights.values():
            w.mode = "nearest"
    snap_shifts(prog)
    return prog.to_device("cpu")


@torch.no_grad()
def snap_shifts(prog):
    """Put each shift delta on the integer grid of its producer's requantizer input so that the
    integer model subtracts exactly the same value (hswish product step (3/T)^2/6)."""
    for op in prog.ops:
        if op.kind == "conv":
            a = prog.act(op.dst)
            if a.delta.abs().sum() > 0:
                if op.attrs["act"] != "hswish":
                    raise ValueError(f"{op.name}: shifting is only supported after a Hardswish")
                unit = prog.hswish[op.name] ** 2 / 6
                a.delta.copy_(torch.floor(a.delta / unit + 0.5) * unit)


@torch.no_grad()
def evaluate(fn, images, labels, batch=64, progress=None):
    """Top-1 accuracy (%) of ``fn`` (a module: its batches go to its device) and its logits."""
    logits = []
    device = next(iter(fn.parameters()), torch.empty(0)).device
    for i in range(0, len(images), batch):
        logits.append(fn(images[i:i + batch].to(device)).cpu())
        if progress:
            progress(min(i + batch, len(images)), len(images))
    logits = torch.cat(logits)
    acc = float((logits.argmax(1) == labels).float().mean() * 100)
    return acc, logits
