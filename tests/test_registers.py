"""The register map (hw.registers) and its AXI4-Lite slave (hw.control_registers): on Icarus against
cocotbext-axi's AxiLiteMaster; the documented map equals the definition."""

from pathlib import Path

import pytest

from gen.docs import main
from hw.control_registers import ControlRegisters
from hw.registers import REGISTERS, markdown
from sim.runner import run_registers_cocotb

ROOT = Path(__file__).resolve().parent.parent


def test_register_map_is_consistent():
    offsets = [r.offset for r in REGISTERS]
    assert len(set(offsets)) == len(offsets) and offsets == sorted(offsets)
    assert all(r.access in ("rw", "ro", "w1s", "w1c") for r in REGISTERS)


def test_docs_match_the_definitions():
    """docs/registers.md and docs/isa.md are what python -m gen.docs writes from the definitions."""
    assert markdown() in (ROOT / "docs" / "registers.md").read_text()
    assert main(["--check"]) == 0, "run python -m gen.docs"


def test_parameter_errors():
    with pytest.raises(ValueError, match="config_hash"):
        ControlRegisters(config_hash=-1)
    with pytest.raises(ValueError, match="Trace depth"):
        ControlRegisters(trace_depth=8)


@pytest.mark.cocotb
def test_registers_against_axi_lite_master(tmp_path):
    tests, failed, build = run_registers_cocotb(seed=7, build_root=tmp_path)
    assert (tests, failed) == (1, 0), f"see {build}/sim.log"
