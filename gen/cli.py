"""``python -m gen``: emit the whole accelerator of a configuration for a ZCU102 -- its Verilog
(``verilog/``), a Vivado batch project (``vivado/``), the model's figures and the resources from
the configuration (``report/``), a README, ``config.json`` and ``manifest.json``. Every artifact is
stamped with the configuration hash. Nothing is written unless all arguments are valid.
"""

import argparse
import json
import sys
from pathlib import Path

from hw.config import AcceleratorConfig, ConfigError

__all__ = ["main"]

PROG = "python -m gen"
DEVICE = {"board": "ZCU102", "part": "xczu9eg-ffvb1156-2-e", "dsp48e2": 2520, "bram36": 912}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, exit 2
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.exit(2)


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _parser():
    p = _Parser(prog=PROG, description="Generate Trio-ViT accelerator Verilog for a ZCU102.")
    p.add_argument("--cores", type=_positive, help="computing cores L (default: the preset's, 16)")
    p.add_argument("--config", default="paper", metavar="NAME|FILE",
                   help="preset name (paper, tiny), NxM+TxSxL (e.g. 8x8+8x8x16) or a JSON file "
                        "written by a previous run (default: paper)")
    p.add_argument("--freq", type=float, metavar="MHZ", help="target clock (default 200)")
    p.add_argument("--no-dsp-packing", action="store_true",
                   help="one int8 product per DSP48E2 instead of two (WP486 packing)")
    p.add_argument("--out", default="build/gen", metavar="DIR", help="output folder (build/gen)")
    return p


def load_config(text):
    """A preset, the notation NxM+TxSxL, or a config.json file."""
    if text.endswith(".json") or Path(text).is_file():
        try:
            return AcceleratorConfig.from_json(Path(text).read_text())
        except OSError as e:
            raise ConfigError(f"cannot read configuration file {text}: {e.strerror}") from None
    return AcceleratorConfig.parse(text)


def _load_config(args):
    cfg = load_config(args.config)
    changes = {}
    if args.cores is not None:
        changes["cores"] = args.cores
    if args.freq is not None:
        changes["freq_mhz"] = args.freq
    if args.no_dsp_packing:
        changes["dsp_packing"] = False
    cfg = cfg.replace(**changes) if changes else cfg
    check_fits(cfg)
    from hw.core import ComputingCore  # the RTL's own limits (the model describes more shapes)

    ComputingCore(cfg)._MustUse__silence = True
    return cfg


def design_dsps(cfg):
    """DSP48E2 slices of the generated design by what holds them: the cores' engines (the int8
    multipliers), their post-processing paths and residual adders (``ComputingCore.dsps``); the
    rest of the accelerator has none."""
    from hw.core import core_dsps

    return {name: cfg.cores * n for name, n in core_dsps(cfg).items()}


def check_fits(cfg):
    """``cfg`` if the design's DSP48E2 fit the board's and its buffers its BRAM36, else a
    one-line ConfigError."""
    dsps = design_dsps(cfg)
    total = sum(dsps.values())
    if total > DEVICE["dsp48e2"]:
        engines = dsps["mat_engine"] + dsps["rmac_engine"]
        raise ConfigError(f"{cfg.name} needs {total} DSP48E2 ({engines} for {cfg.multipliers} int8 "
                          f"multipliers, {total - engines} for post-processing); the {DEVICE['board']} "
                          f"({DEVICE['part']}) has {DEVICE['dsp48e2']}")
    if cfg.bram36 > DEVICE["bram36"]:
        raise ConfigError(f"{cfg.name} needs {cfg.bram36} BRAM36 for its buffers "
                          f"({', '.join(f'{b.name} {b.bram36}' for b in cfg.buffers())}); the "
                          f"{DEVICE['board']} ({DEVICE['part']}) has {DEVICE['bram36']}")
    return cfg


def _warn(text):
    sys.stderr.write(f"{PROG}: warning: {text}\n")


