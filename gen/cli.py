"""``python -m gen``: emit the accelerator's Verilog for a configuration, with a manifest.

Until the full L-core accelerator exists (a later issue), this emits the Verilog of one
computing core's auxiliary units (log2 quantizer, requantizer, adder tree, shifter array), one
file each, plus ``config.json`` and ``manifest.json``; it says so in its output. Every artifact is
stamped with the configuration hash. Nothing is written unless all arguments are valid.
"""

import argparse
import json
import sys
from pathlib import Path

from gen.emit import module_name, unit_verilog
from hw.config import AcceleratorConfig, ConfigError

__all__ = ["main"]

PROG = "python -m gen"
DEVICE = {"board": "ZCU102", "part": "xczu9eg-ffvb1156-2-e", "dsp48e2": 2520, "bram36": 912}
STATUS = ("units only: one computing core's auxiliary units, MAT engine and R-MAC engine; the "
          "L-core accelerator top, buffers and the Vivado project come with later issues")


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
    return check_fits(cfg)


def check_fits(cfg):
    """``cfg`` if its multipliers fit the board's DSP48E2s and its buffers its BRAM36, else a
    one-line ConfigError."""
    if cfg.dsps > DEVICE["dsp48e2"]:
        raise ConfigError(f"{cfg.name} needs {cfg.dsps} DSP48E2 for {cfg.multipliers} multipliers; "
                          f"the {DEVICE['board']} ({DEVICE['part']}) has {DEVICE['dsp48e2']}")
    if cfg.bram36 > DEVICE["bram36"]:
        raise ConfigError(f"{cfg.name} needs {cfg.bram36} BRAM36 for its buffers "
                          f"({', '.join(f'{b.name} {b.bram36}' for b in cfg.buffers())}); the "
                          f"{DEVICE['board']} ({DEVICE['part']}) has {DEVICE['bram36']}")
    return cfg


def generate(cfg, out, log=print):
    """Emit the units for ``cfg`` into ``out``; return the manifest (a dict)."""
    from sim.units import UNITS

    stamp = [f"trio-vit generator, configuration {cfg.name} hash {cfg.hash}",
             "do not edit: regenerate with python -m gen"]
    modules, texts = [], {}
    for unit, params in cfg.unit_params().items():
        dut = UNITS[unit].build(params)
        name = module_name(unit)
        texts[f"verilog/{name}.v"] = unit_verilog(dut, name, stamp + [f"{unit} {json.dumps(params)}"])
        modules.append({"module": name, "file": f"verilog/{name}.v",
                        "class": f"{type(dut).__module__}.{type(dut).__qualname__}",
                        "parameters": params, "latency_cycles": dut.latency})
    manifest = {"generator": "trio-vit", "status": STATUS, "config_name": cfg.name,
                "config_hash": cfg.hash, "config": cfg.to_dict(), "target": DEVICE,
                "multipliers": cfg.multipliers, "dsp48e2": cfg.dsps,
                "peak_gmacs": cfg.peak_gmacs, "modules": modules}
    out = Path(out)
    (out / "verilog").mkdir(parents=True, exist_ok=True)
    for rel, text in texts.items():
        (out / rel).write_text(text)
        log(f"  wrote {out / rel}")
    (out / "config.json").write_text(cfg.to_json())
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"  wrote {out / 'config.json'}, {out / 'manifest.json'}")
    return manifest


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        cfg = _load_config(args)
    except ConfigError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    print(f"trio-vit: configuration {cfg.name} (hash {cfg.hash}): {cfg.multipliers} int8 "
          f"multipliers on {cfg.dsps} DSP48E2, {cfg.peak_gmacs:g} GMAC/s peak at {cfg.freq_mhz:g} MHz")
    print(f"trio-vit: note: {STATUS}")
    try:
        generate(cfg, args.out)
    except OSError as e:
        sys.stderr.write(f"{PROG}: error: cannot write to {args.out}: {e.strerror}\n")
        return 1
    print(f"trio-vit: done; manifest in {Path(args.out) / 'manifest.json'}")
    return 0
