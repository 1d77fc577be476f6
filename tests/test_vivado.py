"""The Vivado hand-off without Vivado: ``vivado/build.tcl`` run under ``tclsh`` with stub Vivado
commands that record every call, checked against the generated top (``gen.board_top``): the
part, the PS and its HP/HPM0 properties, every pin and interface the script connects (it exists
on the top with the right direction and width), the clock, the address map, the run steps."""

import re
import shutil
import subprocess

import pytest

from gen.board_top import TOP_MODULE, board_top_verilog
from gen.vivado import REGISTER_BASE, build_tcl, constraints
from hw.config import PRESETS

SEP = "\x1f"
# Stub Vivado: every command not in Tcl is recorded (one line per call, arguments evaluated);
# the few whose results the script uses answer like Vivado.
STUBS = r"""
set ::log [open $::env(TRIO_TCL_LOG) w]
proc record {args} { puts $::log [join $args "\x1f"] }
proc unknown {args} { record {*}$args; return "" }
proc get_board_parts {args} { record get_board_parts {*}$args; return "xilinx.com:zcu102:part0:3.4" }
foreach cmd {get_bd_cells get_bd_pins get_bd_intf_pins get_bd_addr_segs get_bd_addr_spaces get_runs
             get_files} {
    proc $cmd {args} [string map [list CMD $cmd] { record CMD {*}$args; return [lindex $args end] }]
}
proc get_property {name args} {
    record get_property $name {*}$args
    if {$name eq "PROGRESS"} { return "100%" }
    return "/project/runs/[lindex $args end]"
}
proc make_wrapper {args} { record make_wrapper {*}$args; return "/project/trio_wrapper.v" }
rename file _tcl_file
proc file {sub args} {
    if {$sub in {copy mkdir}} { record file $sub {*}$args; return "" }
    return [_tcl_file $sub {*}$args]
}
"""

pytestmark = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh missing: apt-get install tcl")


def top_ports(text):
    """{port: (direction, width, {attribute: value})} of the generated top's Verilog."""
    out, attrs = {}, {}
    for line in text.splitlines():
        if a := re.match(r'\s*\(\* (\w+) = "([^"]*)" \*\)', line):
            attrs[a.group(1)] = a.group(2)
        elif p := re.match(r"\s*(input|output) wire (?:\[(\d+):0\] )?(\w+),?$", line):
            out[p.group(3)] = (p.group(1), int(p.group(2) or 0) + 1, attrs)
            attrs = {}
    return out


def interfaces(ports):
    """{interface: {signal: (port, direction, width)}} from the ports' X_INTERFACE_INFO."""
    out = {}
    for name, (direction, width, attrs) in ports.items():
        info = attrs["X_INTERFACE_INFO"].split()
        if info[0].startswith("xilinx.com:interface:aximm"):
            out.setdefault(info[1], {})[info[2]] = (name, direction, width)
    return out