def generate(cfg, out, log=print, warn=_warn):
    """Emit the accelerator of ``cfg`` and its Vivado hand-off into ``out``; return the manifest.
    ``warn``: takes the one-line warning about buffers Vivado cannot map to block RAM."""
    import time

    from gen.board_top import ADDR_WIDTH, TOP_MODULE, board_top_verilog, ports
    from gen.emit import memory_init
    from gen.vivado import REGISTER_BASE, build_tcl, constraints
    from hw.accelerator import CORE_MODULE, accelerator_verilog
    from hw.dsp_mac import XILINX

    stamp = [f"trio-vit generator, configuration {cfg.name} hash {cfg.hash}",
             "do not edit: regenerate with python -m gen"]
    t0 = time.time()
    log(f"  elaborating the accelerator ({cfg.cores} cores, {cfg.axi_ports} AXI ports) ...")
    inner = "trio_accelerator"
    modules = accelerator_verilog(cfg, inner, stamp, addr_width=ADDR_WIDTH, platform=XILINX)
    log(f"  elaborated in {time.time() - t0:.0f} s")
    texts = {f"verilog/{TOP_MODULE}.v": board_top_verilog(cfg, inner, stamp)}
    texts.update({f"verilog/{name}.v": memory_init(text) for name, text in modules.items()})
    verilog_files = list(texts)
    texts["vivado/build.tcl"] = build_tcl(cfg, verilog_files, stamp)
    texts["vivado/trio_vit.xdc"] = constraints(cfg, stamp)
    report = model_report(cfg, log)
    texts["report/model.json"] = json.dumps(report, indent=2) + "\n"
    texts["report/model.csv"] = _model_csv(report)
    dsps = design_dsps(cfg)
    mem_ports = buffer_ports(cfg)
    estimate = resource_estimate(cfg, dsps, mem_ports)
    texts["report/resources.json"] = json.dumps(estimate, indent=2) + "\n"
    unmappable = unmappable_buffers(mem_ports)
    texts["README.md"] = _readme(cfg, verilog_files, estimate, unmappable)
    manifest = {"generator": "trio-vit", "config_name": cfg.name, "config_hash": cfg.hash,
                "config": cfg.to_dict(), "target": DEVICE, "multipliers": cfg.multipliers,
                "dsp48e2": sum(dsps.values()), "peak_gmacs": cfg.peak_gmacs, "top": TOP_MODULE,
                "modules": [{"module": TOP_MODULE, "file": f"verilog/{TOP_MODULE}.v",
                             "what": "the top Vivado references: flat ports with interface attributes"},
                            {"module": inner, "file": f"verilog/{inner}.v",
                             "what": "hw.accelerator.Accelerator: registers, controller, DMA, buffers, "
                                     "the core array"},
                            {"module": CORE_MODULE, "file": f"verilog/{CORE_MODULE}.v",
                             "what": f"hw.core.ComputingCore, instantiated {cfg.cores} times"}],
                "files": sorted(list(texts) + ["config.json", "manifest.json"]),
                "ports": [{"name": p.name, "direction": p.direction, "width": p.width} for p in ports(cfg)],
                "register_base": f"{REGISTER_BASE:#x}"}
    out = Path(out)
    for stale in sorted((out / "verilog").glob("*.v")):  # an earlier build's modules: not this design's
        if f"verilog/{stale.name}" not in texts and "trio-vit generator" in stale.read_text()[:200]:
            stale.unlink()
            log(f"  removed {stale} (an earlier build's, not part of this design)")
    for rel, text in texts.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
        log(f"  wrote {out / rel}")
    (out / "config.json").write_text(cfg.to_json())
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"  wrote {out / 'config.json'}, {out / 'manifest.json'}")
    built = sum(estimate["buffers_bram36_as_built"].values())
    if built > DEVICE["bram36"]:
        warn(f"the global buffers as built take {built:g} BRAM36, more than the "
             f"{DEVICE['board']}'s {DEVICE['bram36']} (report/resources.json)")
    if unmappable:
        names, has, it_is = _unmappable_words(unmappable)
        warn(f"the buffer{'s' if len(unmappable) > 1 else ''} {names} {has} more ports than Vivado maps to "
             f"block RAM: a Vivado run is not expected to complete until {it_is} banked "
             f"(report/resources.json, README)")
    return manifest


