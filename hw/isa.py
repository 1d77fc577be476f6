"""The instruction set, defined once: the controller's decoder, the compiler, the performance model
and ``docs/isa.md`` (``python -m gen.docs``) read these layouts.

A program is a sequence of fixed-size instructions of ``INSTRUCTION_BITS`` (128 bytes: eight
beats of a 128-bit AXI port), little-endian, fetched from the program region. Every instruction
starts with the same 64-bit header; its body depends on the opcode. Opcode 0 is illegal, so a
program fetched from zeroed memory stops with ``ErrorCode.ILLEGAL_OPCODE`` instead of running.

**Dependency tokens** (as in VTA): a dispatcher fetches the instructions in program order and
hands each to one of three queues (``Queue``) — LOAD (DMA reads), COMPUTE (core commands),
STORE (DMA writes) — which run concurrently, each in its own program order. An instruction may
wait for tokens (``wait``) before it starts and raise tokens (``signal``) when it is done; a
token is a counter per direction (``Token``), so the k-th wait on a direction pairs with the k-th
signal on it, and a LOAD can run ahead of the COMPUTE that consumes it as far as the tokens
allow. A LOAD or STORE is done when its last beat is written or answered; a COMPUTE is done when
the core has taken it -- or, if it signals, when the core is idle after taking it. The compiler
puts every signal before the wait it pairs with in program order, so the queues cannot deadlock;
the controller still ends a run that waits with nothing able to move (``DEADLOCK``). ``SYNC`` is
a barrier: it waits until every queue is empty and idle. ``END`` does the same, then raises
STATUS.DONE and the interrupt.

**DMA engines.** The accelerator has one DMA engine per AXI port (``AcceleratorConfig.axi_ports``),
and every buffer memory belongs to one of them (``dma_port``: the weights to engine 0, the
parameters to 1, the output buffer to 2, the pixel group of B of core k to k mod ports). A LOAD or
STORE names its buffer's engine in ``port``; another engine ends the run with ``ErrorCode.PORT``.
The weights and parameters are only loaded and the int32 outputs only stored (``DIRECTIONS``); a
transfer the other way ends the run with ``ErrorCode.DIRECTION``.
Transfers start in program order, each when its engine is free, so up to one per engine run at
once, and retire in program order: a transfer's signal still means that every transfer before it
in its queue is done.
"""

import enum

from amaranth.hdl import unsigned
from amaranth.lib import data

from hw.command import command_layout

__all__ = ["Opcode", "Queue", "Token", "TOKEN_BITS", "Buffer", "DIRECTIONS", "INSTRUCTION_BITS", "HEADER",
           "body_layouts", "dma_port", "encode", "decode", "markdown"]

INSTRUCTION_BITS = 1024
DRAM_OFFSET_BITS = 40  # byte offset into a region (1 TiB)
BUF_ADDR_BITS = 24  # buffer word address in DMA instructions


class Opcode(enum.IntEnum):
    LOAD = 1  # DRAM region -> on-chip buffer, 2-D strided
    STORE = 2  # on-chip buffer -> DRAM region, 2-D strided
    COMPUTE = 3  # one core command (hw.command) on the cores of a mask
    SYNC = 4  # barrier: wait until every queue is empty and idle
    END = 5  # wait for every queue, then done


class Queue(enum.IntEnum):
    """The controller's instruction queues (each runs its instructions in program order)."""
    LOAD = 0
    COMPUTE = 1
    STORE = 2

    @classmethod
    def of(cls, opcode):
        """The queue that runs ``opcode`` (None: SYNC and END stay with the dispatcher)."""
        return {Opcode.LOAD: cls.LOAD, Opcode.COMPUTE: cls.COMPUTE, Opcode.STORE: cls.STORE}.get(opcode)


class Token(enum.IntFlag):
    """Bits of ``wait`` and ``signal``: the direction a token travels, from the queue that
    raises it to the queue that takes it. Each is a counter in the controller
    (``TOKEN_BITS`` wide): ``signal`` adds one when the instruction is done, ``wait`` takes one
    before the instruction starts (and holds it until there is one)."""
    LOAD_TO_COMPUTE = 1  # data loaded for a command
    COMPUTE_TO_LOAD = 2  # a command finished with a buffer region a load may overwrite
    COMPUTE_TO_STORE = 4  # results ready to store
    STORE_TO_COMPUTE = 8  # results stored; their buffer region may be overwritten
    LOAD_TO_STORE = 16  # a region loaded that a store reads (not emitted by this compiler)
    STORE_TO_LOAD = 32  # results stored; a load may overwrite their region

    @classmethod
    def between(cls, src, dst):
        """The token from queue ``src`` to queue ``dst``."""
        return cls[f"{Queue(src).name}_TO_{Queue(dst).name}"]

    @property
    def src(self):
        return Queue[self.name.split("_TO_")[0]]

    @property
    def dst(self):
        return Queue[self.name.split("_TO_")[1]]


