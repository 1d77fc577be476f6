"""``python -m sim.engine_utilization``: cycles and MAC utilization of the MAT engine per
operation type, measured by simulating each real-layer workload alone (Amaranth simulator, no
stalls: valid and ready always high), from the first beat to the last result.

utilization = useful MACs / (lanes x width x cycles), cycles including the pipeline fill of an
isolated tile; "steady state" divides by beats instead (tiles back to back, fill hidden). Useful
MACs exclude the zero padding of partial reduction chunks and partial output-channel tiles.
These numbers calibrate the performance model (a later issue).
"""

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from hw.mat_engine import MatEngine
from sim.bench import run_amaranth
from sim.schedule import reduction_beats
from sim.units import EngineSpec
from sim.workloads import extreme_layers, real_layers


@dataclass(frozen=True)
class _One(EngineSpec):
    """An EngineSpec fed with one given workload."""

    workload: object = None

    def workloads(self, vectors, seed):
        return [self.workload]


def measure(lanes, width, packing=True, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for w in real_layers(rng) + extreme_layers(rng)[:1]:
        params = dict(lanes=lanes, width=width, packing=packing, requantize=True)
        result = run_amaranth(_One("mat_engine", MatEngine, w), params, 0, seed, p_valid=1.0, p_ready=1.0)
        beats, _ = reduction_beats(w, lanes, width, True)
        rows.append((w.name, w.a.shape[1], w.macs, len(beats["a"]), result["cycles"],
                     w.macs / (lanes * width * result["cycles"])))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.engine_utilization", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lanes", type=int, default=8, help="S, PE lanes (default 8)")
    p.add_argument("--width", type=int, default=8, help="T, multipliers per lane (default 8)")
    args = p.parse_args(argv)
    print(f"MAT engine {args.lanes}x{args.width}, requantizer attached, no stalls")
    print("| workload | K | useful MACs | beats | cycles | utilization | steady state |")
    print("|---|---|---|---|---|---|---|")
    for name, k, macs, beats, cycles, util in measure(args.lanes, args.width):
        steady = macs / (args.lanes * args.width * beats)  # back-to-back tiles: no fill
        print(f"| {name} | {k} | {macs} | {beats} | {cycles} | {100 * util:.1f}% | "
              f"{100 * steady:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
