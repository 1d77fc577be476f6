"""Packing of ``amaranth.lib.data`` layouts to and from the flat integers a simulator sees.

A batch is a dict of numpy arrays, one per top-level field, with a leading vector axis
(``{"acc": (n, lanes), "x": (n,)}``); ``pack`` turns it into ``n`` Python ints for the flat
payload port, ``unpack`` does the reverse. Both testbench back-ends (cocotb and amaranth.sim)
use these, so field offsets are never written by hand.
"""

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["fields", "pack", "unpack"]


def fields(layout, offset=0, path=()):
    """Leaf fields of ``layout``: a list of (path, offset, width, signed)."""
    if isinstance(layout, (data.StructLayout, data.UnionLayout)):  # a union: every view at its offset
        out = []
        for name, field in layout:
            out += fields(field.shape, offset + field.offset, path + (name,))
        return out
    if isinstance(layout, data.ArrayLayout):
        elem = layout.elem_shape
        size = elem.size if isinstance(elem, data.Layout) else Shape.cast(elem).width
        out = []
        for k in range(layout.length):
            out += fields(elem, offset + k * size, path + (k,))
        return out
    shape = Shape.cast(layout)
    return [(path, offset, shape.width, shape.signed)]


def _column(batch, path):
    col = np.asarray(batch[path[0]], dtype=np.int64)
    return col[(slice(None),) + tuple(path[1:])]


def pack(layout, batch):
    """``batch`` (dict of arrays with a leading vector axis) -> list of flat payload ints."""
    leaves = fields(layout)
    n = len(np.asarray(batch[leaves[0][0][0]]))
    words = [0] * n
    for path, offset, width, _ in leaves:
        mask = (1 << width) - 1
        for v, val in enumerate(_column(batch, path).tolist()):
            words[v] |= (val & mask) << offset
    return words


def unpack(layout, words):
    """List of flat payload ints -> dict of int64 arrays shaped like ``pack``'s input."""
    leaves = fields(layout)
    cols = {}
    for path, offset, width, is_signed in leaves:
        vals = [(w >> offset) & ((1 << width) - 1) for w in words]
        if is_signed:
            vals = [v - (1 << width) if v >> (width - 1) else v for v in vals]
        cols[path] = vals
    out = {}
    for name in dict.fromkeys(p[0] for p in cols):
        sub = {p[1:]: v for p, v in cols.items() if p[0] == name}
        dims = tuple(max(idx[d] for idx in sub) + 1 for d in range(len(next(iter(sub)))))
        arr = np.zeros((len(words),) + dims, dtype=np.int64)
        for idx, vals in sub.items():
            arr[(slice(None),) + idx] = vals
        out[name] = arr
    return out
