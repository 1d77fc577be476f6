"""The accelerator as Vivado takes it: a Verilog wrapper (module ``trio_vit``) with flat ports,
named as Vivado's interface inference expects (``m_axi0_awaddr``, ``s_axil_rdata``, ...), and
Xilinx interface attributes on every port, around ``hw.accelerator.Accelerator``'s module.

The wrapper is written as text rather than elaborated by Amaranth: Yosys merges wires that carry
the same value (``awburst`` and ``arburst`` are both the constant INCR) and with them their
attributes, which would label one port with the other's interface signal.
"""

from amaranth.hdl import Shape
from amaranth.lib.wiring import Out

from hw.axi import axi4, axi4_lite
from hw.registers import ADDR_BITS

__all__ = ["TOP_MODULE", "ADDR_WIDTH", "Port", "buses", "ports", "board_top_verilog"]

TOP_MODULE = "trio_vit"  # the module Vivado's block design references (create_bd_cell -reference)
ADDR_WIDTH = 49  # byte address width of the ZynqMP's S_AXI_HP ports
_XIL = "xilinx.com"


class Port:
    """One port of the wrapper: ``name``, ``direction`` (input/output), ``width``, the inner
    module's port it connects to, and its ``attrs`` (X_INTERFACE_INFO, X_INTERFACE_PARAMETER)."""

    def __init__(self, name, direction, width, inner, attrs):
        self.name, self.direction, self.width, self.inner, self.attrs = name, direction, width, inner, attrs

    def __repr__(self):
        return f"Port({self.name}, {self.direction}, {self.width})"


def buses(config, addr_width=ADDR_WIDTH):
    """[(interface name, mode, signature seen from the manager, protocol)]: ``s_axil`` (the
    registers, ``hw.registers``) and one AXI4 manager ``m_axi<p>`` per DMA engine."""
    out = [("s_axil", "slave", axi4_lite(ADDR_BITS, 32), "AXI4LITE")]
    out += [(f"m_axi{p}", "master", axi4(addr_width, config.axi_bits), "AXI4")
            for p in range(config.axi_ports)]
    return out


def _bus_parameters(sig, protocol, freq_hz):
    m = sig.members
    width = lambda name: Shape.cast(m[name].shape).width  # noqa: E731
    params = [f"PROTOCOL {protocol}", f"DATA_WIDTH {width('wdata')}", f"ADDR_WIDTH {width('awaddr')}",
              f"FREQ_HZ {freq_hz}"]
    if protocol == "AXI4":
        params += [f"ID_WIDTH {width('awid')}", "MAX_BURST_LENGTH 16", "NUM_READ_OUTSTANDING 8",
                   "NUM_WRITE_OUTSTANDING 8", "SUPPORTS_NARROW_BURST 0", "HAS_BURST 1", "HAS_LOCK 1",
                   "HAS_CACHE 1", "HAS_PROT 1", "HAS_QOS 1", "HAS_REGION 0", "READ_WRITE_MODE READ_WRITE"]
    return ", ".join(params)


def ports(config, addr_width=ADDR_WIDTH):
    """Every :class:`Port` of the wrapper, in order: clk, rst, irq, then the buses."""
    freq_hz = round(config.freq_mhz * 1e6)
    names = [name for name, *_ in buses(config, addr_width)]
    out = [
        Port("clk", "input", 1, "clk", {
            "X_INTERFACE_INFO": f"{_XIL}:signal:clock:1.0 clk CLK",
            "X_INTERFACE_PARAMETER": f"ASSOCIATED_BUSIF {':'.join(names)}, ASSOCIATED_RESET rst, "
                                     f"FREQ_HZ {freq_hz}"}),
        Port("rst", "input", 1, "rst", {"X_INTERFACE_INFO": f"{_XIL}:signal:reset:1.0 rst RST",
                                        "X_INTERFACE_PARAMETER": "POLARITY ACTIVE_HIGH"}),
        Port("irq", "output", 1, "irq", {"X_INTERFACE_INFO": f"{_XIL}:signal:interrupt:1.0 irq INTERRUPT",
                                         "X_INTERFACE_PARAMETER": "SENSITIVITY LEVEL_HIGH"}),
    ]
    for name, mode, sig, protocol in buses(config, addr_width):
        for k, (member_name, member) in enumerate(sig.members.items()):
            drives = (member.flow == Out) == (mode == "master")  # the accelerator drives it
            attrs = {"X_INTERFACE_INFO": f"{_XIL}:interface:aximm:1.0 {name} {member_name.upper()}"}
            if k == 0:
                attrs["X_INTERFACE_PARAMETER"] = _bus_parameters(sig, protocol, freq_hz)
            out.append(Port(f"{name}_{member_name}", "output" if drives else "input",
                            Shape.cast(member.shape).width, f"{name}__{member_name}", attrs))
    return out


def board_top_verilog(config, inner, stamp=(), addr_width=ADDR_WIDTH):
    """The wrapper's Verilog: module ``TOP_MODULE`` instantiating ``inner`` (the accelerator's
    module for ``config``, built with ``addr_width``-bit AXI addresses)."""
    lines = [f"// {s}" for s in stamp] + ["`timescale 1ns/1ps", ""]
    ps = ports(config, addr_width)
    lines.append(f"module {TOP_MODULE} (")
    for k, p in enumerate(ps):
        for key, value in p.attrs.items():
            lines.append(f'  (* {key} = "{value}" *)')
        rng = f"[{p.width - 1}:0] " if p.width > 1 else ""
        lines.append(f"  {p.direction} wire {rng}{p.name}{',' if k < len(ps) - 1 else ''}")
    lines += [");", f"  {inner} accelerator ("]
    lines += [f"    .{p.inner}({p.name}){',' if k < len(ps) - 1 else ''}" for k, p in enumerate(ps)]
    lines += ["  );", "endmodule", ""]
    return "\n".join(lines)
