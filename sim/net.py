"""Run a quantized network whole on the generated accelerator RTL and check every layer.

    python -m sim.net --quantized q.pt --data digits --images 2 --config tiny --sim verilator

Compiles the network (``gen.compile``), generates the accelerator (``hw.accelerator``), and runs
the images through it under cocotb: the host runtime (``runtime``) writes the DRAM image and the
input, starts each segment and performs the host steps; cocotbext-axi's AxiRam is the DRAM and
its AxiLiteMaster the host's register port. After each image every layer's output region in
DRAM is compared with the integer model's tensor. Per layer: RTL cycles (from the trace
buffer), the model's (``sim.program_model``), bit-exact or the first mismatch; then the totals.
Exit status 1 on any mismatch, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent


class NetError(Exception):
    """Bad input: one line, exit status 2."""


def golden(frozen, image):
    """({layer output name: what the accelerator leaves in DRAM (int8 tensor, or a linear's int32
    accumulators)}, logits) of one image, from the integer model."""
    from quant.integer import IntegerModel

    out = {}

    def trace(r, ins, y, extra):
        out[r["dst"]] = np.asarray(extra["acc"] if r["kind"] == "linear" else y, np.int64)

    logits = IntegerModel(frozen).run(np.asarray(image, np.float64), trace)
    return out, logits


def build_and_run(cfg, job, sim, build_dir, out_file):
    from cocotb_tools.runner import get_runner

    from gen.emit import for_simulation
    from hw.accelerator import CORE_MODULE, accelerator_verilog
    from sim.replay import _simulator

    build_dir.mkdir(parents=True, exist_ok=True)
    top = build_dir / "trio_accelerator.v"
    stamp = [f"accelerator {cfg.name} hash {cfg.hash} (sim.net)"]
    modules = accelerator_verilog(cfg, "trio_accelerator", stamp)
    extra = _simulator(sim, opt_fast="-O2")  # a whole network: millions of cycles
    if sim == "verilator":  # the core's C++ built once, not once per instance (--hierarchical)
        core = modules[CORE_MODULE]
        body = core.index(");\n", core.index(f"module {CORE_MODULE}(")) + 3
        modules[CORE_MODULE] = core[:body] + "  /*verilator hier_block*/\n" + core[body:]
        # only the top's ports are read (cocotb's runner makes every signal public otherwise)
        extra["build_args"] = extra["build_args"] + ["--hierarchical", "--no-public-flat-rw",
                                                     "--public-depth", "1"]
    top.write_text(for_simulation("".join(modules.values())))
    (build_dir / "job.pkl").write_bytes(pickle.dumps(job))
    runner = get_runner(sim)
    runner.build(sources=[top], hdl_toplevel="trio_accelerator", build_dir=build_dir,
                 timescale=("1ns", "1ps"),
                 always=True, log_file=build_dir / "build.log", **extra)
    env = {"TRIO_NET_JOB": str(build_dir / "job.pkl"), "TRIO_NET_OUT": str(out_file),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    try:
        runner.test(hdl_toplevel="trio_accelerator", test_module="sim.tb.net", build_dir=build_dir,
                    extra_env=env,
                    results_xml=str(build_dir / "results.xml"), log_file=build_dir / "sim.log")
    except SystemExit:
        pass  # a failing testbench: its lines (or their absence) say what happened


def _run(a):
    from gen.cli import load_config
    from gen.compile import CompileError, compile_network, load_frozen
    from hw.config import ConfigError
    from quant.data import DataError, load_images
    from quant.model import get_spec
    from sim.program_model import program_cycles
    from sim.replay import _verdict

    try:
        cfg = load_config(a.config)
        frozen, shape, meta = load_frozen(a.quantized)
    except (ConfigError, CompileError) as e:
        raise NetError(str(e)) from None
    spec = get_spec(meta["model"])
    try:
        images, _ = load_images(a.data, spec, meta["resolution"], limit=a.images, seed=a.seed)
    except (DataError, OSError) as e:
        raise NetError(f"--data {a.data}: {e}") from None
    images = [im.numpy().astype(np.float64) for im in images[:a.images]]
    t0 = time.time()
    try:
        prog = compile_network(frozen, shape, cfg, model=meta["model"])
    except CompileError as e:
        raise NetError(str(e)) from None
    build = Path(a.build).resolve()
    prog.write(build / "program")
    lay = prog.layout
    print(f"{meta['model']} R{meta['resolution']} on {cfg.name} [{cfg.hash}], {a.sim}: "
          f"{len(prog.instructions)} instructions, {len(lay['ops'])} layers, {len(images)} image(s); "
          f"compiled in {time.time() - t0:.1f} s", flush=True)
    gold = [golden(frozen, im) for im in images]
    model = program_cycles(prog, cfg)
    job = dict(program=str(build / "program"), images=images, golden=gold, dram_size=1 << 26,
               back_pressure=a.back_pressure, seed=a.seed)
    out_file = build / "net.jsonl"
    out_file.write_text("")
    err = []

    def target():
        try:
            build_and_run(cfg, job, a.sim, build / "rtl", out_file)
        except Exception as ex:  # noqa: BLE001 (reported below, one line)
            err.append(ex)

    t = threading.Thread(target=target)
    t1 = time.time()
    t.start()
    seen, rows, bad, ends = 0, [], 0, []
    last_progress = [time.time()]
    header = f"{'layer':46} {'kind':7} {'RTL':>9} {'model':>9} {'diff':>7}  verdict"
    while True:
        alive = t.is_alive()
        lines = out_file.read_text().splitlines()
        for line in lines[seen:]:
            r = json.loads(line)
            if "progress" in r:
                if time.time() - last_progress[0] > 10:
                    print(f"  image {r['image']}: {r['progress']} of {r['of']} instructions retired in this "
                          f"segment ({time.time() - t1:.0f} s)", flush=True)
                    last_progress[0] = time.time()
            elif "error" in r:
                print(f"image {r['image']}: {r['error']}", flush=True)
                bad += 1
            elif "logits" in r:
                ends.append(r)
                top = int(np.argmax(r["logits"]))
                same = "equal to" if r["logits_exact"] else "DIFFER from"
                print(f"image {r['image']}: logits {same} the integer "
                      f"model's (top-1 class {top}); {sum(r['segment_cycles']):,} cycles", flush=True)
                bad += not r["logits_exact"]
            else:
                if r["op"] == lay["ops"][0]["name"]:
                    print(f"image {r['image']}:\n{header}", flush=True)
                m = model["ops"][r["op"]]
                diff = (r["cycles"] - m) / m * 100 if m else 0.0
                verdict = _verdict(r)
                bad += r["status"] != "bit-exact"
                rows.append((r, m))
                print(f"{r['op'][:46]:46} {r['kind']:7} {r['cycles']:9,} {m:9,} {diff:+6.1f}%  {verdict}",
                      flush=True)
        seen = len(lines)
        if not alive:
            break
        time.sleep(0.5)
    t.join()
    wall = time.time() - t1
    if err or not ends:
        why = (f"{type(err[0]).__name__}: {err[0]}" if err else
               f"the simulation stopped early (see {build}/rtl/sim.log)")
        print(f"error: {why}", file=sys.stderr)
        return 1
    rtl = sum(ends[-1]["segment_cycles"])
    total = model["total"]
    fps = cfg.freq_mhz * 1e6 / rtl
    print(f"simulated in {wall:.1f} s")
    print(f"cycles per image: RTL {rtl:,}, model {total:,}; {fps:,.1f} FPS at {cfg.freq_mhz:g} MHz")
    busy = {k: sum(c[k] for c in ends[-1]["counters"]) for k in ends[-1]["counters"][0]}
    shares = [f"{k.replace('_busy', '')} {v / busy['cycles'] * 100:.1f} %"
              for k, v in busy.items() if k != "cycles"]
    print("busy (last image, counters): " + ", ".join(shares))
    print(f"RTL vs model: {(rtl - total) / total * 100:+.1f} %")
    layers = len(lay["ops"]) * len(ends)
    exact = sum(1 for r, _ in rows if r["status"] == "bit-exact")
    if a.table:
        _table(Path(a.table), rows, meta, cfg, rtl, total, a)
    same = sum(e["logits_exact"] for e in ends)
    print(f"{exact} of {layers} layer outputs bit-exact; logits exact on {same} "
          f"of {len(images)} image(s)")
    return 1 if bad else 0


def _table(path, rows, meta, cfg, rtl, total, a):
    lines = [f"`python -m sim.net --quantized ... --config {a.config} --sim {a.sim}"
             f"{f' --back-pressure {a.back_pressure}' if a.back_pressure else ''}`: "
             f"{meta['model']} R{meta['resolution']} on {cfg.name}, image 0", "",
             "| layer | kind | RTL cycles | model | diff | result |", "|---|---|---:|---:|---:|---|"]
    for r, m in rows:
        if r["image"] != 0:
            continue
        diff = (r["cycles"] - m) / m * 100 if m else 0.0
        verdict = "bit-exact" if r["status"] == "bit-exact" else "MISMATCH"
        lines.append(f"| `{r['op']}` | {r['kind']} | {r['cycles']:,} | {m:,} | {diff:+.1f} % | {verdict} |")
    diff = (rtl - total) / total * 100
    lines.append(f"| **total** | | **{rtl:,}** | **{total:,}** | **{diff:+.1f} %** | |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.net", description=__doc__.split("\n")[0])
    p.add_argument("--quantized", required=True, help="what python -m quant calibrate wrote")
    p.add_argument("--data", default="digits", help="digits or an ImageNet-style folder (default digits)")
    p.add_argument("--images", type=int, default=1, help="images to run (default 1)")
    p.add_argument("--config", default="tiny", help="preset, NxM+TxSxL or config.json (default tiny)")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    p.add_argument("--back-pressure", type=float, default=0.0,
                   help="chance per cycle that a DRAM channel pauses "
                        "(default 0: cycles comparable to the model)")
    p.add_argument("--seed", type=int, default=0, help="image choice and back-pressure pattern")
    p.add_argument("--build", default="build/net", help="build folder (default build/net)")
    p.add_argument("--table", help="also write the first image's per-layer table (Markdown) to this file")
    a = p.parse_args(argv)
    if a.images < 1:
        p.error(f"--images must be at least 1, not {a.images}")
    if not 0 <= a.back_pressure < 1:
        p.error(f"--back-pressure must be in [0, 1), not {a.back_pressure}")
    try:
        return _run(a)
    except NetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
