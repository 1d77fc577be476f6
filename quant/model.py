"""EfficientViT classification models (B1, B2 and a narrow proxy) with the official module paths,
and the registry that also names the DeiT models of ``quant.deit`` (TSPTQ-ViT).

The module tree mirrors mit-han-lab/efficientvit so that official checkpoints load with strict key
matching (``backbone.input_stem.op_list.0.conv.weight`` ...); `load_checkpoint` also accepts
timm-converted files. `layer_table` lists every multiply-accumulate op (conv, attention MatMul,
linear) with shapes and MACs: the workload the hardware model reads.
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5
ATTN_EPS = 1e-15


@dataclass(frozen=True)
class ModelSpec:
    name: str
    widths: tuple
    depths: tuple
    dim: int
    head: tuple
    n_classes: int = 1000
    expand: int = 4
    crop: float = 1.0  # eval centre-crop ratio
    resolutions: tuple = (224, 256, 288)
    in_channels: int = 3
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    family: str = "EfficientViT"

    @property
    def title(self):
        return f"EfficientViT-{self.name.upper()}"


SPECS = {
    "b1": ModelSpec("b1", (16, 32, 64, 128, 256), (1, 2, 3, 3, 4), 16, (1536, 1600), crop=0.95),
    "b2": ModelSpec("b2", (24, 48, 96, 192, 384), (1, 3, 4, 4, 6), 32, (2304, 2560), crop=1.0),
    # Narrow EfficientViT-family network for the digits proxy (same block types, 64x64 inputs).
    "proxy": ModelSpec("proxy", (8, 16, 32, 48, 64), (1, 1, 1, 1, 1), 8, (128, 128), n_classes=10,
                       crop=1.0, resolutions=(64,), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}


class ModelError(Exception):
    """A user-facing problem with a model name, resolution or checkpoint (one line)."""


def _all_specs():
    from quant.deit import DEIT_SPECS

    return {**SPECS, **DEIT_SPECS}


def get_spec(name):
    specs = _all_specs()
    try:
        return specs[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(specs)}") from None


def check_resolution(spec, resolution):
    if spec.family == "DeiT" and resolution not in spec.resolutions:
        side = spec.resolutions[0] // spec.patch
        raise ModelError(f"unsupported resolution {resolution!r}: {spec.title} runs at "
                         f"{spec.resolutions[0]} (its position embedding holds {side}x{side} patches)")
    if not isinstance(resolution, int) or resolution < 32 or resolution % 32:
        raise ModelError(f"unsupported resolution {resolution!r}: it must be a multiple of 32 (>= 32), "
                         f"e.g. {', '.join(map(str, spec.resolutions))}")
    return resolution


# --------------------------------------------------------------------------------------------------
# Layers (attribute names follow the official code so that state_dict keys match)

class ConvLayer(nn.Module):
    """conv -> optional BN -> optional Hardswish; 'same' padding."""

    def __init__(self, cin, cout, k=1, stride=1, groups=1, bias=False, norm=True, act=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout, eps=BN_EPS) if norm else None
        self.act = nn.Hardswish() if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LinearLayer(nn.Module):
    """linear -> optional LayerNorm -> optional Hardswish."""

    def __init__(self, cin, cout, bias=True, norm=False, act=False):
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=bias)
        self.norm = nn.LayerNorm(cout, eps=BN_EPS) if norm else None
        self.act = nn.Hardswish() if act else None

    def forward(self, x):
        x = self.linear(torch.flatten(x, 1))
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class DSConv(nn.Module):
    """Depthwise 3x3 (BN, hswish) then pointwise (BN)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.depth_conv = ConvLayer(cin, cin, 3, stride, groups=cin, act=True)
        self.point_conv = ConvLayer(cin, cout, 1)

    def forward(self, x):
        return self.point_conv(self.depth_conv(x))


class MBConv(nn.Module):
    """1x1 expand (hswish) -> depthwise 3x3 (hswish) -> 1x1 project (BN).

    ``fewer_norm``: expand and depthwise carry a bias and no BN (stages 2-3)."""

    def __init__(self, cin, cout, stride=1, expand=4, fewer_norm=False):
        super().__init__()
        mid = round(cin * expand)
        self.inverted_conv = ConvLayer(cin, mid, 1, bias=fewer_norm, norm=not fewer_norm, act=True)
        self.depth_conv = ConvLayer(mid, mid, 3, stride, groups=mid, bias=fewer_norm, norm=not fewer_norm,
                                    act=True)
        self.point_conv = ConvLayer(mid, cout, 1)

    def forward(self, x):
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


