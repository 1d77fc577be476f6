"""cocotb testbench of the accelerator top's faults and registers (two tiny cores): small
hand-written programs (``hw.isa.encode``) run through ``runtime.sim_backend.SimBackend``; each
fault must set STATUS.ERROR, raise the interrupt and leave the accelerator ready for the next
run, never hang; so do a wait that nothing signals (DEADLOCK) and a token counter past its maximum
(TOKEN_OVERFLOW), an instruction that names a core the array lacks, a LOAD or STORE on another
DMA engine than its buffer's (PORT), a LOAD or STORE against its buffer's direction (DIRECTION),
a COMPUTE that asks a port of a half of buffer B twice in a cycle (B_PORTS).
Then a LOAD -> STORE round trip of buffer B through the width adapter (the STORE waits for the
LOAD's token).

Environment: TRIO_CONFIG (configuration JSON).
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from hw.accelerator import Accelerator, silenced
from hw.command import Command, Op
from hw.config import AcceleratorConfig
from hw.core_slice import MEMORIES
from hw.isa import INSTRUCTION_BITS, TOKEN_BITS, Buffer, Opcode, Token, dma_port, encode
from hw.registers import BY_NAME, REGIONS, Control, ErrorCode, Irq, Status
from runtime.sim_backend import SimBackend

DRAM = 1 << 22
HOLE = (DRAM - 4096, DRAM)
PROGRAM, DATA = 0x1000, 0x10000
SIZE = INSTRUCTION_BITS // 8


class Host:
    def __init__(self, be, addr_bits, ports):
        self.be, self.ab, self.ports = be, addr_bits, ports

    async def reg(self, name, value=None):
        off = BY_NAME[name].offset
        if value is None:
            return await self.be.read_reg(off)
        await self.be.write_reg(off, value)

    async def run(self, instructions, program_base=PROGRAM, length=None):
        """Write the program, run it; returns (STATUS.ERROR, retired instructions)."""
        await self.be.write_mem(program_base, b"".join(instructions))
        await self.reg("PROGRAM_BASE_LO", program_base)
        await self.reg("PROGRAM_LENGTH", len(instructions) if length is None else length)
        await self.reg("IRQ_STATUS", 3)
        await self.reg("CONTROL", Control.START)
        await self.be.wait_irq()
        status = await self.reg("STATUS")
        assert status & Status.DONE and not status & Status.BUSY, hex(status)
        irq = await self.reg("IRQ_STATUS")
        code = status >> Status.ERROR_SHIFT
        assert irq == (Irq.DONE | (Irq.ERROR if code else 0)), (irq, code)
        await self.reg("IRQ_STATUS", 3)
        return code, await self.reg("TRACE_COUNT")

    def op(self, opcode, **fields):
        """An instruction; a LOAD or STORE on its buffer's engine unless ``port`` is given."""
        if opcode in (Opcode.LOAD, Opcode.STORE) and "port" not in fields:
            fields["port"] = dma_port(fields.get("buffer", 0), fields.get("core", 0), self.ports)
        return encode(opcode, self.ab, **fields)