REPORT_POINTS = (("b1", 224), ("b1", 288), ("b2", 224), ("b2", 256))  # the paper's and B1-R224
REPORT_FIELDS = ("cycles", "fps", "latency_ms", "gmacs", "util", "dram_bytes", "memory_bound")


def model_report(cfg, log=print):
    """The architecture model's figures (``sim.perf``, our dataflow, DRAM at its measured
    12.8 GB/s) for EfficientViT-B1/B2 at the paper's resolutions on ``cfg``."""
    from sim import perf

    rows = []
    for model, res in REPORT_POINTS:
        row = {"model": model, "resolution": res}
        try:
            _, tot = perf.evaluate(perf.workload(model, res), cfg, perf.DRAM_GBS)
            row.update({k: round(tot[k], 4) if isinstance(tot[k], float) else tot[k] for k in REPORT_FIELDS})
        except ConfigError as e:
            row["error"] = str(e)
        rows.append(row)
        log(f"  model: EfficientViT-{model.upper()} R{res}: "
            + (f"{row['fps']:.1f} FPS" if "fps" in row else f"does not map ({row['error']})"))
    return {"what": "sim.perf, the architecture's model (docs/architecture.md), our dataflow, batch 1, "
                    f"DRAM {perf.DRAM_GBS} GB/s; the RTL of this version is slower (README: the "
                    "accelerator's results)",
            "config_name": cfg.name, "config_hash": cfg.hash, "freq_mhz": cfg.freq_mhz, "rows": rows}


def _model_csv(report):
    lines = [",".join(("model", "resolution") + REPORT_FIELDS + ("error",))]
    for r in report["rows"]:
        lines.append(",".join([r["model"], str(r["resolution"])] + [str(r.get(k, "")) for k in REPORT_FIELDS]
                              + [f'"{r.get("error", "")}"']))
    return "\n".join(lines) + "\n"


BUFFER_NAMES = {"b": "B", "w": "C (weights)", "q": "C (parameters)", "o": "output", "aux": "aux"}


def buffer_ports(cfg):
    """{memory: hw.core_slice.BufferPorts} of the design's buffers as the RTL builds them
    (``hw.accelerator.Accelerator.buffer_ports``)."""
    from gen.board_top import ADDR_WIDTH
    from hw.accelerator import Accelerator, silenced

    acc = Accelerator(cfg, addr_width=ADDR_WIDTH, core_module="probe")
    silenced(acc)
    return acc.buffer_ports


def block_ram_mappable(writes, reads, shared=0):
    """Whether Vivado infers block RAM for a memory with these ports (UG901, "Memory Inference
    Capabilities"): two addresses in all (simple or true dual port; ``shared`` read ports on a
    write port's address make a read/write port with it), or one write port and any number of
    read ports (the RAM replicated per read port)."""
    return writes + reads - shared <= 2 or writes == 1


# Block RAM aspect ratios (UG573, "Block RAM Summary"): (words, bits) of one RAMB18E2 and one
# RAMB36E2 port in true dual port mode, and the wider simple dual port (one write, one read) mode.
RAMB18_TDP = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18))
RAMB18_SDP = ((512, 36),)
RAMB36_TDP = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36))
RAMB36_SDP = ((512, 72),)


