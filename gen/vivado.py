"""The Vivado hand-off for a ZCU102: a batch project script (``vivado/build.tcl``) and its
constraints (``vivado/trio_vit.xdc``).

The script creates the project for the part, builds a block design -- the Zynq UltraScale+ PS with
the ZCU102 board preset, the PL clock ``pl_clk0`` at the configuration's frequency, a
``proc_sys_reset``, the accelerator as a module reference (``gen.board_top``), its AXI4 managers
straight on the PS's S_AXI_HP0..3_FPD ports (data width as configured), its AXI4-Lite registers
on M_AXI_HPM0_FPD through a SmartConnect, its interrupt on ``pl_ps_irq0``, the address map --
then runs synthesis, implementation and ``write_bitstream``, exports the hardware (``.xsa``,
and ``.bit`` + ``.hwh`` side by side for PYNQ) and writes the utilization and timing reports.
"""

from gen.board_top import TOP_MODULE, buses

__all__ = ["REGISTER_BASE", "REGISTER_RANGE", "PS_HP", "build_tcl", "constraints"]

REGISTER_BASE = 0xA000_0000  # the registers on M_AXI_HPM0_FPD (its window starts here)
REGISTER_RANGE = "4K"
BD_NAME = "trio"
# S_AXI_HP<p>_FPD is the PS's S_AXI_GP<p + 2> in its configuration names
PS_HP = {p: dict(intf=f"S_AXI_HP{p}_FPD", use=f"CONFIG.PSU__USE__S_AXI_GP{p + 2}",
                 width=f"CONFIG.PSU__SAXIGP{p + 2}__DATA_WIDTH", aclk=f"saxihp{p}_fpd_aclk")
         for p in range(4)}


def _ps_properties(config):
    props = {
        "CONFIG.PSU__USE__M_AXI_GP0": 1,  # M_AXI_HPM0_FPD: the registers
        "CONFIG.PSU__MAXIGP0__DATA_WIDTH": 32,
        "CONFIG.PSU__USE__M_AXI_GP1": 0,  # HPM1_FPD and HPM0_LPD unused
        "CONFIG.PSU__USE__M_AXI_GP2": 0,
        "CONFIG.PSU__FPGA_PL0_ENABLE": 1,
        "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": f"{config.freq_mhz:g}",
        "CONFIG.PSU__USE__IRQ0": 1,  # pl_ps_irq0
    }
    for p in range(4):
        used = p < config.axi_ports
        props[PS_HP[p]["use"]] = int(used)
        if used:
            props[PS_HP[p]["width"]] = config.axi_bits
    return props


