"""``python -m sim.engine_utilization`` (``make utilization``): cycles and MAC utilization of the
MAT and R-MAC engines per operation type, measured by simulating each real-layer workload alone
(Amaranth simulator, no stalls: valid and ready always high), from the first beat to the last
result.

utilization = useful MACs / (multipliers x cycles), cycles including the pipeline fill of an
isolated tile; "steady state" divides by beats instead (tiles back to back, fill hidden). Useful
MACs exclude the zero padding of partial reduction chunks, partial output-channel tiles, partial
pixel blocks and channel groups. These numbers calibrate the performance model (a later issue).
"""

import argparse
import dataclasses
import sys

import numpy as np

from sim.bench import run_amaranth
from sim.units import UNITS
from sim.workloads import depthwise_layers, extreme_layers, real_layers


def measure(engine, params, seed=1):
    """Rows (name, useful MACs, beats, cycles) for each real workload of ``engine``."""
    rng = np.random.default_rng(seed)
    loads = real_layers(rng) + extreme_layers(rng)[:1]
    if engine == "rmac_engine":
        loads = depthwise_layers(rng) + loads
    spec = UNITS[engine]
    dut = spec.build(params, elaborated=False)
    rows = []
    for w in loads:
        one = dataclasses.replace(spec, make=lambda seed, count, w=w: [w])
        result = run_amaranth(one, params, 0, seed, p_valid=1.0, p_ready=1.0)
        rows.append((w.name, w.macs, result["beats"], result["cycles"]))
    return rows, dut.multipliers


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.engine_utilization", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=8, help="lanes and lane width, both (default 8)")
    args = p.parse_args(argv)
    engines = [("mat_engine", dict(lanes=args.size, width=args.size, requantize=True)),
               ("rmac_engine", dict(lanes=args.size, rmacs=args.size))]
    for engine, params in engines:
        rows, mults = measure(engine, params)
        print(f"\n{engine} {params}, no stalls")
        print("| workload | useful MACs | beats | cycles | utilization | steady state |")
        print("|---|---|---|---|---|---|")
        for name, macs, beats, cycles in rows:
            print(f"| {name} | {macs} | {beats} | {cycles} | {100 * macs / (mults * cycles):.1f}% | "
                  f"{100 * macs / (mults * beats):.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
