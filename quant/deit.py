"""DeiT (standard ViT, patch 16, 224x224) for TSPTQ-ViT: Tiny, Small and Base with the timm/DeiT
module paths, so that the released checkpoints load with strict key matching
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.i.norm1``, ``blocks.i.attn.qkv``,
``blocks.i.attn.proj``, ``blocks.i.norm2``, ``blocks.i.mlp.fc1``, ``blocks.i.mlp.fc2``, ``norm``,
``head``). The DeiT releases wrap the state dict as ``{"model": ...}``; ``load_checkpoint`` in
``quant.model`` accepts both. Attention MatMuls are traced for ``quant.model.layer_table`` as the
EfficientViT attention is.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DeiTSpec", "DeiT", "DEIT_SPECS", "VIT_PROXY", "QUANT_SITES", "quant_hook", "add_ln_outliers"]

LN_EPS = 1e-6

# Where TSPTQ-ViT (quant.tsptq) quantizes activations: every MatMul input. Kind of each site:
# "ln" a LayerNorm output (O-2SF), "softmax" and "gelu" the non-normal ones (V-2SF), "plain" the rest.
QUANT_SITES = {"input": "plain", "norm1": "ln", "q": "plain", "k": "plain", "v": "plain",
               "softmax": "softmax", "proj": "plain", "norm2": "ln", "gelu": "gelu", "norm": "ln"}
_HOOK = contextvars.ContextVar("deit_quant_hook", default=None)


def quant_hook(hook):
    """Context: every site of ``QUANT_SITES`` goes through ``hook(name, kind, x)`` (``name``:
    ``blocks.<i>.<site>``, or ``input`` / ``norm``)."""

    class _Ctx:
        def __enter__(self):
            self.token = _HOOK.set(hook)

        def __exit__(self, *exc):
            _HOOK.reset(self.token)

    return _Ctx()


def _q(module, site, x):
    hook = _HOOK.get()
    if hook is None:
        return x
    prefix = getattr(module, "_site_prefix", "")
    return hook(prefix + site, QUANT_SITES[site], x)


@dataclass(frozen=True)
class DeiTSpec:
    name: str
    dim: int
    depth: int
    heads: int
    mlp_ratio: int = 4
    patch: int = 16
    n_classes: int = 1000
    crop: float = 0.875  # eval: resize to 256, centre crop 224 (the DeiT recipe)
    resolutions: tuple = (224,)
    in_channels: int = 3
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    family: str = "DeiT"

    @property
    def title(self):
        return f"DeiT-{self.name.split('-')[1].capitalize()}"


DEIT_SPECS = {
    "deit-tiny": DeiTSpec("deit-tiny", 192, 12, 3),
    "deit-small": DeiTSpec("deit-small", 384, 12, 6),
    "deit-base": DeiTSpec("deit-base", 768, 12, 12),
}


# The digits ViT proxy of TSPTQ-ViT (quant.proxy vit-train): DeiT's blocks, narrow and shallow, on
# the 64x64 digits in patches of 8.
VIT_PROXY = DeiTSpec("vit-proxy", 96, 4, 3, patch=8, n_classes=10, crop=1.0, resolutions=(64,),
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


class PatchEmbed(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.proj = nn.Conv2d(spec.in_channels, spec.dim, spec.patch, spec.patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention: qkv linear, softmax(q k^T / sqrt(d)) v, proj linear."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        from quant.model import _TRACE

        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = (_q(self, site, t) for site, t in zip("qkv", (qkv[0], qkv[1], qkv[2]), strict=True))
        attn = _q(self, "softmax", (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))  # (B, heads, N, N)
        trace = _TRACE.get()
        if trace is not None:
            trace.softmax_attention(self, self.heads, n, c // self.heads)
        return self.proj(_q(self, "proj", (attn @ v).transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(_q(self, "gelu", self.act(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.attn(_q(self, "norm1", self.norm1(x)))
        return x + self.mlp(_q(self, "norm2", self.norm2(x)))


class DeiT(nn.Module):
    def __init__(self, spec: DeiTSpec):
        super().__init__()
        self.spec = spec
        tokens = (spec.resolutions[0] // spec.patch) ** 2
        self.patch_embed = PatchEmbed(spec)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, spec.dim))
        self.blocks = nn.ModuleList(Block(spec.dim, spec.heads, spec.mlp_ratio) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(spec.dim, eps=LN_EPS)
        self.head = nn.Linear(spec.dim, spec.n_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for i, block in enumerate(self.blocks):  # the names of the quantization sites
            for m in (block, block.attn, block.mlp):
                m._site_prefix = f"blocks.{i}."

    def forward(self, x):
        x = self.patch_embed(_q(self, "input", x))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(_q(self, "norm", self.norm(x)[:, 0]))


@torch.no_grad()
def add_ln_outliers(model, channels=4, factor=32.0, seed=0):
    """Make outlier channels in every LayerNorm output without changing the function: for
    ``channels`` channels (drawn with ``seed``), the LayerNorm's weight and bias times ``factor``
    and the next Linear's input columns divided by it (norm1 -> attn.qkv, norm2 -> mlp.fc1,
    norm -> head). The channel-wise variance TSPTQ-ViT's O-2SF targets (in place; returns the
    channels)."""
    g = torch.Generator().manual_seed(seed)
    picked = torch.randperm(model.spec.dim, generator=g)[:channels]
    pairs = [(b.norm1, b.attn.qkv) for b in model.blocks] + [(b.norm2, b.mlp.fc1) for b in model.blocks]
    for norm, linear in pairs + [(model.norm, model.head)]:
        norm.weight[picked] *= factor
        norm.bias[picked] *= factor
        linear.weight[:, picked] /= factor
    return picked.tolist()
