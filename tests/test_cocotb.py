"""cocotb testbenches on Icarus Verilog, driven by pytest: every unit configuration of
sim.units.TEST_CONFIGS, corner cases plus 10,000 random vectors each, bit-exact against the
golden functions, under random valid gaps and back-pressure."""

import pytest

from sim.runner import DEFAULT_SEED, DEFAULT_VECTORS, run_cocotb
from sim.units import TEST_CONFIGS

pytestmark = pytest.mark.cocotb


@pytest.mark.parametrize("unit,params", TEST_CONFIGS, ids=[f"{u}-{i}" for i, (u, _) in
                                                           enumerate(TEST_CONFIGS)])
def test_unit_on_icarus(unit, params, tmp_path_factory):
    tests, failed, _ = run_cocotb(unit, params, DEFAULT_VECTORS, DEFAULT_SEED,
                                  build_root=tmp_path_factory.mktemp("sim"))
    assert (tests, failed) == (1, 0)
