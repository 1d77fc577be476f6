"""AXI4 and AXI4-Lite, defined once (AMBA AXI and ACE Protocol Specification, ARM IHI 0022).

Amaranth has no maintained AXI library, so the interfaces are ``wiring.Signature`` objects built
here and read by every AXI port of the accelerator (DMA masters, the register slave), the
testbenches (cocotbext-axi binds to the emitted port names) and the Vivado hand-off.

Signatures are seen from the **manager** (master): ``Out`` members are driven by the manager,
``In`` members by the subordinate; a subordinate port is ``In(axi4_lite(...))``. Member names
are the specification's signal names in lower case (``awaddr``, ``rready``, ...), so a port
``m_axi0`` emits Verilog ports ``m_axi0__awaddr`` and so on; cocotbext-axi finds them with the
prefix ``"m_axi0_"``.

Only what the accelerator uses is modelled: one ID value per manager (responses in order), INCR
bursts, no exclusive access (``lock`` 0), no user signals. ``cache``/``prot``/``qos`` are driven
with the constants below.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_int

__all__ = ["axi4", "axi4_read", "axi4_write", "axi4_lite", "Resp", "Burst", "BOUNDARY", "MAX_BURST",
           "CACHE", "PROT", "burst_beats", "bursts"]

BOUNDARY = 4096  # no burst may cross a 4 KiB address boundary (A3.4.1)
MAX_BURST = 256  # INCR bursts take at most 256 beats (AXI4)
CACHE = 0b0011  # normal non-cacheable bufferable: what the PS's HP ports expect of a PL master
PROT = 0b000  # unprivileged, secure, data


class Resp:
    """``bresp``/``rresp`` codes."""
    OKAY, EXOKAY, SLVERR, DECERR = 0, 1, 2, 3
    NAMES = {0: "OKAY", 1: "EXOKAY", 2: "SLVERR", 3: "DECERR"}


class Burst:
    """``awburst``/``arburst`` codes (the accelerator issues INCR only)."""
    FIXED, INCR, WRAP = 0, 1, 2


def axi4_lite(addr_width=32, data_width=32):
    """AXI4-Lite: write address (aw), write data (w), write response (b), read address (ar),
    read data (r); ``data_width`` 32 or 64."""
    check_int("AXI4-Lite address width", addr_width, 4, 64)
    if data_width not in (32, 64):
        raise ValueError(f"AXI4-Lite data width must be 32 or 64, not {data_width!r}")
    return wiring.Signature({
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def _check_axi4(addr_width, data_width, id_width):
    check_int("AXI4 address width", addr_width, 12, 64)
    if data_width not in (32, 64, 128, 256, 512, 1024):
        raise ValueError(f"AXI4 data width must be a power of two from 32 to 1024, not {data_width!r}")
    check_int("AXI4 ID width", id_width, 1, 16)


def _address_channel(ch, addr_width, id_width):
    return {f"{ch}id": Out(id_width), f"{ch}addr": Out(addr_width), f"{ch}len": Out(8),
            f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}lock": Out(1), f"{ch}cache": Out(4),
            f"{ch}prot": Out(3), f"{ch}qos": Out(4), f"{ch}valid": Out(1), f"{ch}ready": In(1)}


def axi4_read(addr_width=49, data_width=128, id_width=1):
    """The read half of :func:`axi4`: channels ar and r."""
    _check_axi4(addr_width, data_width, id_width)
    return wiring.Signature({
        **_address_channel("ar", addr_width, id_width),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })


def axi4_write(addr_width=49, data_width=128, id_width=1):
    """The write half of :func:`axi4`: channels aw, w and b."""
    _check_axi4(addr_width, data_width, id_width)
    return wiring.Signature({
        **_address_channel("aw", addr_width, id_width),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1), "wvalid": Out(1),
        "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    })


def axi4(addr_width=49, data_width=128, id_width=1):
    """AXI4 with bursts: the aw/ar channels carry id, len (beats - 1), size (log2 bytes per beat),
    burst, lock, cache, prot, qos; w carries last, r and b carry id. ``data_width`` 32..1024.
    Its members are those of :func:`axi4_write` and :func:`axi4_read` together."""
    return wiring.Signature({**axi4_write(addr_width, data_width, id_width).members,
                             **axi4_read(addr_width, data_width, id_width).members})


def burst_beats(addr, remaining, beat_bytes, max_beats):
    """Beats of the next INCR burst at byte ``addr`` with ``remaining`` beats to go: at most
    ``max_beats``, never past the next 4 KiB boundary. The RTL (``hw.burst_sequencer``) computes
    the same; this is its reference."""
    to_boundary = (BOUNDARY - addr % BOUNDARY) // beat_bytes
    return min(remaining, max_beats, to_boundary)


def bursts(addr, row_beats, rows, stride, beat_bytes, max_beats):
    """Every (byte address, beats) burst of a 2-D transfer: ``rows`` rows of ``row_beats`` beats,
    row starts ``stride`` bytes apart."""
    out = []
    for r in range(rows):
        a, left = addr + r * stride, row_beats
        while left:
            n = burst_beats(a, left, beat_bytes, max_beats)
            out.append((a, n))
            a, left = a + n * beat_bytes, left - n
    return out

