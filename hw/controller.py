"""The controller: fetches the program's instructions (``hw.isa``) from DRAM, executes them in
order on the DMA engine and the computing core, and reports the end of a run to the registers."""

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import Resp
from hw.command import command_layout
from hw.control_registers import trace_layout
from hw.dma_reader import load_layout
from hw.dma_writer import store_layout
from hw.isa import HEADER, INSTRUCTION_BITS, Opcode, body_layouts
from hw.params import check_int
from hw.registers import REGIONS, ErrorCode

__all__ = ["Controller"]

INSTRUCTION_SHIFT = (INSTRUCTION_BITS // 8).bit_length() - 1  # log2 of an instruction's bytes


class Controller(wiring.Component):
    """Runs a program from ``START`` to ``END`` or the first error.

    Order of execution (this version): one instruction at a time, in program order. A fetch is a
    DMA load of one instruction (``INSTRUCTION_BITS / axi_bits`` beats) into the instruction
    register. LOAD and STORE wait until the core is idle, then run on the DMA engine to the end;
    COMPUTE hands its command to the core and retires as soon as the core takes it (the next
    fetch overlaps the command; a depthwise command's ``follow`` reduction is taken while it
    runs); SYNC and END wait until the core is idle. In-order execution satisfies every
    dependency token, so ``wait``/``signal`` are not needed yet and are ignored.

    Parameters
    ----------
    addr_width : int
        DRAM byte address width of the AXI port.
    axi_bits : int
        AXI data width (instruction fetch beats).
    addr_bits : int
        Buffer word address width of the core commands.
    word_shifts : tuple of 4 ints
        log2 of the DRAM beats per buffer word, per ``hw.isa.Buffer``.
    dma_addr_bits, dim_bits : int
        The DMA engine's buffer-beat address width and count width.

    Members
    -------
    start, soft_reset : In(1) (pulses from the registers); busy : Out(1); finish : Out(1) (pulse),
        error : Out(8) (``ErrorCode``, with ``finish``).
    program_length : In(32); ``<region>_base`` : In(64) per ``hw.registers.REGIONS``.
    load : Out(stream.Signature(load_layout(...))), store : Out(stream.Signature(store_layout(...))):
        to the DMA engine; ``load_busy``, ``store_busy`` : In(1); ``load_error``, ``store_error`` : In(2).
    fetch_wr : Out(memory.WritePort.Signature(...)): the DMA's writes while ``fetching`` (the
        controller is the memory: the beat at address k is the instruction's k-th beat).
    fetching : Out(1): the DMA's writes go to the instruction register, not the buffers.
    buffer : Out(2): the ``hw.isa.Buffer`` of the LOAD or STORE running.
    range_error : In(1): a DMA transfer of the running instruction addressed past its buffer.
    cmd : Out(stream.Signature(command_layout(addr_bits))), core_busy : In(1): the core.
    trace : Out(stream.Signature(trace_layout)): one entry per retired instruction.
    stall : Out(1): waiting for the core before a LOAD, STORE, SYNC or END.
    """

    def __init__(self, addr_width=40, axi_bits=128, addr_bits=16, word_shifts=(0, 0, 0, 0), dma_addr_bits=20,
                 dim_bits=16):
        check_int("Address width", addr_width, 12, 64)
        check_int("Buffer address width", addr_bits, 4, 24)
        if len(word_shifts) != 4 or any(not 0 <= s <= 4 for s in word_shifts):
            raise ValueError(f"word_shifts must be 4 shifts of 0..4, not {word_shifts!r}")
        if INSTRUCTION_BITS % axi_bits:
            raise ValueError(f"AXI width {axi_bits} does not divide an instruction ({INSTRUCTION_BITS} bits)")
        self._aw, self._axi, self._ab, self._ws = addr_width, axi_bits, addr_bits, tuple(word_shifts)
        self._dab, self._db = dma_addr_bits, dim_bits
        members = {
            "start": In(1), "soft_reset": In(1), "busy": Out(1), "finish": Out(1), "error": Out(8),
            "program_length": In(32),
            "load": Out(stream.Signature(load_layout(addr_width, dim_bits, dma_addr_bits))),
            "store": Out(stream.Signature(store_layout(addr_width, dim_bits, dma_addr_bits))),
            "load_busy": In(1), "store_busy": In(1), "load_error": In(2), "store_error": In(2),
            "fetch_wr": Out(memory.WritePort.Signature(addr_width=dma_addr_bits, shape=axi_bits)),
            "fetching": Out(1), "buffer": Out(2), "range_error": In(1),
            "cmd": Out(stream.Signature(command_layout(addr_bits))), "core_busy": In(1),
            "trace": Out(stream.Signature(trace_layout)), "stall": Out(1),
        }
        members.update({f"{region}_base": In(64) for region in REGIONS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        beats = INSTRUCTION_BITS // self._axi
        instr = Signal(INSTRUCTION_BITS)
        with m.If(self.fetch_wr.en):
            with m.Switch(self.fetch_wr.addr[:max(1, (beats - 1).bit_length())]):
                for k in range(beats):
                    with m.Case(k):
                        m.d.sync += instr[k * self._axi:(k + 1) * self._axi].eq(self.fetch_wr.data)

        header = HEADER(instr[:HEADER.size])
        bodies = body_layouts(self._ab)
        body = instr[HEADER.size:]
        xfer = bodies[Opcode.LOAD](body[:bodies[Opcode.LOAD].size])
        compute = bodies[Opcode.COMPUTE](body[:bodies[Opcode.COMPUTE].size])
        bases = Array(getattr(self, f"{region}_base")[:self._aw] for region in REGIONS)
        shift = Array(Const(s, 3) for s in self._ws)[xfer.buffer]

        pc = Signal(32)
        m.d.comb += self.buffer.eq(xfer.buffer)
        ld = self.load.payload
        m.d.comb += [
            # a fetch: one instruction from the program region, beats to the instruction register
            self.trace.payload.opcode.eq(header.opcode), self.trace.payload.index.eq(pc),
        ]

        def finish(code):  # the code goes to the registers with the pulse
            m.d.comb += [self.finish.eq(1), self.error.eq(code)]
            m.next = "IDLE"

        def issue(port, buf, state):
            """A LOAD or STORE to the DMA once the core is idle (``buf``: its buffer-side fields)."""
            p = port.payload
            m.d.comb += [self.stall.eq(self.core_busy),
                         p.addr.eq(bases[xfer.region] + xfer.offset), p.row_beats.eq(xfer.row_beats),
                         p.rows.eq(xfer.rows), p.stride.eq(xfer.stride),
                         getattr(p, buf).eq(xfer.buf_addr << shift),
                         getattr(p, f"{buf}_stride").eq(xfer.buf_stride << shift),
                         port.valid.eq(~self.core_busy)]
            with m.If(port.valid & port.ready):
                m.next = state

        def finish_transfer(busy, resp, slverr, decerr):
            """Wait for the DMA; its AXI error or a buffer address out of range ends the run."""
            m.d.comb += self.busy.eq(1)
            with m.If(~busy):
                with m.If(resp != Resp.OKAY):
                    finish(Mux(resp == Resp.DECERR, decerr, slverr))
                with m.Elif(self.range_error):
                    finish(ErrorCode.ADDRESS_RANGE)
                with m.Else():
                    m.next = "RETIRE"

        with m.FSM(name="state"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += pc.eq(0)
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.soft_reset):
                    m.next = "DRAIN"
                with m.Elif(pc == self.program_length):
                    finish(ErrorCode.NO_END)
                with m.Else():
                    m.d.comb += [
                        self.fetching.eq(1), self.load.valid.eq(1),
                        ld.addr.eq(bases[REGIONS.index("program")] + (pc << INSTRUCTION_SHIFT)),
                        ld.row_beats.eq(beats), ld.rows.eq(1), ld.stride.eq(0), ld.dst.eq(0),
                        ld.dst_stride.eq(0),
                    ]
                    with m.If(self.load.ready):
                        m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.d.comb += [self.busy.eq(1), self.fetching.eq(1)]
                with m.If(~self.load_busy):
                    with m.If(self.load_error != Resp.OKAY):
                        finish(ErrorCode.FETCH_ERROR)
                    with m.Elif(self.soft_reset):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.soft_reset):
                    m.next = "DRAIN"
                with m.Elif(header.opcode == Opcode.COMPUTE):
                    m.d.comb += [self.cmd.valid.eq(1), self.cmd.payload.eq(compute.command)]
                    with m.If(self.cmd.ready):
                        m.next = "RETIRE"
                with m.Elif(header.opcode == Opcode.LOAD):
                    issue(self.load, "dst", "LOAD_WAIT")
                with m.Elif(header.opcode == Opcode.STORE):
                    issue(self.store, "src", "STORE_WAIT")
                with m.Elif((header.opcode == Opcode.SYNC) | (header.opcode == Opcode.END)):
                    m.d.comb += self.stall.eq(self.core_busy)
                    with m.If(~self.core_busy):
                        with m.If(header.opcode == Opcode.END):
                            m.d.comb += self.trace.valid.eq(1)
                            finish(ErrorCode.NONE)
                        with m.Else():
                            m.next = "RETIRE"
                with m.Else():
                    finish(ErrorCode.ILLEGAL_OPCODE)
            with m.State("LOAD_WAIT"):
                finish_transfer(self.load_busy, self.load_error, ErrorCode.LOAD_SLVERR, ErrorCode.LOAD_DECERR)
            with m.State("STORE_WAIT"):
                finish_transfer(self.store_busy, self.store_error, ErrorCode.STORE_SLVERR,
                                ErrorCode.STORE_DECERR)
            with m.State("RETIRE"):
                m.d.comb += [self.busy.eq(1), self.trace.valid.eq(1)]
                m.d.sync += pc.eq(pc + 1)
                m.next = "FETCH"
            with m.State("DRAIN"):  # soft reset: let the DMA and the core finish, report nothing
                m.d.comb += self.busy.eq(1)
                with m.If(~self.load_busy & ~self.store_busy & ~self.core_busy):
                    m.next = "IDLE"
        return m
