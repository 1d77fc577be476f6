"""A computing core attached to its slice of the global buffers, with a host port: what the
replay (``python -m sim.replay``) drives, one command at a time."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.command import command_layout
from hw.core import ComputingCore
from hw.params import check_int

__all__ = ["CoreSlice", "MEMORIES"]

MEMORIES = ("b", "w", "q", "o")  # host port ``sel`` values 0..3: buffer B, weights, parameters, int32 outputs


class CoreSlice(wiring.Component):
    """:class:`ComputingCore` with memories standing for its share of the global buffers:
    B (activations, 2 read + 2 write ports for the core), the weight and parameter words of
    buffer C (2 read ports each), the output buffer (2 write ports, int32). In the accelerator
    these are banks of the global buffers (docs/architecture.md §3); here each is one memory of
    ``2**mem_bits[name]`` words (at most ``2**addr_bits``), sized by the replay so that every
    command's operands fit, or ``depths[name]`` words (the accelerator's buffer capacities).

    Members
    -------
    cmd : In(stream.Signature(command_layout(addr_bits))), busy : Out(1): the core's.
    host_sel : In(2), host_addr : In(addr_bits), host_wdata : In(width), host_we : In(1):
        write one word of memory ``MEMORIES[host_sel]`` per cycle (``width``: the widest word);
    host_rsel : In(2), host_raddr : In(addr_bits), host_rdata : Out(width): the word at
        ``host_raddr`` of memory ``MEMORIES[host_rsel]``, one cycle after it is presented (a
        read port of its own: the DMA loads and stores at once).
    """

    def __init__(self, config, addr_bits=12, mem_bits=None, depths=None):
        check_int("Address width", addr_bits, 4, 20)
        self._core = ComputingCore(config, addr_bits)
        self._ab = addr_bits
        self._mem_bits = {name: addr_bits for name in MEMORIES}
        for name, bits in (mem_bits or {}).items():
            if name not in MEMORIES:
                raise ValueError(f"unknown memory {name!r}: expected one of {', '.join(MEMORIES)}")
            self._mem_bits[name] = check_int(f"Address width of memory {name}", bits, 1, addr_bits)
        self._depths = {name: 1 << bits for name, bits in self._mem_bits.items()}
        for name, depth in (depths or {}).items():  # fewer words than the address width reaches
            self._depths[name] = check_int(f"Depth of memory {name}", depth, 1, 1 << self._mem_bits[name])
        c = self._core
        self._shapes = c.buffer_layouts()
        width = max(s.size for s in self._shapes.values())
        self._width = width
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_bits))),
            "busy": Out(1),
            "host_sel": In(2), "host_addr": In(addr_bits), "host_wdata": In(width), "host_we": In(1),
            "host_rsel": In(2), "host_raddr": In(addr_bits), "host_rdata": Out(width),
        })

    core = property(lambda self: self._core)
    shapes = property(lambda self: dict(self._shapes))
    mem_bits = property(lambda self: dict(self._mem_bits))

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = self._core
        wiring.connect(m, wiring.flipped(self.cmd), core.cmd)
        m.d.comb += self.busy.eq(core.busy)
        rdata = {}
        for k, name in enumerate(MEMORIES):
            bits = self._mem_bits[name]
            mem = memory.Memory(shape=self._shapes[name], depth=self._depths[name], init=[])
            m.submodules[f"mem_{name}"] = mem
            host_w = mem.write_port()
            m.d.comb += [host_w.addr.eq(self.host_addr[:bits]), host_w.data.eq(self.host_wdata),
                         host_w.en.eq(self.host_we & (self.host_sel == k))]
            host_r = mem.read_port()
            m.d.comb += host_r.addr.eq(self.host_raddr[:bits])
            rdata[k] = host_r.data
            readers = [f"{name}_rd{j}" for j in range(2)] if name in ("b", "w", "q") else []
            if name == "b":  # and the depthwise window fill
                readers += [f"d_rd{j}" for j in range(core.dw_ports)]
            for r in readers:  # the core's ports: addresses cut to this memory's depth
                port, mine = mem.read_port(), getattr(core, r)
                m.d.comb += [port.addr.eq(mine.addr[:bits]), port.en.eq(mine.en), mine.data.eq(port.data)]
            for j in range(2):
                if name in ("b", "o", "w"):
                    port, mine = mem.write_port(), getattr(core, f"{name}_wr{j}")
                    m.d.comb += [port.addr.eq(mine.addr[:bits]), port.en.eq(mine.en), port.data.eq(mine.data)]
        sel = Signal(2)
        m.d.sync += sel.eq(self.host_rsel)
        m.d.comb += self.host_rdata.eq(Mux(sel == 0, rdata[0], Mux(sel == 1, rdata[1],
                                                                    Mux(sel == 2, rdata[2], rdata[3]))))
        return m
