"""The AXI4-Lite register slave of ``hw.registers``: control, status, interrupt, DRAM regions,
configuration hash, performance counters and the per-instruction trace buffer."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import Resp, axi4_lite
from hw.params import check_int
from hw.registers import ADDR_BITS, BY_NAME, COUNTERS, REGIONS, REGISTERS, Control, Irq, Status

__all__ = ["ControlRegisters", "trace_layout"]

trace_layout = data.StructLayout({"opcode": unsigned(8), "index": unsigned(24)})


class ControlRegisters(wiring.Component):
    """The register map of :mod:`hw.registers` on an AXI4-Lite subordinate port (32-bit data).

    Parameters
    ----------
    config_hash : int
        The configuration's 64-bit hash (``int(AcceleratorConfig.hash, 16)``), read-only.
    trace_depth : int
        Entries of the trace buffer (16..65536; one BRAM36 holds 512 entries of 64 bits).

    Members
    -------
    axi : In(hw.axi.axi4_lite(ADDR_BITS, 32)): the host's port. One write and one read at a time;
        a write is taken when its address and data are both valid; responses one cycle later.
    irq : Out(1): high while IRQ_STATUS & IRQ_ENABLE is not zero (level).
    start, soft_reset : Out(1): one-cycle pulses from CONTROL (``start`` only while not busy).
    busy : In(1): the controller runs a program (from the cycle after ``start``).
    finish : In(1): one-cycle pulse, the run ended; ``error`` : In(8) its ``ErrorCode`` (0: none).
    program_length : Out(32); ``<region>_base`` : Out(64) for each of ``hw.registers.REGIONS``.
    unit_busy : In(len(COUNTERS) - 1): per cycle, which of the counters after ``cycles`` count.
    trace : In(stream.Signature(trace_layout)): an instruction completed (always ready; entries
        past ``trace_depth`` are counted in TRACE_COUNT's saturation, not stored).

    Counters and the trace restart at ``start`` and ``soft_reset``; every counter is 64 bits.
    """

    def __init__(self, config_hash=0, trace_depth=1024):
        if type(config_hash) is not int or not 0 <= config_hash < 1 << 64:
            raise ValueError(f"config_hash must be a 64-bit unsigned integer, not {config_hash!r}")
        check_int("Trace depth", trace_depth, 16, 65536)
        self._hash, self._depth = config_hash, trace_depth
        members = {
            "axi": In(axi4_lite(ADDR_BITS, 32)),
            "irq": Out(1), "start": Out(1), "soft_reset": Out(1),
            "busy": In(1), "finish": In(1), "error": In(8),
            "program_length": Out(32),
            "unit_busy": In(len(COUNTERS) - 1),
            "trace": In(stream.Signature(trace_layout)),
        }
        members.update({f"{region}_base": Out(64) for region in REGIONS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        status_done = Signal()
        status_error = Signal(Status.ERROR_BITS)
        irq_enable = Signal(2)
        irq_status = Signal(2)
        trace_index = Signal(16)
        restart = self.start | self.soft_reset

        # Counters and the latched high halves.
        counters = {name: Signal(64, name=f"count_{name}") for name in COUNTERS}
        latched = {name: Signal(32, name=f"latched_{name}") for name in COUNTERS}
        counting = [self.busy] + [self.busy & self.unit_busy[k] for k in range(len(COUNTERS) - 1)]
        for counter, on in zip(counters.values(), counting, strict=True):
            with m.If(restart):
                m.d.sync += counter.eq(0)
            with m.Elif(on):
                m.d.sync += counter.eq(counter + 1)

        # The trace buffer: entry = (cycle << 32) | (index << 8) | opcode.
        m.submodules.trace_mem = trace_mem = memory.Memory(shape=64, depth=self._depth, init=[])
        t_wr, t_rd = trace_mem.write_port(), trace_mem.read_port()
        trace_count = Signal(range(self._depth + 1))
        m.d.comb += [self.trace.ready.eq(1), t_wr.addr.eq(trace_count),
                     t_wr.data.eq(Cat(self.trace.payload.opcode, self.trace.payload.index,
                                      counters["cycles"][:32])),
                     t_wr.en.eq(self.trace.valid & (trace_count < self._depth)),
                     t_rd.addr.eq(trace_index)]
        with m.If(restart):
            m.d.sync += trace_count.eq(0)
        with m.Elif(self.trace.valid & (trace_count < self._depth)):
            m.d.sync += trace_count.eq(trace_count + 1)

        # Writable registers.
        rw = {"IRQ_ENABLE": irq_enable, "PROGRAM_LENGTH": self.program_length, "TRACE_INDEX": trace_index}
        for region in REGIONS:
            base = getattr(self, f"{region}_base")
            rw[f"{region.upper()}_BASE_LO"] = base[:32]
            rw[f"{region.upper()}_BASE_HI"] = base[32:]

        # Readable values.
        values = {
            "STATUS": Cat(self.busy, status_done, Const(0, Status.ERROR_SHIFT - 2), status_error),
            "IRQ_ENABLE": irq_enable, "IRQ_STATUS": irq_status,
            "VERSION": Const(BY_NAME["VERSION"].reset, 32),
            "CONFIG_HASH_LO": Const(self._hash & 0xFFFF_FFFF, 32),
            "CONFIG_HASH_HI": Const(self._hash >> 32, 32),
            "TRACE_COUNT": trace_count, "TRACE_INDEX": trace_index,
            "TRACE_OPCODE": t_rd.data[:32], "TRACE_CYCLE": t_rd.data[32:],
            "CONTROL": Const(0, 32),
        }
        values.update({name: value for name, value in rw.items() if name not in values})
        for name in COUNTERS:
            values[f"{name.upper()}_LO"] = counters[name][:32]
            values[f"{name.upper()}_HI"] = latched[name]

        # Write channel: address and data together, response the next cycle.
        waddr = axi.awaddr[2:ADDR_BITS]
        strobe = Cat(*(Mux(axi.wstrb[k], Const(0xFF, 8), Const(0, 8)) for k in range(4)))
        take_w = axi.awvalid & axi.wvalid & ~axi.bvalid
        m.d.comb += [axi.awready.eq(take_w), axi.wready.eq(take_w)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += axi.bvalid.eq(0)
        start, soft_reset = Signal(), Signal()
        m.d.comb += [self.start.eq(start & ~self.busy), self.soft_reset.eq(soft_reset)]
        clear_irq = Signal(2)
        with m.If(take_w):
            m.d.sync += [axi.bvalid.eq(1), axi.bresp.eq(Resp.SLVERR)]
            with m.Switch(waddr):
                for reg in REGISTERS:
                    if reg.access == "ro":
                        continue
                    with m.Case(reg.offset >> 2):
                        m.d.sync += axi.bresp.eq(Resp.OKAY)
                        if reg.name == "CONTROL":
                            bit = lambda mask: ((axi.wdata & mask) != 0) & axi.wstrb[0]  # noqa: E731
                            m.d.comb += [start.eq(bit(Control.START)), soft_reset.eq(bit(Control.SOFT_RESET))]
                        elif reg.name == "IRQ_STATUS":
                            m.d.comb += clear_irq.eq(axi.wdata[:2] & Mux(axi.wstrb[0], 3, 0))
                        else:
                            target = rw[reg.name]
                            mask = strobe[:len(target)]
                            m.d.sync += target.eq((target & ~mask) | (axi.wdata[:len(target)] & mask))

        # Status and interrupts.
        with m.If(restart):
            m.d.sync += [status_done.eq(0), status_error.eq(0)]
        with m.Elif(self.finish):
            m.d.sync += [status_done.eq(1), status_error.eq(self.error)]
        raised = Mux(self.finish, Irq.DONE | Mux(self.error != 0, Irq.ERROR, 0), 0)
        m.d.sync += irq_status.eq(Mux(self.soft_reset, 0, (irq_status & ~clear_irq) | raised))
        m.d.comb += self.irq.eq((irq_status & irq_enable) != 0)

        # Read channel: data the cycle after the address.
        raddr = axi.araddr[2:ADDR_BITS]
        take_r = axi.arvalid & ~axi.rvalid
        m.d.comb += axi.arready.eq(take_r)
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        with m.If(take_r):
            m.d.sync += [axi.rvalid.eq(1), axi.rdata.eq(0), axi.rresp.eq(Resp.SLVERR)]
            with m.Switch(raddr):
                for reg in REGISTERS:
                    with m.Case(reg.offset >> 2):
                        m.d.sync += [axi.rdata.eq(values[reg.name]), axi.rresp.eq(Resp.OKAY)]
                        counter = reg.name[:-3].lower()
                        if reg.name.endswith("_LO") and counter in counters:
                            m.d.sync += latched[counter].eq(counters[counter][32:])
        return m