def block_rams(width, depth, writes, reads, shared=0):
    """BRAM36 (RAMB18E2 count as halves) of a ``width``-bit, ``depth``-word memory with these ports
    as Vivado builds it in block RAM (:func:`block_ram_mappable`; None if it does not): one RAM
    with two addresses in all, else one per read port, each tiled from the aspect ratio that
    takes the fewest blocks (the wide simple dual port mode for one write and one read port,
    not for a read/write port)."""
    if not block_ram_mappable(writes, reads, shared):
        return None
    copies = 1 if writes + reads - shared <= 2 else reads
    sdp = writes == 1 and not shared  # each copy: one write and one read port
    shapes = [(1, s) for s in RAMB18_TDP + (RAMB18_SDP if sdp else ())]
    shapes += [(2, s) for s in RAMB36_TDP + (RAMB36_SDP if sdp else ())]
    halves = min(size * -(-depth // words) * -(-width // bits) for size, (words, bits) in shapes)
    return copies * halves / 2


def unmappable_buffers(ports):
    """The buffers of ``ports`` (:func:`buffer_ports`) Vivado would not map to block RAM, as text."""
    return [f"{BUFFER_NAMES[name]} ({p.writes} write, {p.reads} read ports)" for name, p in ports.items()
            if not block_ram_mappable(p.writes, p.reads, p.shared)]


def _unmappable_words(unmappable):
    """(the buffers named, "has"/"have", "it is"/"they are") of :func:`unmappable_buffers`'s list,
    for the generator's warning and its README."""
    many = len(unmappable) > 1
    return ", ".join(unmappable), "have" if many else "has", "they are" if many else "it is"


def resource_estimate(cfg, dsps, ports=None):
    """DSP48E2 (``dsps``: :func:`design_dsps`) and BRAM36 (the buffers' banks) of the design,
    against the part's capacity; ``make resources`` adds yosys's counts of the synthesized design."""
    entries = {name: _buffer_entry(p) for name, p in (ports or {}).items()}
    return {"source": "configuration: the units' DSP48E2 (ComputingCore.dsps: the engines' "
                      "multiply-accumulate slices, post-processing products as synthesis splits "
                      "them) and the buffers' banks",
            "note": "LUT, FF and the cores' other logic are counted by make resources "
                    "(report/resources_yosys.json)",
            "config_name": cfg.name, "config_hash": cfg.hash,
            "dsp48e2": sum(dsps.values()), "dsp48e2_by_unit": dsps, "bram36": cfg.bram36,
            "bram36_by_buffer": {b.name: b.bram36 for b in cfg.buffers()},
            "part": DEVICE["part"], "part_dsp48e2": DEVICE["dsp48e2"], "part_bram36": DEVICE["bram36"],
            "buffer_ports": {BUFFER_NAMES[name]: e for name, e in entries.items()},
            "buffers_bram36_as_built": _as_built(cfg, entries) if ports else None,
            "buffer_ports_note": "bram36 is the buffers' bank model (docs/architecture.md); the RTL "
                                 "builds each buffer as memories with these ports (copies: two halves "
                                 "per core for B, one per core for aux), Vivado maps to block RAM "
                                 "only those with vivado_block_ram, and bram36_as_built is what that "
                                 "takes in all "
                                 "copies (gen.cli.block_rams; null where it does not map)"}


def _as_built(cfg, entries):
    """BRAM36 of the global buffers as this version builds them (``entries``: :func:`_buffer_entry`
    by memory): each mappable memory's block RAM (all copies), and for one that does not map (B)
    its bank model's."""
    banks = {b.name: b.bram36 for b in cfg.buffers()}
    return {BUFFER_NAMES[name]: e["bram36_as_built"] if e["vivado_block_ram"] else banks[BUFFER_NAMES[name]]
            for name, e in entries.items()}


def _buffer_entry(p):
    rams = block_rams(p.width, p.depth, p.writes, p.reads, p.shared)
    return {"write_ports": p.writes, "read_ports": p.reads, "shared_address": p.shared, "copies": p.copies,
            "width_bits": p.width, "depth": p.depth, "vivado_block_ram": rams is not None,
            "bram36_as_built": None if rams is None else rams * p.copies}


def _readme(cfg, verilog_files, estimate, unmappable):
    from gen.board_top import TOP_MODULE
    from gen.vivado import REGISTER_BASE

    files = "\n".join(f"- `{f}`" for f in verilog_files)
    entries = estimate["buffer_ports"]
    mapped = sum(e["bram36_as_built"] or 0 for e in entries.values())
    fits = ", ".join(name for name, e in entries.items() if e["vivado_block_ram"])
    buffers = (f"Of the global buffers in this version's Verilog, {fits} map to block RAM ({mapped:g} BRAM36 "
               "as built)")
    if unmappable:
        names, has, it_is = _unmappable_words(unmappable)
        buffers += (f"; {names} {has} more ports than a block RAM has, which Vivado cannot map to block "
                    f"RAM, so the run below is not expected to complete until {it_is} banked (the "
                    f"repository's README).")
    else:
        buffers += "."
    return f"""# Trio-ViT accelerator {cfg.name} for the ZCU102 (configuration hash {cfg.hash})

Generated by `python -m gen`; regenerate instead of editing.

## Files
{files}

  The whole accelerator: `{TOP_MODULE}` (the top: flat AXI ports with Xilinx interface attributes),
  the accelerator it wraps, and the computing core module, instantiated {cfg.cores} times. The
  cores' engines instantiate `DSP48E2` primitives (Vivado's library provides them; a simulator
  needs a model of the slice, or the repository's behavioural Verilog: `hw/dsp_mac.py`).
- `vivado/build.tcl`: the Vivado project in batch mode (see below).
- `vivado/trio_vit.xdc`: constraints (the clock comes from the PS).
- `report/model.json`, `report/model.csv`: the architecture model's figures for EfficientViT-B1/B2.
- `report/resources.json`: DSP48E2 (by unit) and BRAM36 of this design against the part's (the
  configuration's bank model), and each buffer memory's ports and the block RAM it takes as
  built (`buffer_ports`). LUT and FF come from synthesis only: `make resources` in the
  repository (Yosys) adds `report/resources_yosys.*` (Vivado's own count, placement and timing
  have not been checked). {buffers}
- `config.json`: the configuration (`python -m gen --config config.json` regenerates this folder).
- `manifest.json`: the top module, every file, the top's ports, the register base.

## Build the bitstream

    vivado -mode batch -source vivado/build.tcl

(Vivado with the ZCU102 board files; `TRIO_JOBS` sets the parallel runs.) It creates
`vivado/project` for {DEVICE['part']}, a block design with the Zynq UltraScale+ PS (ZCU102 preset),
`pl_clk0` at {cfg.freq_mhz:g} MHz, the accelerator's {cfg.axi_ports} AXI4 manager(s) of {cfg.axi_bits} bits on
S_AXI_HP0..{cfg.axi_ports - 1}_FPD, its registers on M_AXI_HPM0_FPD at {REGISTER_BASE:#x} (4 KiB), its
interrupt on `pl_ps_irq0`; then synthesis, implementation and the bitstream, and writes
`trio_vit.bit` + `trio_vit.hwh` (a PYNQ overlay), `trio_vit.xsa` and `report/vivado_*.txt`.

## Run it

`python -m runtime run --program DIR --image FILE` on the board (PYNQ, or `/dev/mem` with a
u-dma-buf buffer) runs a program compiled for this configuration (`python -m gen.compile`).
"""


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        cfg = _load_config(args)
    except ConfigError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    print(f"trio-vit: configuration {cfg.name} (hash {cfg.hash}): {cfg.multipliers} int8 "
          f"multipliers on {cfg.dsps} DSP48E2 ({sum(design_dsps(cfg).values())} with the post-processing), "
          f"{cfg.peak_gmacs:g} GMAC/s peak at {cfg.freq_mhz:g} MHz")
    try:
        generate(cfg, args.out)
    except OSError as e:
        sys.stderr.write(f"{PROG}: error: cannot write to {args.out}: {e.strerror}\n")
        return 1
    print(f"trio-vit: done; manifest in {Path(args.out) / 'manifest.json'}")
    return 0
