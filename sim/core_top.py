"""Verilog top for simulating a computing core against preloaded buffers (the replay's testbench).

The core (``hw.core.ComputingCore``, emitted by Amaranth as module ``trio_core``) is wrapped in
behavioural memories standing for its buffers: each is ``reg`` array loaded with ``$readmemh``
at time 0, with the same ports and timing as :class:`hw.core_slice.CoreSlice` (synchronous
reads, old data on a read during a write) and the same host port. Amaranth would write every
entry of a deep memory's initial contents into the Verilog (minutes for the megabyte buffers
of a whole network), so the simulation top is this short text instead; the Amaranth
``CoreSlice`` remains the model the amaranth.sim tests run.
"""

from __future__ import annotations

from hw.core_slice import MEMORIES

__all__ = ["core_top_verilog"]


def _ports(core):
    """(name, direction, width) of every port of the core's Verilog module."""
    from amaranth.hdl import Shape
    from amaranth.lib.wiring import Flow

    out = []
    for path, member, _ in core.signature.flatten(core):
        name = "__".join(str(p) for p in path)
        width = Shape.cast(member.shape).width
        out.append((name, "input" if member.flow == Flow.In else "output", width))
    return out


def core_top_verilog(core, mem_bits, hex_files, shapes):
    """Verilog of module ``trio_core_top``: ``core`` (module ``trio_core``), memories ``b``, ``w``,
    ``q``, ``o`` of ``2**mem_bits[name]`` words of ``shapes[name]`` bits, preloaded from
    ``hex_files[name]`` where given, and the host port of ``CoreSlice``."""
    ports = _ports(core)
    ab = core.addr_bits
    widths = {name: shapes[name].size for name in MEMORIES}
    host_w = max(widths.values())
    cmd_w = core.cmd.payload.shape().size
    lines = ["module trio_core_top(input clk, input rst,",
             f"  input cmd__valid, output cmd__ready, input [{cmd_w - 1}:0] cmd__payload,",
             "  output busy,",
             f"  input [1:0] host_sel, input [{ab - 1}:0] host_addr, input [{host_w - 1}:0] host_wdata,",
             f"  input host_we, input [1:0] host_rsel, input [{ab - 1}:0] host_raddr,",
             f"  output reg [{host_w - 1}:0] host_rdata);"]
    for name, _direction, width in ports:
        if name.startswith(("b_", "w_", "q_", "o_", "d_")):
            lines.append(f"  wire [{width - 1}:0] {name};")
    conns = [".clk(clk)", ".rst(rst)"] + [f".{n}({n})" for n, _, _ in ports]
    lines.append("  trio_core core(" + ", ".join(conns) + ");")
    for k, name in enumerate(MEMORIES):
        bits, width = mem_bits[name], widths[name]
        mem = f"mem_{name}"
        lines.append(f"  reg [{width - 1}:0] {mem} [0:{(1 << bits) - 1}];")
        if name in hex_files:
            lines.append(f'  initial $readmemh("{hex_files[name]}", {mem});')
        else:
            lines += [f"  integer {mem}__i;",
                      f"  initial for ({mem}__i = 0; {mem}__i < {1 << bits}; {mem}__i = {mem}__i + 1) "
                      f"{mem}[{mem}__i] = 0;"]
        lines.append(f"  reg [{width - 1}:0] {mem}__host;")
        body = [f"    {mem}__host <= {mem}[host_raddr[{bits - 1}:0]];",
                f"    if (host_we && host_sel == 2'd{k}) {mem}[host_addr[{bits - 1}:0]] <= "
                f"host_wdata[{width - 1}:0];"]
        readers, writers = core.memory_ports()[name]
        for p in readers:
            lines.append(f"  reg [{width - 1}:0] {p}__q;")
            lines.append(f"  assign {p}__data = {p}__q;")
            body.append(f"    if ({p}__en) {p}__q <= {mem}[{p}__addr[{bits - 1}:0]];")
        for p in writers:
            body.append(f"    if ({p}__en) {mem}[{p}__addr[{bits - 1}:0]] <= {p}__data;")
        lines += ["  always @(posedge clk) begin"] + body + ["  end"]
    lines.append("  reg [1:0] host_sel_q;")
    lines.append("  always @(posedge clk) host_sel_q <= host_rsel;")
    sel = " : ".join(f"host_sel_q == 2'd{k} ? {{{{{host_w - widths[n]}{{1'b0}}}}, mem_{n}__host}}"
                     if host_w > widths[n] else f"host_sel_q == 2'd{k} ? mem_{n}__host"
                     for k, n in enumerate(MEMORIES[:-1]))
    last = MEMORIES[-1]
    tail = (f"{{{{{host_w - widths[last]}{{1'b0}}}}, mem_{last}__host}}" if host_w > widths[last]
            else f"mem_{last}__host")
    lines.append(f"  always @(*) host_rdata = {sel} : {tail};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"
