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

__all__ = ["Reduction", "reduction_beats", "conv_reduction", "matmul_reduction", "Depthwise",
           "depthwise_beats", "rmac_beats", "kernel_column_order"]


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


# -- R-MAC engine ---------------------------------------------------------------------------------
@dataclass
class Depthwise:
    """A depthwise conv tile: x (C, H, W) int8, w (C, k, k) int8, bias (C,), stride, zero pad,
    its layer-level golden ``acc`` (C, Ho, Wo) and per-channel requantization (mult, shift)."""

    name: str
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray
    stride: int
    pad: int
    acc: np.ndarray
    mult: np.ndarray
    shift: np.ndarray

    @property
    def macs(self):
        return self.acc.size * self.w.shape[1] * self.w.shape[2]


def depthwise(name, x, w, bias, stride, pad, rng):
    c, k = w.shape[0], w.shape[1]
    acc = arith.conv2d_acc(x, w.reshape(c, 1, k, k), bias, stride, pad, groups=c)
    mult, shift = _requant_params(acc.reshape(c, -1).T, rng)
    return Depthwise(name, np.asarray(x), np.asarray(w), np.asarray(bias), stride, pad, acc,
                     mult, shift)


def _requant_rows(acc, mult, shift, width):
    """Expected requantizer beats: rows of ``acc`` (padded with zeros to ``width`` lanes)."""
    rows = np.zeros((len(acc), width), dtype=np.int64)
    rows[:, :acc.shape[1]] = arith.requantize(acc, mult[:acc.shape[1]], shift[:acc.shape[1]])
    return rows


def kernel_column_order(k, stride):
    """Groups of kernel columns sharing one shift-register load: stride 1 one group 0..k-1;
    stride 2 the even columns, then the odd ones (the paper's "odd first, then even", counting
    from 1)."""
    if stride == 1:
        return [list(range(k))]
    if stride == 2:
        return [list(range(0, k, 2)), list(range(1, k, 2))]
    raise ValueError(f"depthwise stride must be 1 or 2, not {stride}")


def depthwise_beats(dw, lanes, rmacs, bias_lanes, requantize):
    """(beats, expected) of a depthwise conv on the R-MAC engine in self-accumulation mode.

    Order: channel groups of ``rmacs``, output rows, blocks of ``lanes`` consecutive output
    pixels; per block K kernel rows x K columns (``kernel_column_order``). Positions past the
    image or channels past C read zeros; their expected results are the same zero-extended
    convolution, so whole M x N outputs compare exactly. With ``requantize`` each result is M
    requantizer beats (output pixel m, the group's N channels).
    """
    x, w = np.asarray(dw.x, dtype=np.int64), np.asarray(dw.w, dtype=np.int64)
    c, h, wd = x.shape
    k, s, pad = w.shape[1], dw.stride, dw.pad
    ho, wo = (h + 2 * pad - k) // s + 1, (wd + 2 * pad - k) // s + 1
    groups, blocks = -(-c // rmacs), -(-wo // lanes)
    cpad = groups * rmacs
    # Input with its conv padding and enough zeros right/below for whole blocks.
    xp = np.zeros((cpad, h + 2 * pad + k, pad + blocks * lanes * s + k), dtype=np.int64)
    xp[:c, pad:pad + h, pad:pad + wd] = x
    wp = np.zeros((cpad, k, k), dtype=np.int64)
    wp[:c] = w
    bp = np.zeros(max(cpad, bias_lanes), dtype=np.int64)
    bp[:c] = dw.bias
    mp, sp = np.ones_like(bp), np.zeros_like(bp)
    mp[:c], sp[:c] = dw.mult, dw.shift
    # Expected: the zero-extended convolution over every block position.
    ext = arith.conv2d_acc(xp[:, :, :], wp.reshape(cpad, 1, k, k), bp[:cpad], s, 0, groups=cpad)
    assert (ext[:c, :ho, :wo] == dw.acc).all()  # the layer-level golden, unchanged
    keys = ("mode", "load", "x", "y", "bias") + (("mult", "shift") if requantize else ()) + (
        "first", "last")
    beats = {key: [] for key in keys}
    expected = []
    order = kernel_column_order(k, s)
    for g in range(groups):
        ch = slice(g * rmacs, (g + 1) * rmacs)
        bias, mult, shift = (np.zeros(bias_lanes, dtype=np.int64) for _ in range(3))
        bias[:rmacs], mult[:rmacs], shift[:rmacs] = bp[ch], mp[ch], sp[ch]
        for oy in range(ho):
            for b in range(blocks):
                ox0 = b * lanes
                steps = [(ky, kx, j == 0) for ky in range(k) for grp in order
                         for j, kx in enumerate(grp)]
                for idx, (ky, kx, load) in enumerate(steps):
                    row = xp[ch, oy * s + ky]  # (rmacs, cols)
                    xb = np.zeros((lanes, rmacs), dtype=np.int64)
                    if load:
                        xb[:, :] = row[:, (ox0 + np.arange(lanes)) * s + kx].T
                    else:
                        xb[0] = row[:, (ox0 + lanes - 1) * s + kx]
                    values = {"mode": 1, "load": int(load), "x": xb, "y": wp[ch, ky, kx],
                              "bias": bias, "mult": mult, "shift": shift, "first": int(idx == 0),
                              "last": int(idx == len(steps) - 1)}
                    for key in keys:
                        beats[key].append(values[key])
                block = ext[ch, oy, ox0:ox0 + lanes].T  # (lanes, rmacs)
                expected.append(_requant_rows(block, mult, shift, bias_lanes) if requantize
                                else block)
    batch = {key: np.array(v, dtype=np.int64) for key, v in beats.items()}
    if requantize:
        return batch, {"q": np.concatenate(expected)}
    return batch, {"mode": np.ones(len(expected), dtype=np.int64), "acc": np.array(expected)}


def rmac_reduction_beats(red, lanes, rmacs, bias_lanes, requantize):
    """A reduction in the R-MAC engine's down-forward mode: ``y`` carries the inputs and ``x``
    the lanes' weights (``reduction_beats`` with T = N); lane m's result is ``acc[m][N-1]``, or
    with ``requantize`` lane m of one requantizer beat."""
    beats, expected = reduction_beats(red, lanes, rmacs, requantize)
    n = len(beats["a"])

    def widen(v, fill=0):
        out = np.full((len(v), bias_lanes), fill, dtype=np.int64)
        out[:, :lanes] = v
        return out

    batch = {"mode": np.zeros(n, dtype=np.int64), "load": np.zeros(n, dtype=np.int64),
             "x": beats["w"], "y": beats["a"], "bias": widen(beats["bias"]),
             "first": beats["first"], "last": beats["last"]}
    if requantize:
        batch["mult"], batch["shift"] = widen(beats["mult"], 1), widen(beats["shift"])
        return batch, {"q": widen(expected["q"])}
    acc = np.zeros((len(expected["acc"]), lanes, rmacs), dtype=np.int64)
    acc[:, :, rmacs - 1] = expected["acc"]
    return batch, {"mode": np.zeros(len(acc), dtype=np.int64), "acc": acc}


def rmac_beats(workload, lanes, rmacs, requantize):
    """Beats of any workload on the R-MAC engine: depthwise in self-accumulation mode,
    reductions in down-forward mode."""
    bias_lanes = max(lanes, rmacs)
    if isinstance(workload, Depthwise):
        return depthwise_beats(workload, lanes, rmacs, bias_lanes, requantize)
    return rmac_reduction_beats(workload, lanes, rmacs, bias_lanes, requantize)