_TRACE = contextvars.ContextVar("trace", default=None)


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention (scales (5,)), q/k/v interleaved per head of ``dim``."""

    def __init__(self, channels, dim, scales=(5,)):
        super().__init__()
        heads = channels // dim
        total = heads * dim
        self.dim = dim
        self.heads = heads
        self.qkv = ConvLayer(channels, 3 * total, 1, norm=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
                nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False),
            )
            for s in scales)
        self.proj = ConvLayer(total * (1 + len(scales)), channels, 1)

    def heads_qkv(self, qkv):
        """(B, 3*heads*dim*(1+scales), H, W) -> q, k, v each (B, heads', dim, H*W)."""
        b, _, h, w = qkv.shape
        qkv = qkv.reshape(b, -1, 3 * self.dim, h * w)
        return qkv[:, :, :self.dim], qkv[:, :, self.dim:2 * self.dim], qkv[:, :, 2 * self.dim:]

    def attention(self, q, k, v):
        q, k = F.relu(q), F.relu(k)
        v = F.pad(v, (0, 0, 0, 1), value=1.0)  # ones row: the last output row is the divisor
        vk = v.double() @ k.double().transpose(-1, -2)  # (B, h, dim+1, dim)
        out = vk @ q.double()  # (B, h, dim+1, HW)
        trace = _TRACE.get()
        if trace is not None:
            trace.matmul(self, q.shape, v.shape)
        return (out[:, :, :-1] / (out[:, :, -1:] + ATTN_EPS)).to(q.dtype)

    def forward(self, x):
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        out = self.attention(*self.heads_qkv(qkv))
        b, _, h, w = x.shape
        return self.proj(out.reshape(b, -1, h, w))


class ResidualBlock(nn.Module):
    def __init__(self, main, shortcut):
        super().__init__()
        self.main = main
        self.shortcut = shortcut  # nn.Identity() or None

    def forward(self, x):
        y = self.main(x)
        return y + x if self.shortcut is not None else y


class EfficientViTBlock(nn.Module):
    def __init__(self, channels, dim, expand):
        super().__init__()
        self.context_module = ResidualBlock(LiteMLA(channels, dim), nn.Identity())
        local = MBConv(channels, channels, 1, expand, fewer_norm=True)
        self.local_module = ResidualBlock(local, nn.Identity())

    def forward(self, x):
        return self.local_module(self.context_module(x))


class OpSequential(nn.Module):
    def __init__(self, ops):
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x):
        for op in self.op_list:
            x = op(x)
        return x


