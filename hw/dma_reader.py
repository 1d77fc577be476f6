"""DMA from DRAM to an on-chip buffer: 2-D strided, INCR bursts on an AXI4 read channel."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import CACHE, PROT, Burst, Resp, axi4_read
from hw.burst_sequencer import BurstSequencer
from hw.params import check_int

__all__ = ["DmaReader", "BufferWalk", "load_layout", "DmaDirection"]


class DmaDirection(wiring.Component):
    """What the two DMA directions share: parameter checks, the burst sequencer, and the members
    ``cmd`` (a ``cmd_layout`` stream), ``axi`` (``axi_half``), the buffer port ``port``, ``busy``
    and ``error``."""

    def __init__(self, addr_width, data_width, buf_addr_width, max_beats, outstanding, dim_bits, cmd_layout,
                 axi_half, port, port_signature, extra=None):
        check_int("Buffer address width", buf_addr_width, 4, 32)
        check_int("Outstanding bursts", outstanding, 1, 64)
        self._seq = BurstSequencer(addr_width, data_width // 8, max_beats, dim_bits)
        self._aw, self._dw, self._bw, self._out, self._db = (addr_width, data_width, buf_addr_width,
                                                             outstanding, dim_bits)
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout)),
            "axi": Out(axi_half(addr_width, data_width)),
            port: In(port_signature),
            "busy": Out(1),
            "error": Out(2),
            **(extra or {}),
        })


class BufferWalk:
    """The buffer-side address sequence of a 2-D transfer (both DMA directions): ``rows`` rows of
    ``row_beats`` consecutive words from ``base``, row starts ``stride`` words apart. ``load``
    starts it; each cycle with ``step`` (and ``active``) moves to the next word; ``active`` falls
    after the last. Built into the module ``m`` with signals named after ``name``."""

    def __init__(self, m, name, addr_bits, dim_bits, load, base, stride, row_beats, rows, step):
        row = Signal(addr_bits, name=f"{name}_row")
        self.addr = Signal(addr_bits, name=f"{name}_addr")
        col = Signal(dim_bits, name=f"{name}_col")  # words of this row still to come
        rows_left = Signal(dim_bits, name=f"{name}_rows_left")
        beats = Signal(dim_bits, name=f"{name}_row_beats")
        row_stride = Signal(addr_bits, name=f"{name}_stride")
        self.active = Signal(name=f"{name}_active")
        self.last = (col == 1) & (rows_left == 0)
        with m.If(load):
            m.d.sync += [row.eq(base), self.addr.eq(base), col.eq(row_beats), beats.eq(row_beats),
                         rows_left.eq(rows - 1), row_stride.eq(stride),
                         self.active.eq((rows != 0) & (row_beats != 0))]
        with m.Elif(step & self.active):
            with m.If(col == 1):
                with m.If(rows_left == 0):
                    m.d.sync += self.active.eq(0)
                m.d.sync += [row.eq(row + row_stride), self.addr.eq(row + row_stride), col.eq(beats),
                             rows_left.eq(rows_left - 1)]
            with m.Else():
                m.d.sync += [self.addr.eq(self.addr + 1), col.eq(col - 1)]


def load_layout(addr_width, dim_bits, buf_addr_width):
    """A load: the 2-D DRAM transfer of :func:`hw.burst_sequencer.transfer_layout` to buffer
    words from ``dst``, each row's first word ``dst_stride`` words after the previous row's."""
    return data.StructLayout({"addr": unsigned(addr_width), "row_beats": unsigned(dim_bits),
                              "rows": unsigned(dim_bits), "stride": unsigned(addr_width),
                              "dst": unsigned(buf_addr_width), "dst_stride": unsigned(buf_addr_width)})


class DmaReader(DmaDirection):
    """Reads ``rows`` x ``row_beats`` beats from DRAM and writes them, one buffer word per beat, to
    a buffer write port. Bursts come from a :class:`BurstSequencer`; up to ``outstanding``
    bursts are in flight, so DRAM latency hides behind the requests; read data is accepted
    (``rready``) one beat per cycle while ``wr_ready`` is high.

    Parameters
    ----------
    addr_width, data_width : int
        AXI byte address width and data width (a beat is one buffer word).
    buf_addr_width : int
        Buffer word address width (4..24).
    max_beats : int
        Longest burst (1..256).
    outstanding : int
        Bursts requested and not yet fully received (1..64).
    dim_bits : int
        Width of the row and beat counts.

    Members
    -------
    cmd : In(stream.Signature(load_layout(...))): accepted while idle.
    axi : Out(hw.axi.axi4_read(addr_width, data_width)): ID 0, INCR, full-width beats.
    wr : In(memory.WritePort.Signature(addr_width=buf_addr_width, shape=data_width)).
    wr_ready : In(1), high by default: the buffer takes a write this cycle (low: ``rready`` falls
        and the beat waits on the AXI channel).
    busy : Out(1): from the cycle after the command to the cycle after its last write.
    error : Out(2): the first non-OKAY ``rresp`` of the current command (``hw.axi.Resp``), held
        until the next command; the data of such a beat is written as it came.

    Throughput one beat per cycle while the subordinate keeps up.
    """

    def __init__(self, addr_width=49, data_width=128, buf_addr_width=16, max_beats=16, outstanding=8,
                 dim_bits=16):
        super().__init__(addr_width, data_width, buf_addr_width, max_beats, outstanding, dim_bits,
                         load_layout(addr_width, dim_bits, buf_addr_width), axi4_read, "wr",
                         memory.WritePort.Signature(addr_width=buf_addr_width, shape=data_width),
                         {"wr_ready": In(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq = seq = self._seq
        axi, c = self.axi, self.cmd.payload

        # Request side: the sequencer's bursts on ar, while fewer than `outstanding` are in flight.
        in_flight = Signal(range(self._out + 1))
        issue = seq.burst.valid & (in_flight < self._out)
        m.d.comb += [
            seq.cmd.payload.addr.eq(c.addr), seq.cmd.payload.row_beats.eq(c.row_beats),
            seq.cmd.payload.rows.eq(c.rows), seq.cmd.payload.stride.eq(c.stride),
            axi.araddr.eq(seq.burst.payload.addr), axi.arlen.eq(seq.burst.payload.beats - 1),
            axi.arsize.eq(self._dw.bit_length() - 4), axi.arburst.eq(Burst.INCR),
            axi.arcache.eq(CACHE), axi.arprot.eq(PROT), axi.arvalid.eq(issue),
            seq.burst.ready.eq(axi.arready & (in_flight < self._out)),
        ]
        sent = axi.arvalid & axi.arready
        beat = axi.rvalid & self.wr_ready  # a beat accepted
        done_burst = beat & axi.rlast
        m.d.sync += in_flight.eq(in_flight + sent - done_burst)

        # Receive side: every beat to the next buffer word of the row structure.
        walk = BufferWalk(m, "dst", self._bw, self._db, self.cmd.valid & self.cmd.ready, c.dst,
                          c.dst_stride, c.row_beats, c.rows, step=beat)
        m.d.comb += [
            axi.rready.eq(self.wr_ready),
            self.wr.addr.eq(walk.addr), self.wr.data.eq(axi.rdata), self.wr.en.eq(beat & walk.active),
            self.busy.eq(walk.active),
            self.cmd.ready.eq(~walk.active & ~seq.busy),
            seq.cmd.valid.eq(self.cmd.valid & self.cmd.ready),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += self.error.eq(Resp.OKAY)
        with m.Elif(beat & walk.active & (axi.rresp != Resp.OKAY) & (self.error == Resp.OKAY)):
            m.d.sync += self.error.eq(axi.rresp)
        return m
