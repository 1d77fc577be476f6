"""Engine workloads: tiles of real EfficientViT-B1/B2 layers, extreme operands, random shapes.

Shapes (see ../shared/notes/reference-facts.md): B1 widths 16..256, head 1536/1600, dim 16;
B2 widths 24..384, dim 32; LiteMLA aggregation = grouped 1x1 conv with groups of ``dim``
channels; attention MatMuls ReLU(K)^T [V | 1] (reduction over tokens) and Q (.) (reduction over
dim); 7x7 tokens in the last stage at R224. Tiles keep every reduction (K) at its real length
and cut rows/output channels so Icarus runs stay short.
"""

import numpy as np

from sim.schedule import conv_reduction, depthwise, matmul_reduction

__all__ = ["reduction_workloads", "rmac_workloads"]


def _i8(rng, *shape, lo=-128, hi=127):
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64)


def _bias(rng, n, mag=2**20):
    return rng.integers(-mag, mag, size=n, dtype=np.int64)


def real_layers(rng):
    out = []
    # Stem: 3x3 stride-2 conv 3 -> 16 (B1), on an 8x8 input tile with padding 1 -> 4x4 outputs.
    out.append(conv_reduction("stem 3x3 s2 3->16", _i8(rng, 3, 8, 8), _i8(rng, 16, 3, 3, 3),
                              _bias(rng, 16), 2, 1, rng))
    # Pointwise convs at real input widths (all output channels or a slice of them).
    for name, cin, cout, pixels in (("PW 16->64", 16, 64, 4), ("PW 256->1024 (16 of 1024)", 256, 16, 2),
                                    ("PW 1536->1600 head linear (16 of 1600)", 1536, 16, 1)):
        out.append(matmul_reduction(name, _i8(rng, pixels, cin), _i8(rng, cin, cout),
                                    _bias(rng, cout), rng))
    # LiteMLA aggregation, B1 stage 3: 3C = 384 channels in 24 groups of 16, 1x1, per group.
    x = _i8(rng, 2, 384)
    w = _i8(rng, 384, 16)  # group g: channels 16g..16g+15 -> outputs 16g..16g+15
    for g in (0, 11, 23):
        out.append(matmul_reduction(f"grouped PW group {g} of 24 (16->16)", x[:, 16 * g:16 * g + 16],
                                    w[16 * g:16 * g + 16], _bias(rng, 16), rng))
    # Attention MatMuls, 7x7 = 49 tokens: ReLU(K)^T [V | 1] then Q-side, dim 16 (B1) and 32 (B2).
    for dim in (16, 32):
        k_relu = _i8(rng, 49, dim, lo=0)
        v_one = np.concatenate([_i8(rng, 49, dim), np.ones((49, 1), dtype=np.int64)], axis=1)
        out.append(matmul_reduction(f"ReLU(K)^T [V;1], dim {dim}, 49 tokens", k_relu.T, v_one,
                                    np.zeros(dim + 1, dtype=np.int64), rng))
        q_relu = _i8(rng, 49, dim, lo=0)
        out.append(matmul_reduction(f"ReLU(Q) (K^T[V;1]) requantized, dim {dim}", q_relu,
                                    _i8(rng, dim, dim + 1), np.zeros(dim + 1, dtype=np.int64), rng))
    return out


def extreme_layers(rng):
    """Operands that hit the accumulator bound: K = 2560 (B2's classifier, the longest reduction)."""
    k = 2560
    lim = 2**31 - 1 - k * 2**14  # the largest bias that keeps the worst case inside int32
    cases = [("all -128 x -128, K=2560, bias +max", -128, -128, lim),
             ("all 127 x -128, K=2560, bias -max", 127, -128, -lim - 1),
             ("all 127 x 127, K=2560", 127, 127, 0)]
    out = [matmul_reduction(name, np.full((1, k), a), np.full((k, 2), w), np.full(2, b), rng)
           for name, a, w, b in cases]
    mixed_a = np.resize([-128, 127], (2, k))
    out.append(matmul_reduction("mixed -128/127, K=2560", mixed_a, np.resize([-128, 127, 127], (k, 3)),
                                np.array([2**30, -(2**30), 0]), rng))
    return out


def random_layers(rng, count):
    out = []
    for j in range(count):
        p, k, o = rng.integers(1, 5), rng.integers(1, 70), rng.integers(1, 20)
        out.append(matmul_reduction(f"random {j}: {p}x{k} @ {k}x{o}", _i8(rng, p, k), _i8(rng, k, o),
                                    _bias(rng, o), rng))
    return out


def reduction_workloads(seed, random_count, real=True):
    """Extreme and (optionally) real-layer workloads, then ``random_count`` random ones."""
    rng = np.random.default_rng(seed)
    fixed = extreme_layers(rng) + (real_layers(rng) if real else [])
    return fixed + random_layers(rng, random_count)


def depthwise_layers(rng):
    """Depthwise tiles of real B1/B2 layers: (channels, kernel, stride, input tile)."""
    specs = [("DW 3x3 s1, 24 ch (B2 stem DSConv), 8x12 tile", 24, 3, 1, (8, 12)),
             ("DW 3x3 s2, 64 ch (B1 stage-1 MBConv), 9x9 tile", 64, 3, 2, (9, 9)),
             ("DW 3x3 s1, 20 ch of 512 (B1 stage-3 MBConv), 6x6", 20, 3, 1, (6, 6)),
             ("DW 5x5 s1, 20 ch of 384 (B1 aggregation), 7x7", 20, 5, 1, (7, 7)),
             ("DW 5x5 s1, 12 ch, 7x7, all -128 x -128, bias +max", 12, 5, 1, (7, 7))]
    out = []
    for name, c, k, s, (h, w) in specs:
        if "all -128" in name:
            x, wt, b = np.full((c, h, w), -128), np.full((c, k, k), -128), np.full(c, 2**31 - 1 - 25 * 2**14)
        else:
            x, wt, b = _i8(rng, c, h, w), _i8(rng, c, k, k), _bias(rng, c)
        out.append(depthwise(name, x, wt, b, s, k // 2, rng))
    return out


def random_depthwise(rng, count):
    out = []
    for j in range(count):
        c, k, s = int(rng.integers(1, 11)), int(rng.choice([3, 5])), int(rng.choice([1, 2]))
        h, w = int(rng.integers(1, 9)), int(rng.integers(1, 12))
        out.append(depthwise(f"random DW {j}: {c} ch {k}x{k} s{s} {h}x{w}", _i8(rng, c, h, w),
                             _i8(rng, c, k, k), _bias(rng, c), s, k // 2, rng))
    return out


def rmac_workloads(seed, random_count):
    """R-MAC engine: depthwise tiles (self-accumulation) interleaved with reductions
    (down-forward), so the mode switches between accumulations."""
    rng = np.random.default_rng(seed)
    dws = depthwise_layers(rng) + random_depthwise(rng, random_count)
    reds = extreme_layers(rng)[:2] + real_layers(rng)[:3] + random_layers(rng, random_count)
    out = []
    for j in range(max(len(dws), len(reds))):
        out += dws[j:j + 1] + reds[j:j + 1]
    return out
