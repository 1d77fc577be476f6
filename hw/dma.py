"""One DMA engine: a reader and a writer sharing one AXI4 manager port."""

from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import axi4, axi4_read, axi4_write
from hw.dma_reader import DmaReader, load_layout
from hw.dma_writer import DmaWriter, store_layout

__all__ = ["Dma"]


class Dma(wiring.Component):
    """A :class:`DmaReader` on the port's read channels and a :class:`DmaWriter` on its write
    channels; loads and stores run at the same time (AXI's read and write channels are
    independent). One per AXI4 manager port of the accelerator (``AcceleratorConfig.axi_ports``).

    Parameters
    ----------
    As :class:`hw.dma_reader.DmaReader` (``fifo_depth`` goes to the writer).

    Members
    -------
    load : In(stream.Signature(load_layout(...))), store : In(stream.Signature(store_layout(...)))
    axi : Out(hw.axi.axi4(addr_width, data_width))
    wr : the reader's buffer write port; rd : the writer's buffer read port (latency 1).
    wr_ready : In(1), high by default: the reader's ``wr_ready`` (the buffer takes a write).
    rd_ready : In(1), high by default: the writer's ``rd_ready`` (the buffer serves a read).
    load_busy, store_busy : Out(1); load_error, store_error : Out(2) (``hw.axi.Resp``).

    Latency and throughput: those of the reader and the writer, one beat per cycle each way.
    """

    def __init__(self, addr_width=49, data_width=128, buf_addr_width=16, max_beats=16, outstanding=8,
                 dim_bits=16, fifo_depth=4):
        self._reader = DmaReader(addr_width, data_width, buf_addr_width, max_beats, outstanding, dim_bits)
        self._writer = DmaWriter(addr_width, data_width, buf_addr_width, max_beats, outstanding, dim_bits,
                                 fifo_depth)
        super().__init__({
            "load": In(stream.Signature(load_layout(addr_width, dim_bits, buf_addr_width))),
            "store": In(stream.Signature(store_layout(addr_width, dim_bits, buf_addr_width))),
            "axi": Out(axi4(addr_width, data_width)),
            "wr": In(memory.WritePort.Signature(addr_width=buf_addr_width, shape=data_width)),
            "wr_ready": In(1, init=1),
            "rd": In(memory.ReadPort.Signature(addr_width=buf_addr_width, shape=data_width)),
            "rd_ready": In(1, init=1),
            "load_busy": Out(1), "store_busy": Out(1), "load_error": Out(2), "store_error": Out(2),
        })
        self._halves = (axi4_read(addr_width, data_width), axi4_write(addr_width, data_width))

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self._reader
        m.submodules.writer = writer = self._writer
        wiring.connect(m, wiring.flipped(self.load), reader.cmd)
        wiring.connect(m, wiring.flipped(self.store), writer.cmd)
        wiring.connect(m, reader.wr, wiring.flipped(self.wr))
        m.d.comb += reader.wr_ready.eq(self.wr_ready)
        wiring.connect(m, writer.rd, wiring.flipped(self.rd))
        m.d.comb += writer.rd_ready.eq(self.rd_ready)
        for half, port in zip(self._halves, (reader.axi, writer.axi), strict=True):
            for name, member in half.members.items():
                outer, inner = getattr(self.axi, name), getattr(port, name)
                m.d.comb += (outer.eq(inner) if member.flow == Out else inner.eq(outer))
        m.d.comb += [self.load_busy.eq(reader.busy), self.store_busy.eq(writer.busy),
                     self.load_error.eq(reader.error), self.store_error.eq(writer.error)]
        return m
