"""The INCR bursts of a 2-D DRAM transfer, one per cycle, none crossing a 4 KiB boundary."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import BOUNDARY, MAX_BURST
from hw.params import check_int

__all__ = ["BurstSequencer", "transfer_layout"]


def transfer_layout(addr_width, dim_bits):
    """A 2-D DRAM transfer: ``rows`` rows of ``row_beats`` beats from byte ``addr``, row starts
    ``stride`` bytes apart (``addr`` and ``stride`` multiples of the beat's bytes)."""
    return data.StructLayout({"addr": unsigned(addr_width), "row_beats": unsigned(dim_bits),
                              "rows": unsigned(dim_bits), "stride": unsigned(addr_width)})


class BurstSequencer(wiring.Component):
    """Splits a 2-D transfer into INCR bursts of at most ``max_beats`` beats that never cross a
    4 KiB boundary (the reference is :func:`hw.axi.bursts`, which this matches burst for burst).

    Parameters
    ----------
    addr_width : int
        Byte address width (12..64).
    beat_bytes : int
        Bytes per beat, a power of two (4..128).
    max_beats : int
        Longest burst (1..256; 16 is what the ZCU102's HP ports take without splitting).
    dim_bits : int
        Width of the row and beat counts (1..24).

    Members
    -------
    cmd : In(stream.Signature(transfer_layout(addr_width, dim_bits))): accepted while idle; a
        transfer with zero rows or zero beats per row yields no bursts.
    burst : Out(stream.Signature(StructLayout({"addr": addr_width, "beats": 9, "last": 1}))):
        ``beats`` 1..max_beats (AXI's ``len`` is beats - 1); ``last`` marks the transfer's last.
    busy : Out(1): bursts remain.

    Latency: the first burst is valid the cycle after the command; one burst per cycle after.
    """

    def __init__(self, addr_width=32, beat_bytes=16, max_beats=16, dim_bits=16):
        check_int("Address width", addr_width, 12, 64)
        if beat_bytes not in (4, 8, 16, 32, 64, 128):
            raise ValueError(f"Beat size must be a power of two from 4 to 128 bytes, not {beat_bytes!r}")
        check_int("Burst length", max_beats, 1, MAX_BURST)
        check_int("Count width", dim_bits, 1, 24)
        self._aw, self._bb, self._mb, self._db = addr_width, beat_bytes, max_beats, dim_bits
        super().__init__({
            "cmd": In(stream.Signature(transfer_layout(addr_width, dim_bits))),
            "burst": Out(stream.Signature(data.StructLayout({
                "addr": unsigned(addr_width), "beats": unsigned(9), "last": unsigned(1)}))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        shift = self._bb.bit_length() - 1
        row_addr = Signal(self._aw)
        addr = Signal(self._aw)
        left = Signal(self._db)  # beats left in this row
        row_beats = Signal(self._db)
        rows_left = Signal(self._db)  # rows after this one
        stride = Signal(self._aw)
        active = Signal()

        page = BOUNDARY.bit_length() - 1
        to_boundary = Signal(range(BOUNDARY // self._bb + 1))
        m.d.comb += to_boundary.eq((BOUNDARY - addr[:page]) >> shift)
        n = Signal(range(max(self._mb, 2) + 1))
        cap = Mux(to_boundary < self._mb, to_boundary, self._mb)
        m.d.comb += n.eq(Mux(left < cap, left, cap))
        row_end = left == n
        last = row_end & (rows_left == 0)

        m.d.comb += [
            self.busy.eq(active),
            self.cmd.ready.eq(~active),
            self.burst.valid.eq(active),
            self.burst.payload.addr.eq(addr),
            self.burst.payload.beats.eq(n),
            self.burst.payload.last.eq(last),
        ]
        c = self.cmd.payload
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [row_addr.eq(c.addr), addr.eq(c.addr), left.eq(c.row_beats),
                         row_beats.eq(c.row_beats), rows_left.eq(c.rows - 1), stride.eq(c.stride),
                         active.eq((c.rows != 0) & (c.row_beats != 0))]
        with m.If(self.burst.valid & self.burst.ready):
            with m.If(last):
                m.d.sync += active.eq(0)
            with m.Elif(row_end):
                m.d.sync += [row_addr.eq(row_addr + stride), addr.eq(row_addr + stride),
                             left.eq(row_beats), rows_left.eq(rows_left - 1)]
            with m.Else():
                m.d.sync += [addr.eq(addr + (n << shift)), left.eq(left - n)]
        return m