TOKEN_BITS = 8  # a token counter saturates at 2**TOKEN_BITS - 1 (TOKEN_OVERFLOW beyond)


class Buffer(enum.IntEnum):
    """On-chip buffer a LOAD or STORE addresses (docs/architecture.md §3), in the order of
    ``hw.core_slice.MEMORIES``. A buffer word takes a power-of-two number of beats in DRAM
    (``hw.accelerator.word_beats``); LOAD/STORE sizes are in beats, buffer addresses in words."""
    B = 0  # activations
    W = 1  # weight chunks (buffer C)
    Q = 2  # requantization parameters (buffer C)
    OUT = 3  # int32 results (output buffer)

    @classmethod
    def of(cls, memory):
        """The buffer of a ``hw.core_slice.MEMORIES`` name."""
        return cls(("b", "w", "q", "o").index(memory))

    @property
    def directions(self):
        """The transfers the DMA makes on this buffer (``DIRECTIONS``)."""
        return DIRECTIONS[self]


# What the DMA may do to each buffer: B is loaded (inputs, spills read back) and stored (results);
# the weights and parameters are only loaded, the int32 outputs only stored. The buffers have a
# host write port only where they are loaded and a host read port only where they are stored
# (``hw.core_slice``), so that each keeps to the two ports of a block RAM where it can; a LOAD or
# STORE against its buffer's direction ends the run with ``ErrorCode.DIRECTION``.
DIRECTIONS = {Buffer.B: (Opcode.LOAD, Opcode.STORE), Buffer.W: (Opcode.LOAD,), Buffer.Q: (Opcode.LOAD,),
              Buffer.OUT: (Opcode.STORE,)}


def dma_port(buffer, core, ports):
    """The DMA engine (AXI port) that moves every word of ``buffer`` (of core ``core``'s pixel
    group for B) on an accelerator of ``ports`` engines: B of core k on engine k mod ports, the
    weights on engine 0, the parameters on 1 and the output buffer on 2 (mod ports). Each buffer
    memory is written and read by its engine alone, so the engines run at once without sharing a
    memory port; a LOAD or STORE whose ``port`` is another engine ends the run with
    ``ErrorCode.PORT``. Instruction fetches take engine 0."""
    buffer = Buffer(buffer)
    return (core if buffer == Buffer.B else buffer - 1) % ports


HEADER = data.StructLayout({
    "opcode": unsigned(8),
    "wait": unsigned(len(Token)),  # Token bits to take before starting
    "signal": unsigned(len(Token)),  # Token bits to give when done
    "index": unsigned(24),  # the instruction's position in the program (trace buffer, errors)
    "reserved": unsigned(32 - 2 * len(Token)),
})

_TRANSFER = {
    "region": unsigned(2),  # hw.registers.REGIONS index
    "buffer": unsigned(2),  # Buffer
    "port": unsigned(2),  # the DMA engine / AXI port: dma_port(buffer, core, AcceleratorConfig.axi_ports)
    "core": unsigned(6),  # buffer B: the core whose pixel group of B is addressed (< cores)
    "offset": unsigned(DRAM_OFFSET_BITS),  # bytes into the region, beat-aligned
    "row_beats": unsigned(16),
    "rows": unsigned(16),
    "stride": unsigned(32),  # bytes between row starts in DRAM
    "buf_addr": unsigned(BUF_ADDR_BITS),  # first buffer word
    "buf_stride": unsigned(BUF_ADDR_BITS),  # buffer words between row starts
}


def body_layouts(addr_bits):
    """The body of each opcode, for core commands with ``addr_bits``-bit buffer addresses."""
    return {
        Opcode.LOAD: data.StructLayout(_TRANSFER),
        Opcode.STORE: data.StructLayout(_TRANSFER),
        Opcode.COMPUTE: data.StructLayout({"cores": unsigned(64),  # bit k: core k runs it (bit 0 set)
                                           "command": command_layout(addr_bits)}),
        Opcode.SYNC: data.StructLayout({}),
        Opcode.END: data.StructLayout({}),
    }


