"""Evaluation data: ImageNet-style folders (Pillow + numpy transforms) and the bundled digits proxy.

Transforms follow the official EfficientViT evaluation: bicubic resize of the short side to
ceil(S / crop), centre crop S, scale to [0, 1], normalise with the model's mean/std.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}


class DataError(Exception):
    """A user-facing problem with a data folder (one line)."""


def preprocess(img, size, crop, mean, std):
    """PIL image -> float32 CHW array."""
    from PIL import Image

    img = img.convert("RGB")
    short = math.ceil(size / crop)
    w, h = img.size
    if w <= h:
        nw, nh = short, max(short, round(h * short / w))
    else:
        nw, nh = max(short, round(w * short / h)), short
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = round((nw - size) / 2), round((nh - size) / 2)
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1).copy()


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>`` with classes in sorted order (the torchvision convention)."""

    def __init__(self, root, size, crop, mean, std):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"image folder {root} not found")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise DataError(f"image folder {root} has no class sub-folders (expected root/<class>/<image>)")
        self.samples = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
                        if f.suffix.lower() in IMAGE_EXTS]
        if not self.samples:
            exts = ", ".join(sorted(IMAGE_EXTS))
            raise DataError(f"image folder {root} has class folders but no images ({exts})")
        self.classes = classes
        self.args = (size, crop, mean, std)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                x = preprocess(img, *self.args)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        return torch.from_numpy(x), label


def digits_split(seed=0, size=64):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes) as 3 x size x size
    tensors in [-1, 1]; a fixed stratified split: 1000 train, 797 test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # 0..16 -> 0..1
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    x = (x.clamp(0, 1) - 0.5) / 0.5
    x = x.expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(d.target, dtype=torch.long)
    g = np.random.default_rng(seed)
    order = g.permutation(len(y))
    train, test = order[:1000], order[1000:]
    return (x[train], y[train]), (x[test], y[test])


def load_images(data, spec, resolution, limit=None, seed=0, split="test"):
    """``data`` is ``digits`` or an image folder; returns (images, labels) tensors, at most ``limit``
    of them, drawn with ``seed`` when limited."""
    if data == "digits":
        if resolution != 64:
            raise DataError("the digits proxy runs at resolution 64")
        (xt, yt), (xv, yv) = digits_split(size=resolution)
        x, y = (xt, yt) if split == "train" else (xv, yv)
    else:
        ds = ImageFolder(data, resolution, spec.crop, spec.mean, spec.std)
        idx = np.arange(len(ds))
        if limit is not None and limit < len(ds):
            idx = np.sort(np.random.default_rng(seed).choice(len(ds), limit, replace=False))
        items = [ds[int(i)] for i in idx]
        return torch.stack([a for a, _ in items]), torch.tensor([b for _, b in items])
    if limit is not None and limit < len(y):
        idx = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(len(y), limit, replace=False)))
        x, y = x[idx], y[idx]
    return x, y
