"""``python -m sim`` (``make sim``): every cocotb testbench of sim.units.TEST_CONFIGS on Icarus, then
the DMA engine against cocotbext-axi's AxiRam and the register slave against its AxiLiteMaster."""

import argparse
import sys
import time

from sim.dma_top import DMA_TEST_PARAMS, run_dma_cocotb
from sim.runner import DEFAULT_SEED, DEFAULT_VECTORS, run_cocotb, run_registers_cocotb
from sim.units import TEST_CONFIGS, UNITS

# Testbenches of the AXI side: name -> [(params shown, run(seed) -> (tests, failed, build_dir))].
AXI_BENCHES = {
    "dma": [(params, lambda seed, p=params: run_dma_cocotb(p, seed=seed, transfers=40))
            for params in DMA_TEST_PARAMS],
    "control_registers": [({"trace_depth": 64}, lambda seed: run_registers_cocotb(seed=seed))],
}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    p.add_argument("--vectors", type=int, default=DEFAULT_VECTORS,
                   help=f"random vectors per run, after the corner cases (default {DEFAULT_VECTORS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="stimulus seed")
    p.add_argument("--unit", choices=sorted(UNITS) + sorted(AXI_BENCHES), action="append",
                   help="only this unit (repeatable)")
    args = p.parse_args(argv)
    if args.vectors < 0:
        p.error(f"--vectors must be non-negative, not {args.vectors}")
    rows = []
    for unit, params in TEST_CONFIGS:
        if args.unit and unit not in args.unit:
            continue
        start = time.time()
        tests, failed, build_dir = run_cocotb(unit, params, args.vectors, args.seed)
        what = UNITS[unit].describe(params, args.vectors)
        rows.append((unit, params, tests, failed, time.time() - start, what, build_dir))
    for name, runs in AXI_BENCHES.items():
        if args.unit and name not in args.unit:
            continue
        for params, run in runs:
            start = time.time()
            tests, failed, build_dir = run(args.seed)
            secs = time.time() - start
            rows.append((name, params, tests, failed, secs, "against cocotbext-axi", build_dir))
    print("\ntrio-vit cocotb summary (Icarus), seed", args.seed)
    for unit, params, tests, failed, secs, what, build_dir in rows:
        status = "PASS" if tests and not failed else "FAIL"
        print(f"  {status}  {unit:15s} {what:40s} {secs:6.1f}s  {params}")
        print(f"        build and waveforms: {build_dir}")
    bad = sum(1 for r in rows if not r[2] or r[3])
    print(f"  {len(rows) - bad} of {len(rows)} runs passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