class Backbone(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        w, d = spec.widths, spec.depths
        stem = [ConvLayer(spec.in_channels, w[0], 3, 2, act=True)]
        stem += [ResidualBlock(DSConv(w[0], w[0]), nn.Identity()) for _ in range(d[0])]
        self.input_stem = OpSequential(stem)
        stages, cin = [], w[0]
        for width, depth in zip(w[1:3], d[1:3], strict=True):
            blocks = []
            for i in range(depth):
                stride = 2 if i == 0 else 1
                blocks.append(ResidualBlock(MBConv(cin, width, stride, spec.expand),
                                            nn.Identity() if stride == 1 else None))
                cin = width
            stages.append(OpSequential(blocks))
        for width, depth in zip(w[3:], d[3:], strict=True):
            blocks = [ResidualBlock(MBConv(cin, width, 2, spec.expand, fewer_norm=True), None)]
            cin = width
            blocks += [EfficientViTBlock(cin, spec.dim, spec.expand) for _ in range(depth)]
            stages.append(OpSequential(blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        x = self.input_stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


class ClsHead(OpSequential):
    """1x1 conv (BN, hswish) -> global average pool -> linear (LayerNorm, hswish) -> linear."""

    def __init__(self, cin, widths, n_classes):
        super().__init__([
            ConvLayer(cin, widths[0], 1, act=True),
            nn.AdaptiveAvgPool2d(1),
            LinearLayer(widths[0], widths[1], bias=False, norm=True, act=True),
            LinearLayer(widths[1], n_classes, bias=True),
        ])


class EfficientViTCls(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.backbone = Backbone(spec)
        self.head = ClsHead(spec.widths[-1], spec.head, spec.n_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def build_model(name, n_classes=None):
    spec = get_spec(name)
    if n_classes is not None:
        spec = dataclasses.replace(spec, n_classes=n_classes)
    if spec.family == "DeiT":
        from quant.deit import DeiT

        return DeiT(spec).eval()
    return EfficientViTCls(spec).eval()


def param_count(model):
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Checkpoints

_TIMM_RULES = [
    (r"^stem\.in_conv\.", "backbone.input_stem.op_list.0."),
    (r"^stem\.res(\d+)\.", lambda m: f"backbone.input_stem.op_list.{int(m.group(1)) + 1}."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.", r"backbone.stages.\1.op_list.\2."),
    (r"^head\.in_conv\.", "head.op_list.0."),
    (r"^head\.classifier\.0\.", "head.op_list.2.linear."),
    (r"^head\.classifier\.1\.", "head.op_list.2.norm."),
    (r"^head\.classifier\.4\.", "head.op_list.3.linear."),
]


def official_keys(state):
    """Map a timm-converted state dict to the official key names (official keys pass through)."""
    if not any(k.startswith(("stem.", "stages.")) for k in state):
        return dict(state)
    out = {}
    for key, value in state.items():
        for pattern, repl in _TIMM_RULES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def load_checkpoint(model, path):
    """Load an official or timm checkpoint into ``model`` with strict key and shape matching."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"checkpoint {path} not found") from None
    except Exception as e:  # noqa: BLE001 - corrupt/unreadable file: one line for the user
        raise ModelError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:120]})") from None
    for wrapper in ("state_dict", "model"):  # the official files; the DeiT releases
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"checkpoint {path} holds no state dict of tensors")
    state = official_keys({k.removeprefix("module."): v for k, v in obj.items()})
    own = model.state_dict()
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in state and k not in optional]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        raise ModelError(f"checkpoint {path} does not fit model {model.spec.name}: keys " + "; ".join(parts))
    bad = [k for k in state if state[k].shape != own[k].shape]
    if bad:
        k = bad[0]
        raise ModelError(f"checkpoint {path} does not fit model {model.spec.name}: {len(bad)} shape "
                         f"mismatches (first: {k} {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
    model.load_state_dict(state, strict=False)
    return model


# --------------------------------------------------------------------------------------------------
# Per-layer workload table

LAYER_FIELDS = ("index", "name", "op", "cin", "cout", "kernel", "stride", "groups", "h_in", "w_in",
                "h_out", "w_out", "heads", "macs", "params")


class _Trace:
    def __init__(self, names):
        self.rows = []
        self.names = names

    def add(self, **row):
        row["index"] = len(self.rows)
        self.rows.append({f: row.get(f, 0) for f in LAYER_FIELDS})

    def matmul(self, module, q_shape, v_shape):
        b, heads, dim, hw = q_shape
        rows = v_shape[2]  # dim + 1 (ones row)
        name = self.names[module]
        common = dict(cin=dim, heads=heads, h_in=hw, w_in=1, h_out=hw, w_out=1, kernel=1, stride=1, groups=1)
        # [v;1] . k^T: (dim+1) x dim per head, reduced over the HW pixels
        self.add(name=f"{name}.vk", op="matmul_vk", cout=rows, macs=heads * rows * dim * hw, **common)
        # (v k^T) . q: (dim+1) x HW per head, reduced over dim
        self.add(name=f"{name}.vkq", op="matmul_q", cout=rows, macs=heads * rows * dim * hw, **common)

    def softmax_attention(self, module, heads, tokens, dim):
        """Standard attention (DeiT): q k^T (tokens x tokens per head, reduced over dim), then the
        softmax's output times v (tokens x dim, reduced over tokens)."""
        name = self.names[module]
        common = dict(heads=heads, h_in=tokens, w_in=1, h_out=tokens, w_out=1, kernel=1, stride=1, groups=1)
        self.add(name=f"{name}.qk", op="matmul_qk", cin=dim, cout=tokens, macs=heads * tokens * tokens * dim,
                 **common)
        self.add(name=f"{name}.av", op="matmul_av", cin=tokens, cout=dim, macs=heads * tokens * tokens * dim,
                 **common)


def _conv_op(conv):
    if conv.groups == 1:
        return "conv" if conv.kernel_size[0] > 1 else "pw"
    if conv.groups == conv.in_channels == conv.out_channels:
        return "dw"
    return "gpw"


@torch.no_grad()
def layer_table(model, resolution):
    """Every MAC-bearing op of one batch-1 inference at ``resolution``, in execution order."""
    names = {m: n for n, m in model.named_modules()}
    trace = _Trace(names)
    hooks = []

    def conv_hook(m, inp, out):
        x = inp[0]
        trace.add(name=names[m], op=_conv_op(m), cin=m.in_channels, cout=m.out_channels,
                  kernel=m.kernel_size[0], stride=m.stride[0], groups=m.groups,
                  h_in=x.shape[2], w_in=x.shape[3],
                  h_out=out.shape[2], w_out=out.shape[3],
                  macs=out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1],
                  params=sum(p.numel() for p in m.parameters()))

    def linear_hook(m, inp, out):
        tokens = inp[0].numel() // m.in_features  # batch 1: 1 for a head linear, N in a ViT
        trace.add(name=names[m], op="linear", cin=m.in_features, cout=m.out_features, kernel=1, stride=1,
                  groups=1, h_in=tokens, w_in=1, h_out=tokens, w_out=1,
                  macs=tokens * m.in_features * m.out_features, params=sum(p.numel() for p in m.parameters()))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    token = _TRACE.set(trace)
    try:
        model.eval()(torch.zeros(1, model.spec.in_channels, resolution, resolution))
    finally:
        _TRACE.reset(token)
        for h in hooks:
            h.remove()
    return trace.rows


def total_macs(rows):
    return sum(r["macs"] for r in rows)
