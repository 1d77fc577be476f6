"""What each auxiliary unit is tested with: stimulus, corner cases and the golden function.

One ``UnitSpec`` per unit; both testbench back-ends (cocotb on Icarus, amaranth.sim) and the
generator read this registry, so a unit is described once. Batches are dicts of int64 arrays
with a leading vector axis (see ``sim.layout``).
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hw.adder_tree import AdderTree
from hw.config import AcceleratorConfig
from hw.log2_quantizer import Log2Quantizer
from hw.mat_engine import MatEngine
from hw.requantizer import Requantizer
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


UNITS = {
    "log2_quantizer": UnitSpec("log2_quantizer", Log2Quantizer, _log2_random, _log2_corners,
                               _log2_golden),
    "requantizer": UnitSpec("requantizer", Requantizer, _requant_random, _requant_corners,
                            _requant_golden),
    "adder_tree": UnitSpec("adder_tree", AdderTree, _tree_random, _tree_corners, _tree_golden),
    "shifter_array": UnitSpec("shifter_array", ShifterArray, _shift_random, _shift_corners,
                              _shift_golden),
    "mat_engine": EngineSpec("mat_engine", MatEngine, workloads.reduction_workloads,
                             lambda w, dut: schedule.reduction_beats(
                                 w, dut.lanes, dut.width, dut.params["requantize"])),
    "rmac_engine": EngineSpec("rmac_engine", RMacEngine, workloads.rmac_workloads,
                              lambda w, dut: schedule.rmac_beats(
                                  w, dut.lanes, dut.rmacs, dut.params["requantize"])),
}

# Configurations every testbench run covers: the paper's unit parameters, plus odd sizes that
# exercise lane counts and widths the paper's configuration does not.
_paper = AcceleratorConfig().unit_params()
TEST_CONFIGS = [(name, params) for name, params in _paper.items()] + [
    ("log2_quantizer", dict(width=13, offset_bits=4, lo=-3, hi=5)),
    ("requantizer", dict(lanes=3, acc_bits=20, mult_bits=9, shift_bits=5, out_bits=8)),
    ("adder_tree", dict(inputs=5, width=8, signed=True)),
    ("shifter_array", dict(lanes=3, in_bits=32, shift_bits=5, out_bits=16)),
    ("mat_engine", dict(lanes=3, width=5, packing=True, requantize=False)),
    ("mat_engine", dict(lanes=4, width=8, packing=False, requantize=True)),
    ("rmac_engine", dict(lanes=3, rmacs=5, packing=True, requantize=False)),
    ("rmac_engine", dict(lanes=4, rmacs=2, packing=False, requantize=True)),
]
