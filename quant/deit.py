"""DeiT (standard ViT, patch 16, 224x224) for TSPTQ-ViT: Tiny, Small and Base with the timm/DeiT
module paths, so that the released checkpoints load with strict key matching
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.i.norm1``, ``blocks.i.attn.qkv``,
``blocks.i.attn.proj``, ``blocks.i.norm2``, ``blocks.i.mlp.fc1``, ``blocks.i.mlp.fc2``, ``norm``,
``head``). The DeiT releases wrap the state dict as ``{"model": ...}``; ``load_checkpoint`` in
``quant.model`` accepts both. Attention MatMuls are traced for ``quant.model.layer_table`` as the
EfficientViT attention is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DeiTSpec", "DeiT", "DEIT_SPECS"]

LN_EPS = 1e-6


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
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, d)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        trace = _TRACE.get()
        if trace is not None:
            trace.softmax_attention(self, self.heads, n, c // self.heads)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


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

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])
