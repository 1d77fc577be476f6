"""DMA from an on-chip buffer to DRAM: 2-D strided, INCR bursts on an AXI4 write channel."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, fifo, memory
from amaranth.lib.wiring import In

from hw.axi import CACHE, PROT, Burst, Resp, axi4_write
from hw.dma_reader import BufferWalk, DmaDirection
from hw.params import check_int

__all__ = ["DmaWriter", "store_layout"]


def store_layout(addr_width, dim_bits, buf_addr_width):
    """A store: buffer words from ``src`` (row starts ``src_stride`` words apart) to the 2-D DRAM
    transfer of :func:`hw.burst_sequencer.transfer_layout`."""
    return data.StructLayout({"addr": unsigned(addr_width), "row_beats": unsigned(dim_bits),
                              "rows": unsigned(dim_bits), "stride": unsigned(addr_width),
                              "src": unsigned(buf_addr_width), "src_stride": unsigned(buf_addr_width)})


class DmaWriter(DmaDirection):
    """Reads buffer words and writes them to DRAM, one beat per word, all byte lanes enabled.

    The buffer is read into a small FIFO (``fifo_depth`` words) whenever it has room; bursts come
    from a :class:`BurstSequencer`: an address goes out on aw when the burst-length queue has room
    and fewer than ``outstanding`` bursts await their response; w takes the FIFO's words,
    ``wlast`` on each burst's last beat. The command is done when every response has come back.

    Parameters
    ----------
    addr_width, data_width, buf_addr_width, max_beats, outstanding, dim_bits :
        As :class:`hw.dma_reader.DmaReader`.
    fifo_depth : int
        Words read ahead of the w channel (2..64).

    Members
    -------
    cmd : In(stream.Signature(store_layout(...))): accepted while idle.
    axi : Out(hw.axi.axi4_write(addr_width, data_width)): ID 0, INCR, full strobes.
    rd : In(memory.ReadPort.Signature(addr_width=buf_addr_width, shape=data_width)), latency 1.
    rd_ready : In(1), high by default: the buffer serves a read this cycle (low: ``rd.en`` stays
        low and the word is read on a later cycle; the w channel goes on with the FIFO's words).
    busy : Out(1): from the cycle after the command until its last write response.
    error : Out(2): the first non-OKAY ``bresp`` of the current command, held until the next.

    Throughput one beat per cycle while the subordinate keeps up and ``rd_ready`` is high.
    """

    def __init__(self, addr_width=49, data_width=128, buf_addr_width=16, max_beats=16, outstanding=8,
                 dim_bits=16, fifo_depth=4):
        self._fd = check_int("FIFO depth", fifo_depth, 2, 64)
        super().__init__(addr_width, data_width, buf_addr_width, max_beats, outstanding, dim_bits,
                         store_layout(addr_width, dim_bits, buf_addr_width), axi4_write, "rd",
                         memory.ReadPort.Signature(addr_width=buf_addr_width, shape=data_width),
                         {"rd_ready": In(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq = seq = self._seq
        m.submodules.words = words = fifo.SyncFIFO(width=self._dw, depth=self._fd)
        m.submodules.lens = lens = fifo.SyncFIFO(width=9, depth=self._out)
        axi, c = self.axi, self.cmd.payload
        accept = self.cmd.valid & self.cmd.ready

        # Buffer side: read a word whenever the FIFO will have room for it next cycle and the
        # buffer serves the read (``rd_ready``; else the walk waits and reads it again).
        pending = Signal()  # a read issued last cycle, its word arriving now
        room = (words.level + pending < self._fd) & self.rd_ready
        walk = BufferWalk(m, "src", self._bw, self._db, accept, c.src, c.src_stride, c.row_beats, c.rows,
                          step=room)
        read = walk.active & room
        m.d.sync += pending.eq(read)
        m.d.comb += [self.rd.addr.eq(walk.addr), self.rd.en.eq(read),
                     words.w_data.eq(self.rd.data), words.w_en.eq(pending)]

        # Address side: a burst goes out when its length can be queued for w and fewer than
        # `outstanding` bursts await their response.
        waiting = Signal(range(self._out + 1))  # bursts sent on aw, response not yet received
        issue = seq.burst.valid & lens.w_rdy & (waiting < self._out)
        m.d.comb += [
            seq.cmd.payload.addr.eq(c.addr), seq.cmd.payload.row_beats.eq(c.row_beats),
            seq.cmd.payload.rows.eq(c.rows), seq.cmd.payload.stride.eq(c.stride),
            seq.cmd.valid.eq(accept),
            axi.awaddr.eq(seq.burst.payload.addr), axi.awlen.eq(seq.burst.payload.beats - 1),
            axi.awsize.eq(self._dw.bit_length() - 4), axi.awburst.eq(Burst.INCR),
            axi.awcache.eq(CACHE), axi.awprot.eq(PROT), axi.awvalid.eq(issue),
            seq.burst.ready.eq(axi.awready & lens.w_rdy & (waiting < self._out)),
            lens.w_data.eq(seq.burst.payload.beats), lens.w_en.eq(axi.awvalid & axi.awready),
        ]
        m.d.sync += waiting.eq(waiting + (axi.awvalid & axi.awready) - (axi.bvalid & axi.bready))

        # Data side: the FIFO's words, wlast on the queued burst's last beat.
        beat = Signal(9)
        last = beat + 1 == lens.r_data
        m.d.comb += [
            axi.wdata.eq(words.r_data), axi.wstrb.eq((1 << (self._dw // 8)) - 1), axi.wlast.eq(last),
            axi.wvalid.eq(words.r_rdy & lens.r_rdy),
            words.r_en.eq(axi.wvalid & axi.wready),
            lens.r_en.eq(axi.wvalid & axi.wready & last),
        ]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(last):
                m.d.sync += beat.eq(0)

        # Responses: the command is done when the sequencer is empty and none is awaited.
        m.d.comb += axi.bready.eq(1)
        with m.If(accept):
            m.d.sync += self.error.eq(Resp.OKAY)
        with m.Elif(axi.bvalid & (axi.bresp != Resp.OKAY) & (self.error == Resp.OKAY)):
            m.d.sync += self.error.eq(axi.bresp)
        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        with m.If(accept):
            m.d.sync += busy.eq((c.rows != 0) & (c.row_beats != 0))
        with m.Elif(~seq.busy & ~walk.active & ~pending & (waiting == 0) & ~lens.r_rdy):
            m.d.sync += busy.eq(0)
        m.d.comb += self.cmd.ready.eq(~busy)
        return m
