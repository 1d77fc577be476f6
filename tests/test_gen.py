"""``python -m gen``: what a user runs. Argument errors are one line, exit 2 and write nothing;
a normal run writes Verilog that Icarus compiles, and a manifest stamped with the config hash."""

import json
import re
import subprocess
import sys

import pytest

from gen.cli import block_ram_mappable, block_rams, design_dsps, unmappable_buffers
from hw.config import PRESETS
from hw.core_slice import BufferPorts
from hw.dsp_mac import primitive_declaration


def run_gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    """The whole output for tiny2 (two cores, two AXI ports): the 16-core design takes minutes to
    elaborate, and ``make lint`` (CI) generates and lints it."""
    out = tmp_path_factory.mktemp("gen") / "out"
    proc = run_gen("--config", "tiny2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_emits_the_whole_accelerator_and_its_vivado_project(small_build):
    out, proc = small_build
    cfg = PRESETS["tiny2"]
    assert cfg.name in proc.stdout and "elaborated in" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_hash"] == cfg.hash and manifest["config"] == cfg.to_dict()
    dsps = design_dsps(cfg)  # the engines' packed multipliers and the post-processing products
    assert dsps["mat_engine"] + dsps["rmac_engine"] == cfg.dsps
    assert manifest["dsp48e2"] == sum(dsps.values()) and manifest["multipliers"] == cfg.multipliers
    assert manifest["top"] == "trio_vit"
    modules = [m["module"] for m in manifest["modules"]]
    assert modules == ["trio_vit", "trio_accelerator", "trio_computing_core"]
    listed = set(manifest["files"])
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert listed == on_disk and {"vivado/build.tcl", "vivado/trio_vit.xdc", "report/model.json",
                                  "report/model.csv", "report/resources.json", "README.md"} <= listed
    for m in manifest["modules"]:
        text = (out / m["file"]).read_text()
        assert f"hash {cfg.hash}" in text.splitlines()[0]
        assert re.search(rf"^module {m['module']} ?\(", text, re.M)
    top = (out / "verilog/trio_accelerator.v").read_text()
    assert top.count("trio_computing_core ") == 2  # the cores: instances of one module
    names = {p["name"] for p in manifest["ports"]}
    assert names >= {"clk", "rst", "irq", "s_axil_awaddr", "m_axi1_rdata"} and "m_axi2_rdata" not in names
    assert json.loads((out / "config.json").read_text()) == cfg.to_dict()
    model = json.loads((out / "report/model.json").read_text())
    assert [(r["model"], r["resolution"]) for r in model["rows"]] == [("b1", 224), ("b1", 288), ("b2", 224),
                                                                       ("b2", 256)]
    assert all(r.get("fps", 0) > 0 or r["error"] for r in model["rows"]) and model["config_hash"] == cfg.hash
    res = json.loads((out / "report/resources.json").read_text())
    assert res["dsp48e2"] == sum(dsps.values()) and res["dsp48e2_by_unit"] == dsps
    assert res["bram36"] == cfg.bram36 <= res["part_bram36"]
    # the buffers as the RTL builds them: B per core two true dual port halves (two read/write
    # ports each); the others one write port each (the host's, or the core's for the output and aux)
    ports = res["buffer_ports"]
    assert ports["B"] == {"write_ports": 2, "read_ports": 2, "shared_address": 2, "copies": 4,
                          "width_bits": 16, "depth": 16384, "vivado_block_ram": True,
                          "bram36_as_built": 4 * block_rams(16, 16384, 2, 2, 2)}
    assert {name: (p["write_ports"], p["read_ports"]) for name, p in ports.items()} == {
        "B": (2, 2), "C (weights)": (1, 2), "C (parameters)": (1, 1), "output": (1, 1), "aux": (1, 2)}
    assert ports["C (weights)"]["bram36_as_built"] == 2 * block_rams(32, 3072, 1, 1)  # one per read port
    assert all(p["vivado_block_ram"] for p in ports.values())
    assert not [line for line in proc.stderr.splitlines() if "warning" in line]
    # a buffer Vivado could not map would be named in a warning
    assert unmappable_buffers({"b": BufferPorts(2, 7, 2, 16, 100), "o": BufferPorts(1, 1, 1, 32, 10)}) == [
        "B (2 write, 7 read ports)"]
    assert "vivado -mode batch -source vivado/build.tcl" in (out / "README.md").read_text()


@pytest.mark.parametrize("ports,ok", [((1, 1), True), ((2, 0), True), ((1, 7), True), ((2, 1), False),
                                      ((2, 7), False), ((3, 3), False), ((2, 2, 1), False),
                                      ((2, 1, 1), True)])
def test_block_ram_mapping_rule(ports, ok):
    """Vivado's block RAM inference (UG901): two addresses in all (a read port on a write port's
    address is one), or one write port replicated per read port."""
    assert block_ram_mappable(*ports) == ok


@pytest.mark.parametrize("shape,rams", [
    ((64, 512, 1, 1), 1),  # one RAMB36E2 as 512 x 72 simple dual port
    ((32, 256, 1, 1), 0.5),  # one RAMB18E2 (512 x 36)
    ((64, 16384, 1, 1), 32),  # B of one paper core: 32 x (512 x 72)
    ((512, 128, 1, 2), 2 * 7.5),  # an aux buffer: 15 RAMB18E2 of 36 bits, once per read port
    ((16, 4096, 2, 0), 2),  # two write ports: true dual port, 2K x 18 per RAMB36E2
    ((1, 32768, 1, 1), 1),  # 32K x 1
    ((64, 512, 2, 1), None),  # not block RAM
    ((512, 6144, 1, 2), 171),  # the paper's weight buffer with two read ports: two copies ...
    ((512, 6144, 1, 2, 1), 85.5),  # ... or one true dual port RAM (Yosys maps it to 171 RAMB18E2)
])
def test_block_rams_as_built(shape, rams):
    """Block RAM of one memory as Vivado tiles it (UG573's aspect ratios)."""
    assert block_rams(*shape) == rams


def test_verilog_compiles_with_iverilog(small_build, tmp_path):
    out, _ = small_build
    files = sorted(str(p) for p in (out / "verilog").glob("*.v"))
    (tmp_path / "primitives.v").write_text(primitive_declaration())  # Vivado's library has it
    files.append(str(tmp_path / "primitives.v"))
    proc = subprocess.run(["iverilog", "-g2012", "-Wall", "-o", str(tmp_path / "a.out"), *files],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args,msg", [
    (["--cores", "0"], "argument --cores: expected a positive integer, got 0"),
    (["--cores", "x"], "argument --cores: expected a positive integer, got 'x'"),
    (["--cores", "18"], "8x8+8x8x18 needs 2592 DSP48E2 (1728 for 2304 int8 multipliers, 864 for "
                        "post-processing); the ZCU102"),
    (["--config", "4x4+4x4x32"], "4x4+4x4x32 needs 1024 BRAM36 for its buffers (B 528, C 128, output 16, "
                                 "A 256, aux 64, divisor 32); the ZCU102"),
    (["--config", "32x8+32x8x2"], "the computing core needs S = T = M = N"),
    (["--config", "huge"], "unknown configuration 'huge'"),
    (["--config", "missing.json"], "cannot read configuration file missing.json"),
    (["--freq", "0"], "freq_mhz must be between 1 and 1000, not 0.0"),
])
def test_bad_arguments_one_line_error_nothing_written(args, msg, tmp_path):
    out = tmp_path / "out"
    proc = run_gen(*args, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m gen: error: ") and msg in lines[0]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_config_file_round_trip(small_build, tmp_path):
    out, _ = small_build
    proc = run_gen("--config", str(out / "config.json"), "--cores", "1", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["config_name"] == "2x2+2x2x1"
    assert manifest["config_hash"] == PRESETS["tiny2"].replace(cores=1).hash


def test_bad_config_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"cores": 0}')
    proc = run_gen("--config", str(bad), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "python -m gen: error: cores must be between 1 and 256, not 0"


@pytest.mark.parametrize("flag", ["--units", "--core", "--accelerator"])
def test_resources_refuses_an_unknown_configuration_in_one_line(flag):
    proc = subprocess.run([sys.executable, "-m", "gen.resources", flag, "fast"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "unknown configuration 'fast'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_buffers_past_the_parts_bram_are_one_line(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(PRESETS["paper"].replace(buffer_b_kib=4096).to_json())
    proc = run_gen("--config", str(big), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "BRAM36 for its buffers" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_fast_memory_init_emits_amaranth_s_rtlil():
    """gen.emit replaces Amaranth 0.5's memory-init emission by a faster one: same RTLIL text."""
    from amaranth.back import rtlil
    from amaranth.hdl import Module
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    from gen import emit

    class Mem(wiring.Component):
        addr: In(4)
        data: Out(13)

        def elaborate(self, platform):
            m = Module()
            init = [(k * 2371) % 8192 for k in range(11)]
            m.submodules.mem = mem = memory.Memory(shape=13, depth=11, init=init)
            rd = mem.read_port(domain="comb")
            m.d.comb += [rd.addr.eq(self.addr), self.data.eq(rd.data)]
            return m

    assert rtlil.ModuleEmitter.emit_memory is emit._emit_memory_init
    fast = rtlil.convert(Mem(), name="m")
    try:
        rtlil.ModuleEmitter.emit_memory = emit._AMARANTH_EMIT_MEMORY
        slow = rtlil.convert(Mem(), name="m")
    finally:
        rtlil.ModuleEmitter.emit_memory = emit._emit_memory_init
    assert fast == slow and "$meminit_v2" in fast
