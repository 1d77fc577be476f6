"""Build a unit's Verilog and run its cocotb testbench on Icarus (used by pytest and ``make sim``).

Each (unit, parameters) pair gets its own build folder under ``build/sim/``, named by the unit
and a hash of its parameters, so parametrized runs never share a compiled model.
"""

import hashlib
import json
import os
from pathlib import Path

from gen.emit import module_name, unit_verilog
from sim.units import UNITS

__all__ = ["run_cocotb", "DEFAULT_VECTORS", "DEFAULT_SEED"]

DEFAULT_VECTORS = 10_000
DEFAULT_SEED = 2026
ROOT = Path(__file__).resolve().parent.parent


def _build_dir(unit, params, build_root):
    key = hashlib.sha256(json.dumps([unit, params], sort_keys=True).encode()).hexdigest()[:10]
    return Path(build_root) / f"{unit}-{key}"


def run_cocotb(unit, params, vectors=DEFAULT_VECTORS, seed=DEFAULT_SEED, build_root=None,
               waves=None):
    """Run the stream testbench for ``unit`` with ``params``; return (tests, failed, build_dir).

    Waveforms are dumped when ``waves`` is true or the ``WAVES`` environment variable is 1.
    """
    from cocotb_tools.runner import get_results, get_runner

    spec = UNITS[unit]
    dut = spec.build(params)
    build_dir = _build_dir(unit, params, build_root or ROOT / "build" / "sim")
    build_dir.mkdir(parents=True, exist_ok=True)
    top = module_name(unit)
    source = build_dir / f"{top}.v"
    source.write_text(unit_verilog(dut, top, [f"{unit} {json.dumps(params)} (testbench build)"]))

    waves = bool(int(os.environ.get("WAVES", "0"))) if waves is None else waves
    runner = get_runner("icarus")
    runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir,
                 timescale=("1ns", "1ps"), waves=waves, always=True, log_file=build_dir / "build.log")
    env = {"TRIO_UNIT": unit, "TRIO_PARAMS": json.dumps(params), "TRIO_VECTORS": str(vectors),
           "TRIO_SEED": str(seed), "PYTHONPATH": os.pathsep.join(
               [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    xml = runner.test(hdl_toplevel=top, test_module="sim.tb.stream_unit", build_dir=build_dir,
                      extra_env=env, waves=waves,
                      results_xml=str(build_dir / "results.xml"))
    tests, failed = get_results(xml)
    return tests, failed, build_dir
