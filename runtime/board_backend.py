"""The runtime's board backend: the accelerator on a ZCU102 (``python -m gen``'s bitstream), its
registers through a memory-mapped window of the AXI4-Lite slave, DRAM through a physically
contiguous buffer that the DMA reads and writes.

Two ways to reach them, chosen by :func:`open_board`:

- **PYNQ** (the ``pynq`` package present): ``pynq.Overlay`` loads ``trio_vit.bit`` (with its
  ``.hwh``), ``pynq.MMIO`` maps the registers, ``pynq.allocate`` gives the buffer
  (``physical_address``, ``flush``, ``invalidate``);
- **/dev/mem + u-dma-buf** (no PYNQ, the bitstream already loaded): ``mmap`` of ``/dev/mem`` at
  the register base, and of a u-dma-buf device (``/dev/udmabuf0``; its physical address and size
  from ``/sys/class/u-dma-buf/udmabuf0/``), opened ``O_SYNC`` so the CPU's accesses are uncached.

Either way the runtime (``runtime.runtime.Runtime``) runs the same code as in simulation
(``runtime.sim_backend``): the same register map, the same writes and reads. The interrupt is seen
by polling IRQ_STATUS (one 32-bit read per poll), which needs no kernel driver.
"""

import asyncio
import mmap
import os
import struct
import time
from pathlib import Path

from hw.registers import BY_NAME, Irq
from runtime.runtime import RunError

__all__ = ["BoardBackend", "MappedRegisters", "UdmaBuffer", "open_board", "REGISTER_WINDOW"]

REGISTER_WINDOW = 4096  # bytes of the register map (hw.registers.ADDR_BITS = 12)


class MappedRegisters:
    """32-bit registers in an ``mmap`` of ``path`` (``/dev/mem``) at byte ``base``: ``read(off)``,
    ``write(off, value)``."""

    def __init__(self, path, base, size=REGISTER_WINDOW):
        if base % mmap.PAGESIZE:
            raise RunError(f"register base {base:#x} is not page-aligned")
        fd = os.open(path, os.O_RDWR | os.O_SYNC)
        try:
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
        finally:
            os.close(fd)

    def read(self, off):
        return struct.unpack_from("<I", self._map, off)[0]

    def write(self, off, value):
        struct.pack_into("<I", self._map, off, value & 0xFFFF_FFFF)


class UdmaBuffer:
    """A u-dma-buf buffer: ``physical_address``, ``size``, ``data`` (a writable memoryview),
    ``flush()``/``invalidate()`` (no-ops: the device is opened ``O_SYNC``, uncached)."""

    def __init__(self, device="udmabuf0", dev_dir="/dev", sys_dir="/sys/class/u-dma-buf"):
        info = Path(sys_dir) / device
        try:
            self.physical_address = int((info / "phys_addr").read_text().strip(), 16)
            self.size = int((info / "size").read_text().strip())
        except (OSError, ValueError) as e:
            raise RunError(f"u-dma-buf {device}: cannot read {info}/phys_addr and size ({e}); "
                           f"is the u-dma-buf module loaded?") from None
        fd = os.open(Path(dev_dir) / device, os.O_RDWR | os.O_SYNC)
        try:
            self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.data = memoryview(self._map)

    def flush(self):
        pass

    def invalidate(self):
        pass


class BoardBackend:
    """The runtime's backend on the board. ``regs``: an object with ``read(offset)`` and
    ``write(offset, value)`` (32-bit; ``pynq.MMIO`` or :class:`MappedRegisters`); ``buffer``: a
    physically contiguous buffer with ``physical_address``, ``flush()``, ``invalidate()`` and its
    bytes as ``data`` (a memoryview: :class:`UdmaBuffer`'s, or a ``pynq`` buffer's, a numpy array
    of uint8).
    ``dram_base``/``dram_size`` are the buffer's; ``timeout_s``: how long ``wait_irq`` polls."""

    def __init__(self, regs, buffer, timeout_s=10.0, poll_s=1e-4):
        self.regs, self.buffer = regs, buffer
        self.bytes = memoryview(buffer.data).cast("B")
        self.dram_base, self.dram_size = int(buffer.physical_address), len(self.bytes)
        self.timeout_s, self.poll_s = timeout_s, poll_s

    def _span(self, addr, n):
        off = addr - self.dram_base
        if off < 0 or off + n > self.dram_size:
            raise RunError(f"DRAM access [{addr:#x}, {addr + n:#x}) outside the buffer "
                           f"[{self.dram_base:#x}, {self.dram_base + self.dram_size:#x})")
        return off

    async def write_mem(self, addr, data):
        off = self._span(addr, len(data))
        self.bytes[off:off + len(data)] = bytes(data)
        self.buffer.flush()  # the accelerator reads DRAM, not the CPU's caches

    async def read_mem(self, addr, n):
        off = self._span(addr, n)
        self.buffer.invalidate()  # see what the accelerator wrote
        return bytes(self.bytes[off:off + n])

    async def write_reg(self, offset, value):
        self.regs.write(offset, int(value))

    async def read_reg(self, offset):
        return int(self.regs.read(offset))

    async def wait_irq(self):
        """Until IRQ_STATUS shows DONE or ERROR (what raises the interrupt line)."""
        off, t0 = BY_NAME["IRQ_STATUS"].offset, time.monotonic()
        while not self.regs.read(off) & (Irq.DONE | Irq.ERROR):
            if time.monotonic() - t0 > self.timeout_s:
                raise RunError(f"no interrupt within {self.timeout_s:g} s (IRQ_STATUS "
                               f"{self.regs.read(off):#x}); is the bitstream loaded?")
            await asyncio.sleep(self.poll_s)


def open_board(bitfile=None, register_base=None, dram_bytes=1 << 28, udmabuf="udmabuf0", timeout_s=10.0):
    """A :class:`BoardBackend`: through PYNQ when it is installed (loading ``bitfile``, whose
    ``.hwh`` must sit beside it), else through ``/dev/mem`` at ``register_base`` and the u-dma-buf
    device ``udmabuf`` (the bitstream already loaded). Errors are one-line ``RunError`` s."""
    from gen.vivado import REGISTER_BASE

    base = REGISTER_BASE if register_base is None else register_base
    try:
        import numpy as np
        import pynq
    except ImportError:
        pynq = None
    if pynq is not None:
        if bitfile is None:
            raise RunError("with PYNQ, give the bitstream (--bitfile trio_vit.bit, its .hwh beside it)")
        if not Path(bitfile).is_file() or not Path(bitfile).with_suffix(".hwh").is_file():
            raise RunError(f"{bitfile}: the bitstream or its .hwh is missing")
        overlay = pynq.Overlay(str(bitfile))
        regs = pynq.MMIO(base, REGISTER_WINDOW)
        buf = pynq.allocate(shape=(dram_bytes,), dtype=np.uint8)
        backend = BoardBackend(regs, buf, timeout_s)
        backend.overlay = overlay
        return backend
    if not os.path.exists("/dev/mem"):
        raise RunError("neither PYNQ nor /dev/mem: run this on the board")
    try:
        regs = MappedRegisters("/dev/mem", base)
    except (OSError, ValueError) as e:
        raise RunError(f"cannot map the registers at {base:#x} through /dev/mem ({e}); "
                       f"run this on the board, as root") from None
    try:
        buf = UdmaBuffer(udmabuf)
    except OSError as e:
        raise RunError(f"cannot open the u-dma-buf device /dev/{udmabuf} ({e})") from None
    return BoardBackend(regs, buf, timeout_s)
