"""Beat schedules: how a layer is fed to an engine in down-forward (reduction) form.

Until the L-core controller exists, this is the controller: it turns a reduction
``out = A @ W + bias`` (a PW/generic/grouped conv after unrolling, or a MatMul) into the beat
stream of a ``MatEngine`` and gives the results in the order the engine emits them. The expected
results come from the layer-level golden functions (``quant.arith.conv2d_acc`` /
``matmul_acc``), never from a beat-level model of the engine.

Order: output-channel tiles of ``lanes``, then rows (pixels/tokens), then ceil(K / width)
reduction chunks (zero-padded), ``first``/``last`` on the first/last chunk.
"""

from dataclasses import dataclass

import numpy as np

from quant import arith

__all__ = ["Reduction", "reduction_beats", "conv_reduction", "matmul_reduction"]


@dataclass
class Reduction:
    """``acc = A @ W + bias`` (checked int32), requantized per output channel by (mult, shift)."""

    name: str
    a: np.ndarray  # (P, K) int8
    w: np.ndarray  # (K, O) int8
    bias: np.ndarray  # (O,) int32
    acc: np.ndarray  # (P, O) int32: the layer-level golden result
    mult: np.ndarray  # (O,)
    shift: np.ndarray  # (O,)

    @property
    def macs(self):
        return self.a.shape[0] * self.a.shape[1] * self.w.shape[1]


def _requant_params(acc, rng):
    """Per-channel dyadic scales mapping each channel's largest |acc| to about 127, with some
    channels scaled 2x too far so saturation occurs."""
    peak = np.maximum(np.abs(acc).max(axis=0), 1).astype(np.float64)
    scale = 127.0 / peak * np.where(rng.random(peak.shape) < 0.25, 2.0, 1.0)
    return arith.dyadic(scale)


def matmul_reduction(name, a, w, bias, rng):
    acc = arith.matmul_acc(a, w, bias)
    mult, shift = _requant_params(acc, rng)
    return Reduction(name, np.asarray(a), np.asarray(w), np.asarray(bias), acc, mult, shift)


def conv_reduction(name, x, w, bias, stride, pad, rng):
    """A (non-grouped) convolution as a reduction over input channels x kernel positions; the
    golden result is ``conv2d_acc`` on the layer."""
    cols, _ = arith.im2col(x, w.shape[2], stride, pad)
    red = matmul_reduction(name, cols, w.reshape(w.shape[0], -1).T, bias, rng)
    conv = arith.conv2d_acc(x, w, bias, stride, pad)
    assert (conv.reshape(conv.shape[0], -1).T == red.acc).all()
    return red


def reduction_beats(red, lanes, width, requantize):
    """(beats, expected): the engine's input batch and its output batch, in emission order."""
    p, k = red.a.shape
    o = red.w.shape[1]
    chunks, tiles = -(-k // width), -(-o // lanes)
    a = np.zeros((p, chunks * width), dtype=np.int64)
    a[:, :k] = red.a
    w = np.zeros((chunks * width, tiles * lanes), dtype=np.int64)
    w[:k, :o] = red.w

    def pad_o(v, fill=0):
        out = np.full(tiles * lanes, fill, dtype=np.int64)
        out[:o] = v
        return out.reshape(tiles, lanes)

    bias, mult, shift = pad_o(red.bias), pad_o(red.mult, 1), pad_o(red.shift)
    acc = np.zeros((p, tiles * lanes), dtype=np.int64)
    acc[:, :o] = red.acc
    # Index arrays over (tile, row, chunk) in emission order.
    t_idx, p_idx, c_idx = (g.ravel() for g in np.meshgrid(np.arange(tiles), np.arange(p),
                                                          np.arange(chunks), indexing="ij"))
    a_blocks = a.reshape(p, chunks, width)  # [row, chunk, t]
    w_blocks = w.reshape(chunks, width, tiles, lanes).transpose(2, 0, 3, 1)  # [tile, chunk, s, t]
    beats = {"a": a_blocks[p_idx, c_idx], "w": w_blocks[t_idx, c_idx], "bias": bias[t_idx]}
    if requantize:
        beats["mult"], beats["shift"] = mult[t_idx], shift[t_idx]
    beats["first"], beats["last"] = (c_idx == 0).astype(np.int64), (c_idx == chunks - 1).astype(
        np.int64)
    # One result per (tile, row), tile-major.
    out_acc = acc.reshape(p, tiles, lanes).transpose(1, 0, 2).reshape(-1, lanes)
    if requantize:
        rows_mult = np.repeat(mult, p, axis=0)
        rows_shift = np.repeat(shift, p, axis=0)
        expected = {"q": arith.requantize(out_acc, rows_mult, rows_shift)}
    else:
        expected = {"acc": out_acc}
    return beats, expected