@cocotb.test()
async def faults_and_round_trip(dut):
    cfg = AcceleratorConfig.from_json(os.environ["TRIO_CONFIG"])
    acc = silenced(Accelerator(cfg))
    Clock(dut.clk, 5, unit="ns").start()
    dut.rst.value = 1
    be = SimBackend(dut, DRAM, hole=HOLE, timeout_ns=2_000_000)
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    h = Host(be, acc.addr_bits, cfg.axi_ports)
    for region in REGIONS:
        await h.reg(f"{region.upper()}_BASE_LO", DATA if region != "program" else PROGRAM)
    await h.reg("IRQ_ENABLE", Irq.DONE | Irq.ERROR)
    end = h.op(Opcode.END)

    # An instruction of zeros (opcode 0) is illegal.
    assert await h.run([bytes(SIZE)]) == (ErrorCode.ILLEGAL_OPCODE, 0)
    assert await h.run([h.op(Opcode.SYNC), bytes(SIZE)]) == (ErrorCode.ILLEGAL_OPCODE, 1)
    # A program without END.
    assert await h.run([h.op(Opcode.SYNC), h.op(Opcode.SYNC)]) == (ErrorCode.NO_END, 2)
    # The program in a hole of the address map.
    assert (await h.run([end], program_base=HOLE[0]))[0] == ErrorCode.FETCH_ERROR
    # Loads and stores against the hole.
    hole_off = HOLE[0] - DATA
    load = dict(region=REGIONS.index("weights"), buffer=Buffer.B, row_beats=4, rows=1)
    assert (await h.run([h.op(Opcode.LOAD, offset=hole_off, **load), end]))[0] == ErrorCode.LOAD_SLVERR
    assert (await h.run([h.op(Opcode.STORE, offset=hole_off, **load), end]))[0] == ErrorCode.STORE_SLVERR
    # Buffer addresses past a buffer's depth.
    for mem in MEMORIES:
        depth, dirs = acc.memory_depths[mem], Buffer.of(mem).directions
        if Opcode.LOAD in dirs:
            bad = h.op(Opcode.LOAD, region=1, buffer=Buffer.of(mem), offset=0,
                       row_beats=2 * acc.word_beats[mem], rows=1, buf_addr=depth - 1)
            assert (await h.run([bad, end]))[0] == ErrorCode.ADDRESS_RANGE, mem
        if Opcode.STORE in dirs:
            bad = h.op(Opcode.STORE, region=3, buffer=Buffer.of(mem), offset=0,
                       row_beats=acc.word_beats[mem], rows=1, buf_addr=depth)
            assert (await h.run([bad, end]))[0] == ErrorCode.ADDRESS_RANGE, mem
    # A core the array lacks: LOAD/STORE of its pixel group of B, a COMPUTE naming it or leaving out core 0.
    for op in (Opcode.LOAD, Opcode.STORE):
        bad = h.op(op, region=1, buffer=Buffer.B, offset=0, row_beats=1, rows=1, core=cfg.cores)
        assert (await h.run([bad, end]))[0] == ErrorCode.ADDRESS_RANGE, op.name
    # A transfer on another engine than its buffer's, or on an engine the configuration lacks.
    for port in (p for p in range(4) if p != dma_port(Buffer.B, 0, cfg.axi_ports)):
        for op in (Opcode.LOAD, Opcode.STORE):
            bad = h.op(op, region=1, buffer=Buffer.B, offset=0, row_beats=1, rows=1, port=port)
            assert (await h.run([bad, end]))[0] == ErrorCode.PORT, (op.name, port)
    # A transfer against its buffer's direction (hw.isa.DIRECTIONS): no LOAD into the output
    # buffer, no STORE from the weights or parameters.
    for mem in MEMORIES:
        for op in (Opcode.LOAD, Opcode.STORE):
            if op not in Buffer.of(mem).directions:
                bad = h.op(op, region=1, buffer=Buffer.of(mem), offset=0, row_beats=acc.word_beats[mem],
                           rows=1)
                assert (await h.run([bad, end]))[0] == ErrorCode.DIRECTION, (op.name, mem)
    for mask in (1 << cfg.cores, 2):
        assert (await h.run([h.op(Opcode.COMPUTE, cores=mask), end]))[0] == ErrorCode.CORE_MASK, mask
    # An add whose sum goes into its addends' half of B: port B takes engine 1's read and the
    # write in one cycle, one is dropped (in the other half, the same add runs clean).
    for out_base, code in ((32, ErrorCode.B_PORTS), (acc.memory_depths["b"] // 2, ErrorCode.NONE)):
        add = Command(op=Op.ADD, in_base=0, in2_base=16, out_base=out_base, in_h=4, in_w=4, in_cw=1, out_w=4,
                      out_cw=1, pixels=16)
        run = [h.op(Opcode.COMPUTE, cores=1, command=add.value(acc.addr_bits)), end]
        assert (await h.run(run))[0] == code, out_base
    # A wait that nothing signals; a token counter past its maximum.
    lonely = h.op(Opcode.STORE, region=3, buffer=Buffer.B, offset=0, row_beats=1, rows=1,
                  wait=Token.COMPUTE_TO_STORE)
    assert (await h.run([lonely, end]))[0] == ErrorCode.DEADLOCK
    many = [h.op(Opcode.LOAD, region=1, buffer=Buffer.B, offset=0, row_beats=1, rows=1,
                 signal=Token.LOAD_TO_COMPUTE)] * (1 << TOKEN_BITS)
    assert (await h.run(many + [end]))[0] == ErrorCode.TOKEN_OVERFLOW
    # ... and a clean run afterwards.
    assert await h.run([h.op(Opcode.SYNC), end]) == (0, 2)

    # Buffer B (the one both loaded and stored): random words in, 2-D out to another place,
    # compared (the width adapter); B of the last core, which core 0's B does not see. The
    # weights, parameters and outputs go one way only: the network runs check their words.
    rng = random.Random(1)
    beat = cfg.axi_bits // 8
    both = [mem for mem in MEMORIES if len(Buffer.of(mem).directions) == 2]
    for k, mem in enumerate(both):
        wbeats, width = acc.word_beats[mem], acc.shapes[mem].size
        words = 24
        data = b"".join((rng.getrandbits(width)).to_bytes(wbeats * beat, "little") for _ in range(words))
        src = 0x2000 * (k + 1)
        await be.write_mem(DATA + src, data)
        dst = 0x40000 + 0x8000 * k
        core = cfg.cores - 1 if mem == "b" else 0
        prog = [h.op(Opcode.LOAD, region=1, buffer=Buffer.of(mem), offset=src, row_beats=words * wbeats,
                     rows=1, buf_addr=5, signal=Token.LOAD_TO_STORE, core=core),
                h.op(Opcode.STORE, region=3, buffer=Buffer.of(mem), offset=dst, row_beats=6 * wbeats,
                     rows=4, wait=Token.LOAD_TO_STORE,
                     stride=7 * wbeats * beat, buf_addr=5, buf_stride=6, core=core),
                end]
        assert await h.run(prog) == (0, 3), mem
        if core:
            other = h.op(Opcode.STORE, region=3, buffer=Buffer.B, offset=dst + 0x4000,
                         row_beats=words * wbeats, rows=1, buf_addr=5)
            assert await h.run([other, end]) == (0, 2)
            seen = await be.read_mem(DATA + dst + 0x4000, len(data))
            assert seen != data, "core 0's B holds the last core's words"
        for r in range(4):
            got = await be.read_mem(DATA + dst + r * 7 * wbeats * beat, 6 * wbeats * beat)
            want = data[r * 6 * wbeats * beat:(r + 1) * 6 * wbeats * beat]
            assert got == want, f"buffer {mem}, row {r}"

    # SOFT_RESET clears the status.
    await h.reg("CONTROL", Control.SOFT_RESET)
    assert await h.reg("STATUS") == 0