def build_tcl(config, verilog_files, stamp=()):
    """The text of ``vivado/build.tcl`` for ``config``; ``verilog_files``: the Verilog files,
    relative to the output folder."""
    ports = [name for name, mode, *_ in buses(config) if mode == "master"]
    props = " ".join(f"{k} {{{v}}}" for k, v in _ps_properties(config).items())
    clocks = ["ps/maxihpm0_fpd_aclk"] + [f"ps/{PS_HP[p]['aclk']}" for p in range(len(ports))]
    files = " ".join(f"[file join $out_dir {f}]" for f in verilog_files)
    lines = [f"# {s}" for s in stamp] + [
        "# Vivado batch project of the Trio-ViT accelerator for a ZCU102:",
        "#   vivado -mode batch -source vivado/build.tcl",
        "# (from the output folder or anywhere: paths are relative to this script). Set TRIO_JOBS",
        "# for the parallel runs (default 8).",
        "",
        "set script_dir [file dirname [file normalize [info script]]]",
        "set out_dir [file dirname $script_dir]",
        "set part xczu9eg-ffvb1156-2-e",
        "set jobs [expr {[info exists ::env(TRIO_JOBS)] ? $::env(TRIO_JOBS) : 8}]",
        "",
        "create_project -force trio_vit [file join $script_dir project] -part $part",
        "set boards [get_board_parts -quiet -latest_file_version {*zcu102*}]",
        "if {[llength $boards] == 0} {",
        '    error "trio-vit: the ZCU102 board files are not installed in this Vivado"',
        "}",
        "set_property board_part [lindex $boards 0] [current_project]",
        f"add_files -norecurse [list {files}]",
        "add_files -fileset constrs_1 -norecurse [file join $script_dir trio_vit.xdc]",
        "update_compile_order -fileset sources_1",
        "",
        "# The block design: the PS with the board preset, the accelerator, reset, control path.",
        f"create_bd_design {BD_NAME}",
        "create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e ps",
        'apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} '
        "[get_bd_cells ps]",
        f"set_property -dict [list {props}] [get_bd_cells ps]",
        f"create_bd_cell -type module -reference {TOP_MODULE} acc",
        "create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl",
        "create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect ctrl",
        "set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] [get_bd_cells ctrl]",
        "",
        "connect_bd_net [get_bd_pins ps/pl_clk0] [get_bd_pins acc/clk] [get_bd_pins rst_pl/slowest_sync_clk] "
        f"[get_bd_pins ctrl/aclk] {' '.join(f'[get_bd_pins {c}]' for c in clocks)}",
        "connect_bd_net [get_bd_pins ps/pl_resetn0] [get_bd_pins rst_pl/ext_reset_in]",
        "connect_bd_net [get_bd_pins rst_pl/peripheral_reset] [get_bd_pins acc/rst]",
        "connect_bd_net [get_bd_pins rst_pl/interconnect_aresetn] [get_bd_pins ctrl/aresetn]",
        "connect_bd_intf_net [get_bd_intf_pins ps/M_AXI_HPM0_FPD] [get_bd_intf_pins ctrl/S00_AXI]",
        "connect_bd_intf_net [get_bd_intf_pins ctrl/M00_AXI] [get_bd_intf_pins acc/s_axil]",
    ]
    lines += [f"connect_bd_intf_net [get_bd_intf_pins acc/{name}] [get_bd_intf_pins ps/{PS_HP[p]['intf']}]"
              for p, name in enumerate(ports)]
    lines += [
        "connect_bd_net [get_bd_pins acc/irq] [get_bd_pins ps/pl_ps_irq0]",
        "",
        "# The address map: the registers in HPM0_FPD's window; every DDR segment for the DMA.",
        f"assign_bd_address -target_address_space [get_bd_addr_spaces ps/Data] -offset {REGISTER_BASE:#x} "
        f"-range {REGISTER_RANGE} [get_bd_addr_segs acc/s_axil/reg0]",
        "assign_bd_address",
        "validate_bd_design",
        "save_bd_design",
        f"set wrapper [make_wrapper -files [get_files {BD_NAME}.bd] -top]",
        "add_files -norecurse $wrapper",
        f"set_property top {BD_NAME}_wrapper [current_fileset]",
        "update_compile_order -fileset sources_1",
        "",
        "# Synthesis, implementation, bitstream.",
        "launch_runs synth_1 -jobs $jobs",
        "wait_on_run synth_1",
        'if {[get_property PROGRESS [get_runs synth_1]] != "100%"} { error "trio-vit: synthesis failed" }',
        "launch_runs impl_1 -to_step write_bitstream -jobs $jobs",
        "wait_on_run impl_1",
        'if {[get_property PROGRESS [get_runs impl_1]] != "100%"} {',
        '    error "trio-vit: implementation failed"',
        "}",
        "",
        "# Reports and the hardware hand-off.",
        "open_run impl_1",
        "file mkdir [file join $out_dir report]",
        "report_utilization -file [file join $out_dir report vivado_utilization.txt]",
        "report_utilization -hierarchical -file [file join $out_dir report vivado_utilization_hier.txt]",
        "report_timing_summary -file [file join $out_dir report vivado_timing.txt]",
        "write_hw_platform -fixed -include_bit -force -file [file join $out_dir trio_vit.xsa]",
        f"file copy -force [file join [get_property DIRECTORY [get_runs impl_1]] {BD_NAME}_wrapper.bit] "
        "[file join $out_dir trio_vit.bit]",
        f"file copy -force [file join $script_dir project trio_vit.gen sources_1 bd {BD_NAME} hw_handoff "
        f"{BD_NAME}.hwh] [file join $out_dir trio_vit.hwh]",
        'puts "trio-vit: wrote trio_vit.bit, trio_vit.hwh, trio_vit.xsa and report/vivado_*.txt"',
        "",
    ]
    return "\n".join(lines)


def constraints(config, stamp=()):
    """The text of ``vivado/trio_vit.xdc``."""
    return "\n".join([f"# {s}" for s in stamp] + [
        f"# The accelerator's clock is the PS's pl_clk0 at {config.freq_mhz:g} MHz, constrained by the",
        "# zynq_ultra_ps_e IP's own constraints; the design has no package pins (it talks to the PS",
        "# only), so none are placed here.",
        "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
        "",
    ])