def _check_fits(addr_bits):
    for op, layout in body_layouts(addr_bits).items():
        if HEADER.size + layout.size > INSTRUCTION_BITS:
            raise ValueError(f"{op.name} takes {HEADER.size + layout.size} bits with {addr_bits}-bit buffer "
                             f"addresses, more than an instruction's {INSTRUCTION_BITS}")


def _pack(layout, fields, what):
    value = 0
    unknown = set(fields) - {name for name, _ in layout}
    if unknown:
        raise ValueError(f"{what}: no field {sorted(unknown)[0]!r}")
    for name, field in layout:
        v = fields.get(name, 0)
        if isinstance(field.shape, data.StructLayout):
            v = _pack(field.shape, v, f"{what}.{name}") if isinstance(v, dict) else v
        v = int(v)
        if not 0 <= v < 1 << field.width:
            raise ValueError(f"{what}.{name} = {v} does not fit in {field.width} bits")
        value |= v << field.offset
    return value


def encode(opcode, addr_bits=16, index=0, wait=0, signal=0, **body):
    """One instruction as ``INSTRUCTION_BITS // 8`` little-endian bytes; ``body`` by field name
    (a COMPUTE's ``command`` may be a dict of ``hw.command`` fields or its packed integer)."""
    _check_fits(addr_bits)
    op = Opcode(opcode)
    header = _pack(HEADER, dict(opcode=op, wait=wait, signal=signal, index=index), op.name)
    word = header | _pack(body_layouts(addr_bits)[op], body, op.name) << HEADER.size
    return word.to_bytes(INSTRUCTION_BITS // 8, "little")


def decode(raw, addr_bits=16):
    """(Opcode, header fields, body fields) of one instruction's bytes; ValueError if illegal."""
    word = int.from_bytes(raw, "little")
    fields = {name: word >> f.offset & ((1 << f.width) - 1) for name, f in HEADER}
    try:
        op = Opcode(fields["opcode"])
    except ValueError:
        raise ValueError(f"illegal opcode {fields['opcode']} in instruction {fields['index']}") from None
    body = word >> HEADER.size
    layout = body_layouts(addr_bits)[op]
    return op, fields, {name: body >> f.offset & ((1 << f.width) - 1) for name, f in layout}


def markdown(addr_bits=16):
    """The instruction set as Markdown tables (``docs/isa.md``)."""

    def table(layout, base):
        rows = ["| bits | field |", "|---|---|"]
        for name, f in layout:
            rows.append(f"| `[{base + f.offset + f.width - 1}:{base + f.offset}]` | `{name}` |")
        return rows

    out = [f"Instructions are {INSTRUCTION_BITS} bits ({INSTRUCTION_BITS // 8} bytes), little-endian. "
           f"Bodies start at bit {HEADER.size}; unused bits are 0. COMPUTE's `command` is "
           f"`hw.command.command_layout({addr_bits})` (the buffer address width of the configuration).",
           "", "### Header (every instruction)", "", *table(HEADER, 0), "", "### Opcodes", "",
           "| opcode | name | meaning |", "|---|---|---|",
           "| 0 | (illegal) | stops the run: ILLEGAL_OPCODE |"]
    meaning = {Opcode.LOAD: "DRAM region → buffer, 2-D strided (DMA read)",
               Opcode.STORE: "buffer → DRAM region, 2-D strided (DMA write)",
               Opcode.COMPUTE: "one core command on the cores of `cores`",
               Opcode.SYNC: "barrier: wait until every queue is empty and idle",
               Opcode.END: "wait for every queue to drain; STATUS.DONE, interrupt"}
    out += [f"| {op.value} | `{op.name}` | {meaning[op]} |" for op in Opcode]
    out += ["", "### Tokens (`wait`, `signal` bits)", "", "| bit | token |", "|---|---|"]
    out += [f"| {t.value.bit_length() - 1} | `{t.name}` |" for t in Token]
    out += ["", f"Each token is a {TOKEN_BITS}-bit counter: a signal past {(1 << TOKEN_BITS) - 1} ends the "
            f"run with TOKEN_OVERFLOW."]
    out += ["", "### Buffers (`buffer` of LOAD/STORE)", "", "| value | buffer | transfers |", "|---|---|---|"]
    out += [f"| {b.value} | `{b.name}` | {', '.join(op.name for op in b.directions)} |" for b in Buffer]
    out += ["", "A transfer a buffer does not take ends the run with DIRECTION."]
    for op, layout in body_layouts(addr_bits).items():
        if layout.size:
            out += ["", f"### {op.name} body", "", *table(layout, HEADER.size)]
    return "\n".join(out) + "\n"