def run_script(cfg, tmp_path):
    out = tmp_path / "out"
    (out / "vivado").mkdir(parents=True)
    files = [f"verilog/{TOP_MODULE}.v"]
    (out / "vivado" / "build.tcl").write_text(build_tcl(cfg, files, ["test"]))
    (out / "vivado" / "trio_vit.xdc").write_text(constraints(cfg))
    driver = tmp_path / "driver.tcl"
    driver.write_text(STUBS + f'\nsource {{{out / "vivado" / "build.tcl"}}}\nclose $::log\n')
    log = tmp_path / "calls.log"
    proc = subprocess.run(["tclsh", str(driver)], capture_output=True, text=True,
                          env={"TRIO_TCL_LOG": str(log), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return [line.split(SEP) for line in log.read_text().splitlines()], out


@pytest.mark.parametrize("preset", ["paper", "tiny2"])
def test_build_tcl_against_the_generated_top(preset, tmp_path):
    cfg = PRESETS[preset].replace(freq_mhz=187.5) if preset == "tiny2" else PRESETS[preset]
    calls, out = run_script(cfg, tmp_path)
    ports = top_ports(board_top_verilog(cfg, "trio_accelerator"))
    intfs = interfaces(ports)
    names = [c[0] for c in calls]

    # the part and the board
    create = next(c for c in calls if c[0] == "create_project")
    assert create[create.index("-part") + 1] == "xczu9eg-ffvb1156-2-e"
    assert any(c[:3] == ["set_property", "board_part", "xilinx.com:zcu102:part0:3.4"] for c in calls)

    # the PS with the board preset, and its properties
    assert ["create_bd_cell", "-type", "ip", "-vlnv", "xilinx.com:ip:zynq_ultra_ps_e", "ps"] in calls
    auto = next(c for c in calls if c[0] == "apply_bd_automation")
    assert "xilinx.com:bd_rule:zynq_ultra_ps_e" in auto and 'apply_board_preset "1"' in auto
    ps_props = next(c for c in calls if c[:2] == ["set_property", "-dict"] and c[-1] == "ps")
    words = ps_props[2].replace("{", "").replace("}", "").split()
    props = dict(zip(words[::2], words[1::2], strict=True))
    assert props["CONFIG.PSU__USE__M_AXI_GP0"] == "1" and props["CONFIG.PSU__USE__IRQ0"] == "1"
    assert props["CONFIG.PSU__FPGA_PL0_ENABLE"] == "1"
    assert float(props["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"]) == cfg.freq_mhz
    for p in range(4):
        assert props[f"CONFIG.PSU__USE__S_AXI_GP{p + 2}"] == str(int(p < cfg.axi_ports))
        if p < cfg.axi_ports:
            assert props[f"CONFIG.PSU__SAXIGP{p + 2}__DATA_WIDTH"] == str(cfg.axi_bits)

    # the accelerator as a module reference; every pin and interface the script connects on it
    assert ["create_bd_cell", "-type", "module", "-reference", TOP_MODULE, "acc"] in calls
    pins = {c[1] for c in calls if c[0] == "get_bd_pins" and c[1].startswith("acc/")}
    assert pins == {"acc/clk", "acc/rst", "acc/irq"}
    assert ports["clk"][:2] == ("input", 1) and ports["rst"][:2] == ("input", 1)
    assert ports["irq"][:2] == ("output", 1)
    connected = {c[1][4:] for c in calls if c[0] == "get_bd_intf_pins" and c[1].startswith("acc/")}
    assert connected == {"s_axil"} | {f"m_axi{p}" for p in range(cfg.axi_ports)} == set(intfs)
    for name, sigs in intfs.items():
        data = sigs["WDATA"][2]
        first = next(p for p in ports.values() if p[2]["X_INTERFACE_INFO"].split()[1:2] == [name])
        params = dict(kv.split(" ", 1) for kv in first[2]["X_INTERFACE_PARAMETER"].split(", "))
        assert int(params["DATA_WIDTH"]) == data
        if name == "s_axil":
            assert data == 32 and sigs["AWADDR"][1] == "input" and sigs["RDATA"][1] == "output"
            assert params["PROTOCOL"] == "AXI4LITE"
        else:
            assert data == cfg.axi_bits and sigs["AWADDR"][1] == "output" and sigs["RDATA"][1] == "input"
            assert sigs["ARADDR"][2] == 49 and params["PROTOCOL"] == "AXI4"
    # the managers straight on the HP ports, the registers on HPM0 through the SmartConnect
    links = [tuple(x for x in c[1:]) for c in calls if c[0] == "connect_bd_intf_net"]
    for p in range(cfg.axi_ports):
        assert (f"acc/m_axi{p}", f"ps/S_AXI_HP{p}_FPD") in links
    assert ("ps/M_AXI_HPM0_FPD", "ctrl/S00_AXI") in links and ("ctrl/M00_AXI", "acc/s_axil") in links
    nets = [c[1:] for c in calls if c[0] == "connect_bd_net"]
    clock = next(n for n in nets if n[0] == "ps/pl_clk0")
    assert "acc/clk" in clock and "ps/maxihpm0_fpd_aclk" in clock
    assert all(f"ps/saxihp{p}_fpd_aclk" in clock for p in range(cfg.axi_ports))
    assert ["rst_pl/peripheral_reset", "acc/rst"] in nets and ["acc/irq", "ps/pl_ps_irq0"] in nets
    clk_params = ports["clk"][2]["X_INTERFACE_PARAMETER"]
    assert f"FREQ_HZ {round(cfg.freq_mhz * 1e6)}" in clk_params
    assert set(clk_params.split(", ")[0].split()[1].split(":")) == set(intfs)

    # the address map
    reg = next(c for c in calls if c[0] == "assign_bd_address" and "acc/s_axil/reg0" in c)
    assert int(reg[reg.index("-offset") + 1], 16) == REGISTER_BASE and reg[reg.index("-range") + 1] == "4K"
    assert ["assign_bd_address"] in calls  # the DDR segments of every manager

    # the run steps, in order
    steps = [names.index(s) for s in ("validate_bd_design", "make_wrapper", "launch_runs", "wait_on_run")]
    assert steps == sorted(steps)
    runs = [c for c in calls if c[0] == "launch_runs"]
    assert runs[0][1] == "synth_1" and runs[1][1:4] == ["impl_1", "-to_step", "write_bitstream"]
    order = [names.index(s) for s in ("open_run", "report_utilization", "report_timing_summary",
                                      "write_hw_platform")]
    assert order == sorted(order) and order[0] > names.index("launch_runs")
    copies = [c for c in calls if c[:2] == ["file", "copy"]]
    assert {c[-1].rsplit("/", 1)[1] for c in copies} == {"trio_vit.bit", "trio_vit.hwh"}
    assert any(c[0] == "write_hw_platform" and c[-1].endswith("trio_vit.xsa") for c in calls)
