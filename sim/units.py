"""What each auxiliary unit is tested with: stimulus, corner cases and the golden function.

One ``UnitSpec`` per unit; both testbench back-ends (cocotb on Icarus, amaranth.sim) and the
generator read this registry, so a unit is described once. Batches are dicts of int64 arrays
with a leading vector axis (see ``sim.layout``).
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hw.accumulator import Accumulator
from hw.adder_tree import AdderTree
from hw.attention_output import AttentionOutput
from hw.config import AcceleratorConfig
from hw.hardswish import Hardswish
from hw.log2_quantizer import Log2Quantizer
from hw.mat_engine import MatEngine
from hw.post_processor import PostMode, PostProcessor
from hw.requantizer import Requantizer
from hw.residual_adder import ResidualAdder
from hw.rmac_engine import RMacEngine
from hw.shifter_array import ShifterArray
from quant import arith
from sim import schedule, workloads

__all__ = ["UnitSpec", "UNITS", "TEST_CONFIGS"]


def _build(component, params, elaborated):
    """The component; ``elaborated=False`` for one only read for its ports and latency
    (it is then exempt from Amaranth's "created but never used" warning)."""
    dut = component(**params)
    if not elaborated:
        dut._MustUse__silence = True
    return dut


@dataclass(frozen=True)
class UnitSpec:
    name: str
    component: type
    random: Callable  # (rng, n, dut) -> input batch
    corners: Callable  # (dut) -> input batch
    golden: Callable  # (input batch, dut) -> output batch

    def build(self, params, elaborated=True):
        return _build(self.component, params, elaborated)

    def describe(self, params, vectors):
        """What a run feeds the unit, for summaries."""
        corner = self.corners(self.build(params, elaborated=False))
        return f"{len(next(iter(corner.values())))} corner + {vectors} random vectors"

    def stimulus(self, dut, vectors, seed):
        """Corner cases first, then ``vectors`` random ones (reproducible from ``seed``)."""
        corner = self.corners(dut)
        rand = self.random(np.random.default_rng(seed), vectors, dut)
        return {k: np.concatenate([corner[k], rand[k]]) for k in corner}

    def vectors(self, dut, vectors, seed):
        """(input batch, expected output batch), in stream order."""
        inputs = self.stimulus(dut, vectors, seed)
        return inputs, self.golden(inputs, dut)


@dataclass(frozen=True)
class EngineSpec:
    """An engine fed with whole workloads (``sim.workloads``) through a beat schedule.

    ``vectors`` is read as a budget: ``max(1, vectors // 500)`` random workloads follow the
    extreme-operand and real-layer ones (10,000 -> 20), per kind (R-MAC: depthwise and reductions).
    """

    name: str
    component: type
    make: Callable  # (seed, random_count) -> list of workloads
    beats: Callable  # (workload, dut) -> (input batch, expected output batch)

    def build(self, params, elaborated=True):
        return _build(self.component, params, elaborated)

    def workloads(self, vectors, seed):
        return self.make(seed, max(1, vectors // 500))

    def vectors(self, dut, vectors, seed):
        parts = [self.beats(w, dut) for w in self.workloads(vectors, seed)]
        cat = lambda i: {k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]}  # noqa: E731
        return cat(0), cat(1)

    def describe(self, params, vectors):
        fixed = len(self.make(0, 0))  # extreme-operand and real-layer workloads
        return f"{fixed} fixed + {max(1, vectors // 500)} random workloads per kind"


def _rng_signed(rng, shape, bits):
    lo, hi = arith.int_range(bits)
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64)


def _magnitudes(rng, shape, bits, signed=True):
    """Values spread over every bit length (uniform over magnitudes, not over values)."""
    k = rng.integers(0, bits - (1 if signed else 0), size=shape, endpoint=True)
    mag = np.floor(rng.random(shape) * np.exp2(k)).astype(np.int64)
    if not signed:
        return mag
    lo, hi = arith.int_range(bits)
    return np.clip(np.where(rng.random(shape) < 0.5, -mag, mag), lo, hi)


def _lanes(values, lanes):
    """A 1-D corner list spread over ``lanes`` lanes, padded by repetition."""
    values = np.asarray(values, dtype=np.int64)
    pad = (-len(values)) % lanes
    return np.concatenate([values, np.resize(values, pad)]).reshape(-1, lanes)


# -- log2 quantizer -----------------------------------------------------------------------------
def _log2_random(rng, n, dut):
    return {"x": _magnitudes(rng, n, dut.width, signed=False),
            "offset": _rng_signed(rng, n, dut.offset_bits)}


def _log2_corners(dut):
    w = dut.width
    xs = {0, 1, 2, 3, (1 << w) - 1, 0b01100011 & ((1 << w) - 1)}
    for k in range(1, w):
        xs |= {1 << k, (1 << k) + (1 << (k - 1)), (1 << k) + (1 << (k - 1)) - 1}
    lo, hi = arith.int_range(dut.offset_bits)
    offs = sorted(o for o in {lo, hi, 0, -1, 1, dut.lo, dut.hi, -w} if lo <= o <= hi)
    pairs = list(itertools.product(sorted(x for x in xs if x < 1 << w), offs))
    return {"x": np.array([p[0] for p in pairs]), "offset": np.array([p[1] for p in pairs])}


def _log2_golden(b, dut):
    return {"e": arith.log2_quantize(b["x"], b["offset"], dut.lo, dut.hi, dut.width,
                                     dut.offset_bits)}


# -- requantizer --------------------------------------------------------------------------------
def _requant_random(rng, n, dut):
    p, shape = dut.params, (n, dut.lanes)
    acc = np.where(rng.random(shape) < 0.5, _rng_signed(rng, shape, p["acc_bits"]),
                   _magnitudes(rng, shape, p["acc_bits"]))
    mult = rng.integers(0, 1 << p["mult_bits"], size=shape, dtype=np.int64)
    # Shifts that keep results in range are the interesting ones; all shifts still occur.
    useful = p["acc_bits"] + p["mult_bits"] - p["out_bits"] + 2
    c_max = (1 << p["shift_bits"]) - 1
    shift = np.where(rng.random(shape) < 0.8,
                     rng.integers(max(0, useful - 16), min(useful, c_max), size=shape, endpoint=True),
                     rng.integers(0, c_max, size=shape, endpoint=True))
    return {"acc": acc, "mult": mult, "shift": shift}


def _requant_corners(dut):
    p = dut.params
    a_lo, a_hi = arith.int_range(p["acc_bits"])
    accs = [a_lo, a_hi, 0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, a_lo + 1, a_hi - 1]
    mults = [0, 1, 2, 3, (1 << p["mult_bits"]) - 1]
    c_max = (1 << p["shift_bits"]) - 1
    shifts = sorted(c for c in {0, 1, 2, 3, p["acc_bits"] - 1, c_max} if c <= c_max)
    grid = np.array(list(itertools.product(accs, mults, shifts)))
    return {k: _lanes(grid[:, j], dut.lanes) for j, k in enumerate(("acc", "mult", "shift"))}


def _requant_golden(b, dut):
    p = dut.params
    return {"q": arith.requantize(b["acc"], b["mult"], b["shift"], p["out_bits"], p["acc_bits"],
                                  p["mult_bits"], p["shift_bits"])}


# -- adder tree ---------------------------------------------------------------------------------
def _tree_random(rng, n, dut):
    p = dut.params
    lo, hi = arith.int_range(p["width"], p["signed"])
    return {"x": rng.integers(lo, hi, size=(n, p["inputs"]), endpoint=True, dtype=np.int64)}


def _tree_corners(dut):
    p = dut.params
    lo, hi = arith.int_range(p["width"], p["signed"])
    rows = [np.full(p["inputs"], v) for v in (lo, hi, 0, 1)]
    rows += [np.resize([lo, hi], p["inputs"]), np.resize([hi, lo], p["inputs"])]
    rows += [np.eye(p["inputs"], dtype=np.int64)[k] * hi for k in range(p["inputs"])]
    return {"x": np.array(rows, dtype=np.int64)}


def _tree_golden(b, dut):
    p = dut.params
    return {"sum": arith.adder_tree(b["x"], p["width"], p["signed"])}


# -- shifter array ------------------------------------------------------------------------------
def _shift_random(rng, n, dut):
    p, shape = dut.params, (n, dut.lanes)
    x = np.where(rng.random(shape) < 0.5, _rng_signed(rng, shape, p["in_bits"]),
                 _magnitudes(rng, shape, p["in_bits"]))
    return {"x": x, "e": _rng_signed(rng, shape, p["shift_bits"])}


def _shift_corners(dut):
    p = dut.params
    x_lo, x_hi = arith.int_range(p["in_bits"])
    e_lo, e_hi = arith.int_range(p["shift_bits"])
    xs = sorted(x for x in {x_lo, x_hi, 0, 1, -1, 2, -2, 3, -3, 127, -128, 128, -129, 255, -256}
                if x_lo <= x <= x_hi)
    grid = np.array(list(itertools.product(xs, range(e_lo, e_hi + 1))))
    return {"x": _lanes(grid[:, 0], dut.lanes), "e": _lanes(grid[:, 1], dut.lanes)}


def _shift_golden(b, dut):
    p = dut.params
    return {"q": arith.shift_divide(b["x"], b["e"], p["out_bits"], p["in_bits"], p["shift_bits"])}


def _mixed(rng, shape, bits):
    """Half uniform over the values, half spread over the bit lengths (signed)."""
    return np.where(rng.random(shape) < 0.5, _rng_signed(rng, shape, bits), _magnitudes(rng, shape, bits))


def _useful_shifts(rng, shape, useful, c_max):
    """Shifts that keep most results inside the output range, with every shift still drawn."""
    return np.where(rng.random(shape) < 0.8,
                    rng.integers(max(0, useful - 16), min(useful, c_max), size=shape, endpoint=True),
                    rng.integers(0, c_max, size=shape, endpoint=True))


def _cycle(columns, n):
    """``n`` rows built by cycling each corner list independently (a cheap cover of all values)."""
    return {k: np.resize(np.asarray(v, dtype=np.int64), n) for k, v in columns.items()}


# -- integer Hardswish ----------------------------------------------------------------------------
def _hswish_random(rng, n, dut):
    p, shape = dut.params, (n, dut.lanes)
    c_max = (1 << p["shift_bits"]) - 1
    return {"acc": _mixed(rng, shape, p["acc_bits"]),
            "h_mult": rng.integers(0, 1 << p["mult_bits"], size=shape),
            "h_shift": _useful_shifts(rng, shape, p["acc_bits"] + p["mult_bits"] - p["hswish_bits"] + 2,
                                      c_max),
            "offset": _mixed(rng, shape, p["offset_bits"]),
            "mult": rng.integers(0, 1 << p["mult_bits"], size=shape),
            "shift": _useful_shifts(rng, shape, 2 * p["hswish_bits"] + p["mult_bits"] - p["out_bits"] + 2,
                                    c_max),
            "three": rng.integers(1, 1 << (p["hswish_bits"] - 1), size=n)}


def _hswish_corners(dut):
    """h = acc (multiplier 1, shift 0) around every edge of clamp(h + T, 0, 2T) and of h's range,
    for small and largest T; extreme shift offsets and output scales cycle alongside."""
    p = dut.params
    h_lo, h_hi = arith.int_range(p["hswish_bits"])
    a_lo, a_hi = arith.int_range(p["acc_bits"])
    d_lo, d_hi = arith.int_range(p["offset_bits"])
    m_max, c_max = (1 << p["mult_bits"]) - 1, (1 << p["shift_bits"]) - 1
    rows = []
    for t in sorted({1, 3, h_hi // 2, h_hi}):
        for h in (-t - 1, -t, -t + 1, 0, t - 1, t, t + 1, 2 * t, h_lo, h_hi, h_lo - 1, h_hi + 1, a_lo, a_hi):
            rows.append((h, t))
    rows = np.array(rows, dtype=np.int64)
    n = len(rows)
    cols = _cycle({"offset": [0, d_lo, d_hi, -1, 1], "mult": [1, m_max, 1, 1 << (p["mult_bits"] - 1)],
                   "shift": [0, c_max, 1, p["hswish_bits"]]}, n)
    b = {"acc": rows[:, 0], "h_mult": np.ones(n, np.int64), "h_shift": np.zeros(n, np.int64), **cols}
    out = {k: np.repeat(v[:, None], dut.lanes, axis=1) for k, v in b.items()}
    out["three"] = rows[:, 1]
    return out


def _hswish_golden(b, dut):
    p = dut.params
    return {"q": arith.hswish_requantize(b["acc"], b["h_mult"], b["h_shift"], b["three"][:, None],
                                         b["offset"], b["mult"], b["shift"], p["out_bits"], p["acc_bits"],
                                         p["mult_bits"], p["shift_bits"], p["hswish_bits"], p["offset_bits"])}


# -- residual adder -------------------------------------------------------------------------------
def _radd_random(rng, n, dut):
    p, shape = dut.params, (n, dut.lanes)
    return {"a": _rng_signed(rng, shape, p["in_bits"]), "b": _rng_signed(rng, shape, p["in_bits"]),
            "mult_a": rng.integers(0, 1 << p["mult_bits"], size=shape),
            "mult_b": rng.integers(0, 1 << p["mult_bits"], size=shape),
            "shift": _useful_shifts(rng, shape, p["in_bits"] + p["mult_bits"] - p["out_bits"] + 3,
                                    (1 << p["shift_bits"]) - 1)}


def _radd_corners(dut):
    p = dut.params
    lo, hi = arith.int_range(p["in_bits"])
    m_max, c_max = (1 << p["mult_bits"]) - 1, (1 << p["shift_bits"]) - 1
    shifts = sorted({0, 1, p["mult_bits"], c_max})
    grid = np.array(list(itertools.product((lo, hi, 0, 1, -1), (lo, hi, 0, -1), (0, 1, m_max), (1, m_max),
                                           shifts)))
    return {k: _lanes(grid[:, j], dut.lanes) for j, k in enumerate(("a", "b", "mult_a", "mult_b", "shift"))}


def _radd_golden(b, dut):
    p = dut.params
    if not p.get("requantize", True):  # the computing core's: the exact sums and their shift
        return {"sum": arith.residual_sum(b["a"], b["b"], b["mult_a"], b["mult_b"], p["in_bits"],
                                          p["mult_bits"]), "shift": b["shift"]}
    return {"q": arith.add_requantize(b["a"], b["b"], b["mult_a"], b["mult_b"], b["shift"], p["out_bits"],
                                      p["in_bits"], p["mult_bits"], p["shift_bits"])}


# -- accumulator ----------------------------------------------------------------------------------
def _groups(lengths):
    """first/last flags of consecutive groups of the given lengths."""
    first = np.concatenate([np.eye(1, n, 0, dtype=np.int64)[0] for n in lengths])
    last = np.concatenate([np.eye(1, n, n - 1, dtype=np.int64)[0] for n in lengths])
    return first, last


def _acc_random(rng, n, dut):
    p = dut.params
    lengths, total = [], 0
    while total < n:  # n beats in groups of 1..64 (the last group may run past n)
        lengths.append(int(rng.integers(1, 65)))
        total += lengths[-1]
    first, last = _groups(lengths)
    lo, hi = arith.int_range(p["in_bits"], p["signed"])
    return {"x": rng.integers(lo, hi, size=(total, dut.lanes), endpoint=True), "first": first, "last": last}


def _acc_corners(dut):
    """Single beats, and long runs of the extreme inputs up to the contract's bound (1024 tokens)."""
    p = dut.params
    lo, hi = arith.int_range(p["in_bits"], p["signed"])
    runs = [(1, lo), (1, hi), (1, 0), (1024, hi), (1024, lo), (49, hi), (2, 1)]
    runs = [(k, v) for k, v in runs if abs(k * v) < 1 << (p["acc_bits"] - 1)]
    first, last = _groups([k for k, _ in runs])
    x = np.concatenate([np.full(k, v, np.int64) for k, v in runs])
    x = np.repeat(x[:, None], dut.lanes, axis=1)
    x[:, -1] = np.where(x[:, -1] == lo, hi, lo)  # the last lane sees the other extreme
    return {"x": x, "first": first, "last": last}


def _acc_golden(b, dut):
    p = dut.params
    starts = np.flatnonzero(b["first"])
    ends = np.flatnonzero(b["last"]) + 1
    return {"sum": np.stack([arith.accumulate(b["x"][s:e], p["in_bits"], p["signed"], p["acc_bits"], axis=0)
                             for s, e in zip(starts, ends, strict=True)])}


# -- attention output path ------------------------------------------------------------------------
def _attn_random(rng, n, dut):
    p = dut.params
    return {"num": _mixed(rng, (n, dut.lanes), p["acc_bits"]),
            "den": _magnitudes(rng, n, p["acc_bits"], signed=False),
            "mult": rng.integers(0, 1 << p["mult_bits"], size=n),
            "shift": _useful_shifts(rng, n, p["acc_bits"] + p["mult_bits"] - p["dividend_bits"] + 2,
                                    (1 << p["shift_bits"]) - 1),
            "offset": _rng_signed(rng, n, p["offset_bits"])}


def _attn_corners(dut):
    """Dividends at the int16 and int8 edges (multiplier 1, shift 0) against divisors whose codes
    reach both clip limits and every rounding edge of the LOD rule."""
    p = dut.params
    n_lo, n_hi = arith.int_range(p["acc_bits"])
    d_lo, d_hi = arith.int_range(p["dividend_bits"])
    o_lo, o_hi = arith.int_range(p["offset_bits"])
    nums = [n_lo, n_hi, d_lo, d_hi, d_lo - 1, d_hi + 1, 0, 1, -1, 127, -128, 128, -129, 3, -3]
    dens = sorted({0, 1, 2, 3, (1 << p["acc_bits"]) - 1} |
                  {(1 << k) + (1 << (k - 1)) - j for k in (4, 12, 30) for j in (0, 1) if k < p["acc_bits"]})
    offsets = sorted({0, -4, o_lo, o_hi, p["lo"], p["hi"]} & set(range(o_lo, o_hi + 1)))
    rows = list(itertools.product(dens, offsets))
    num = _lanes(np.resize(nums, len(rows) * dut.lanes), dut.lanes)
    return {"num": num, "den": np.array([r[0] for r in rows]), "mult": np.ones(len(rows), np.int64),
            "shift": np.zeros(len(rows), np.int64), "offset": np.array([r[1] for r in rows])}


def _attn_golden(b, dut):
    p = dut.params
    return {"q": arith.attention_output(b["num"], b["den"][:, None], b["mult"][:, None], b["shift"][:, None],
                                        b["offset"][:, None], p["lo"], p["hi"], p["out_bits"],
                                        p["acc_bits"], p["mult_bits"], p["shift_bits"], p["dividend_bits"],
                                        p["offset_bits"])}


UNITS = {
    "log2_quantizer": UnitSpec("log2_quantizer", Log2Quantizer, _log2_random, _log2_corners,
                               _log2_golden),
    "requantizer": UnitSpec("requantizer", Requantizer, _requant_random, _requant_corners,
                            _requant_golden),
    "adder_tree": UnitSpec("adder_tree", AdderTree, _tree_random, _tree_corners, _tree_golden),
    "shifter_array": UnitSpec("shifter_array", ShifterArray, _shift_random, _shift_corners,
                              _shift_golden),
    "hardswish": UnitSpec("hardswish", Hardswish, _hswish_random, _hswish_corners, _hswish_golden),
    "residual_adder": UnitSpec("residual_adder", ResidualAdder, _radd_random, _radd_corners, _radd_golden),
    "accumulator": UnitSpec("accumulator", Accumulator, _acc_random, _acc_corners, _acc_golden),
    "attention_output": UnitSpec("attention_output", AttentionOutput, _attn_random, _attn_corners,
                                 _attn_golden),
    "mat_engine": EngineSpec("mat_engine", MatEngine, workloads.reduction_workloads,
                             lambda w, dut: schedule.reduction_beats(
                                 w, dut.lanes, dut.width, dut.params["requantize"])),
    "rmac_engine": EngineSpec("rmac_engine", RMacEngine, workloads.rmac_workloads,
                              lambda w, dut: schedule.rmac_beats(
                                  w, dut.lanes, dut.rmacs, dut.params["requantize"])),
}


# -- the core's post-processing path: each mode on the vectors of the unit it stands for ---------
_POST_VECTOR = ("acc", "mult", "shift", "mult2", "shift2", "offset")  # per lane; the rest per vector
_POST_FIELDS = {  # mode: (unit, {post-processor field: that unit's field})
    PostMode.REQUANT: ("requantizer", {"acc": "acc", "mult": "mult", "shift": "shift"}),
    PostMode.HSWISH: ("hardswish", {"acc": "acc", "mult": "h_mult", "shift": "h_shift", "mult2": "mult",
                                    "shift2": "shift", "offset": "offset", "three": "three"}),
    PostMode.ATTN: ("attention_output", {"acc": "num", "mult": "mult", "shift": "shift", "den": "den",
                                         "log2_offset": "offset"}),
}


class _AsUnit:
    """A PostProcessor seen as the unit one of its modes stands for (its parameters named as that
    unit's), so the unit's stimulus and golden function apply unchanged."""

    def __init__(self, dut, unit):
        p = dut.params
        self.lanes = p["lanes"]
        self.params = {k: p[k] for k in ("lanes", "acc_bits", "mult_bits", "shift_bits", "out_bits")}
        if unit == "hardswish":
            self.params |= {"hswish_bits": p["hswish_bits"], "offset_bits": p["offset_bits"]}
        if unit == "attention_output":
            self.params |= {"dividend_bits": p["dividend_bits"], "offset_bits": p["log2_offset_bits"],
                            "lo": p["lo"], "hi": p["hi"]}


def _post_spec(mode):
    unit, fields = _POST_FIELDS[mode]
    spec = UNITS[unit]

    def to_post(b, dut):
        n = len(b[next(iter(fields.values()))])
        out = {"mode": np.full(n, int(mode), np.int64)}
        for f in ("acc", "mult", "shift", "mult2", "shift2", "offset", "three", "den", "log2_offset"):
            v = np.asarray(b[fields[f]]) if f in fields else np.zeros(n, np.int64)
            if f in _POST_VECTOR and v.ndim == 1:  # a per-vector value on every lane
                v = np.repeat(v[:, None], dut.lanes, axis=1)
            out[f] = v
        return out

    def from_post(b):
        back = {v: b[k] for k, v in fields.items()}
        if unit == "attention_output":  # per-tensor multiplier and shift: lane 0's
            back["mult"], back["shift"] = b["mult"][:, 0], b["shift"][:, 0]
        return back

    return UnitSpec(f"post_processor_{mode.name.lower()}", PostProcessor,
                    lambda rng, n, dut: to_post(spec.random(rng, n, _AsUnit(dut, unit)), dut),
                    lambda dut: to_post(spec.corners(_AsUnit(dut, unit)), dut),
                    lambda b, dut: spec.golden(from_post(b), _AsUnit(dut, unit)))


for _mode in PostMode:
    UNITS[f"post_processor_{_mode.name.lower()}"] = _post_spec(_mode)

# Configurations every testbench run covers: the paper's unit parameters, plus odd sizes that
# exercise lane counts and widths the paper's configuration does not.
_paper = AcceleratorConfig().unit_params()
# At the paper's widths the requantizer, Hardswish and attention output run as the modes of the
# post-processor (the core's unit, the same stimulus and golden functions); on their own at the
# odd sizes below.
_AS_POST = {unit for unit, _ in _POST_FIELDS.values()}
TEST_CONFIGS = [(name, params) for name, params in _paper.items()
                if name not in _AS_POST | {"post_processor"}] + [
    (f"post_processor_{mode.name.lower()}", _paper["post_processor"]) for mode in PostMode] + [
    ("log2_quantizer", dict(width=13, offset_bits=4, lo=-3, hi=5)),
    ("requantizer", dict(lanes=3, acc_bits=20, mult_bits=9, shift_bits=5, out_bits=8)),
    ("adder_tree", dict(inputs=5, width=8, signed=True)),
    ("shifter_array", dict(lanes=3, in_bits=32, shift_bits=5, out_bits=16)),
    ("hardswish", dict(lanes=3, acc_bits=20, mult_bits=9, shift_bits=5, out_bits=6, hswish_bits=8,
                       offset_bits=12)),
    ("residual_adder", dict(lanes=3, in_bits=6, mult_bits=9, shift_bits=5, out_bits=7)),
    ("residual_adder", {**_paper["residual_adder"], "requantize": False}),  # the computing core's
    ("accumulator", dict(lanes=3, in_bits=8, signed=True, acc_bits=20)),
    ("accumulator", dict(lanes=8, in_bits=11, signed=False, acc_bits=32)),  # unsigned inputs
    ("attention_output", dict(lanes=3, acc_bits=24, mult_bits=9, shift_bits=5, dividend_bits=12,
                              offset_bits=4, lo=-3, hi=5, out_bits=6)),
    ("mat_engine", dict(lanes=3, width=5, packing=True, requantize=False)),
    ("mat_engine", dict(lanes=4, width=8, packing=False, requantize=True)),
    ("rmac_engine", dict(lanes=3, rmacs=5, packing=True, requantize=False)),
    ("rmac_engine", dict(lanes=4, rmacs=2, packing=False, requantize=True)),
]
