"""Build a unit's Verilog and run its cocotb testbench on Icarus (used by pytest and ``make sim``).

Each (unit, parameters) pair gets its own build folder under ``build/sim/``, named by the unit
and a hash of its parameters, so parametrized runs never share a compiled model.
"""

import hashlib
import json
import os
from pathlib import Path

from gen.emit import for_simulation, module_name, unit_verilog
from sim.units import UNITS

__all__ = ["run_cocotb", "run_testbench", "run_registers_cocotb", "DEFAULT_VECTORS", "DEFAULT_SEED"]

DEFAULT_VECTORS = 10_000
DEFAULT_SEED = 2026
ROOT = Path(__file__).resolve().parent.parent


def _build_dir(unit, params, build_root):
    key = hashlib.sha256(json.dumps([unit, params], sort_keys=True).encode()).hexdigest()[:10]
    return Path(build_root) / f"{unit}-{key}"


def run_testbench(component, top, test_module, env, build_dir, stamp, sim="icarus", waves=False):
    """Emit ``component`` as Verilog module ``top`` into ``build_dir``, build it for ``sim`` and run
    the cocotb module ``test_module`` with ``env`` added to the environment (the repository on
    PYTHONPATH, cocotbext-axi's deprecation warnings filtered); return (tests, failed). The
    Verilog is ``gen.emit.for_simulation``'s."""
    from cocotb_tools.runner import get_results, get_runner

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{top}.v"
    text = unit_verilog(component, top, stamp)
    source.write_text(for_simulation(text))
    runner = get_runner(sim)
    runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, timescale=("1ns", "1ps"),
                 waves=waves, always=True, log_file=build_dir / "build.log")
    env = {**env, "PYTHONWARNINGS": "ignore::DeprecationWarning",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    try:
        xml = runner.test(hdl_toplevel=top, test_module=test_module, build_dir=build_dir, extra_env=env,
                          waves=waves, results_xml=str(build_dir / "results.xml"),
                          log_file=build_dir / "sim.log")
    except SystemExit:  # cocotb's runner exits when a test fails; the results file says which
        xml = build_dir / "results.xml"
    return get_results(Path(xml))


def run_cocotb(unit, params, vectors=DEFAULT_VECTORS, seed=DEFAULT_SEED, build_root=None,
               waves=None):
    """Run the stream testbench for ``unit`` with ``params``; return (tests, failed, build_dir).

    Waveforms are dumped when ``waves`` is true or the ``WAVES`` environment variable is 1.
    """
    spec = UNITS[unit]
    build_dir = _build_dir(unit, params, build_root or ROOT / "build" / "sim")
    waves = bool(int(os.environ.get("WAVES", "0"))) if waves is None else waves
    env = {"TRIO_UNIT": unit, "TRIO_PARAMS": json.dumps(params), "TRIO_VECTORS": str(vectors),
           "TRIO_SEED": str(seed)}
    tests, failed = run_testbench(spec.build(params), module_name(unit), "sim.tb.stream_unit", env, build_dir,
                                  [f"{unit} {json.dumps(params)} (testbench build)"], waves=waves)
    return tests, failed, build_dir


def run_registers_cocotb(config_hash=0x0123_4567_89AB_CDEF, seed=DEFAULT_SEED, build_root=None):
    """The register slave (``hw.control_registers``) against cocotbext-axi's AxiLiteMaster
    (``sim.tb.control_registers``); return (tests, failed, build_dir)."""
    from hw.control_registers import ControlRegisters

    build_dir = Path(build_root or ROOT / "build" / "sim") / f"control_registers-{config_hash:016x}"
    env = {"TRIO_CONFIG_HASH": str(config_hash), "TRIO_SEED": str(seed)}
    tests, failed = run_testbench(ControlRegisters(config_hash=config_hash, trace_depth=64),
                                  "trio_control_registers", "sim.tb.control_registers", env, build_dir,
                                  ["control registers (testbench)"])
    return tests, failed, build_dir
