"""The accelerator's register map, defined once: the AXI4-Lite slave (``hw.control_registers``),
the host runtime, the testbenches and ``docs/registers.md`` (``python -m gen.docs``) read it.

All registers are 32 bits wide at 4-byte aligned offsets of the AXI4-Lite port. 64-bit values are
two registers, ``_LO`` at the lower offset; reading a counter's ``_LO`` half latches its ``_HI``
half, so a 64-bit counter read low-then-high is consistent. Access kinds:

- ``rw``: read/write; ``ro``: read-only (a write answers SLVERR and changes nothing);
- ``w1s``: write 1 to a bit to trigger its action (reads as 0);
- ``w1c``: read the bits, write 1 to clear them.

An address outside the map answers SLVERR on reads and writes.
"""

from dataclasses import dataclass, field

__all__ = ["Register", "REGISTERS", "BY_NAME", "ErrorCode", "VERSION", "REGIONS", "COUNTERS",
           "Control", "Status", "Irq", "ADDR_BITS", "markdown"]

VERSION = 0x0005_0001  # major.minor (16 bits each) of the register map and instruction set
ADDR_BITS = 12  # the AXI4-Lite port decodes 4 KiB

# DRAM regions the program refers to by number (instruction operands are offsets into them).
REGIONS = ("program", "weights", "activations", "output")
# Cycle counters next to the total: cycles each unit class was busy, and cycles the core sat idle
# while the next COMPUTE waited for a dependency token (stall).
COUNTERS = ("cycles", "load_busy", "store_busy", "compute_busy", "stall")


class Control:
    START, SOFT_RESET = 1 << 0, 1 << 1


class Status:
    BUSY, DONE = 1 << 0, 1 << 1
    ERROR_SHIFT, ERROR_BITS = 8, 8


class Irq:
    DONE, ERROR = 1 << 0, 1 << 1


class ErrorCode:
    """STATUS.ERROR: why the accelerator stopped (0: it did not)."""
    NONE = 0
    ILLEGAL_OPCODE = 1  # an instruction's opcode is not in hw.isa
    ADDRESS_RANGE = 2  # an operand addresses outside a buffer or a region
    LOAD_SLVERR, LOAD_DECERR = 3, 4  # a DMA read answered SLVERR / DECERR
    STORE_SLVERR, STORE_DECERR = 5, 6  # a DMA write answered SLVERR / DECERR
    FETCH_ERROR = 7  # an instruction fetch answered SLVERR or DECERR
    NO_END = 8  # PROGRAM_LENGTH instructions ran without an END
    DEADLOCK = 9  # every queue waits for a token that nothing can raise
    TOKEN_OVERFLOW = 10  # a token counter would pass its maximum (hw.isa.TOKEN_BITS)
    CORE_MASK = 11  # a COMPUTE's cores name a core the array lacks, or leave out core 0
    PORT = 12  # a LOAD's or STORE's port is not its buffer's DMA engine (hw.isa.dma_port)
    DIRECTION = 13  # a LOAD into a buffer only stored, or a STORE from one only loaded (hw.isa.DIRECTIONS)
    B_PORTS = 14  # a COMPUTE asked a port of a half of buffer B twice in a cycle (gen.compile)
    NAMES = {0: "none", 1: "illegal opcode", 2: "address out of range", 3: "DMA read SLVERR",
             4: "DMA read DECERR", 5: "DMA write SLVERR", 6: "DMA write DECERR",
             7: "instruction fetch error", 8: "program ended without END",
             9: "deadlock: every queue waits for a token", 10: "token counter overflow",
             11: "COMPUTE core mask names a missing core or leaves out core 0",
             12: "LOAD or STORE on another DMA port than its buffer's",
             13: "LOAD or STORE in a direction its buffer does not take",
             14: "COMPUTE asked a port of a half of buffer B twice in a cycle"}


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str  # rw | ro | w1s | w1c
    doc: str
    bits: dict = field(default_factory=dict)  # field name -> (lsb, width, meaning)
    reset: int = 0


def _registers():
    regs = [
        Register("CONTROL", 0x00, "w1s", "Starts a run or resets the accelerator.",
                 {"START": (0, 1, "start the program at PROGRAM_BASE_HI:LO (ignored while busy)"),
                  "SOFT_RESET": (1, 1, "abort, clear STATUS and the counters; registers keep their values")}),
        Register("STATUS", 0x04, "ro", "State of the last run.",
                 {"BUSY": (0, 1, "a program is running"),
                  "DONE": (1, 1, "the last run ended (END reached or an error); cleared by START"),
                  "ERROR": (8, 8, "hw.registers.ErrorCode of the last run, 0 if none")}),
        Register("IRQ_ENABLE", 0x08, "rw", "Which events raise the interrupt output.",
                 {"DONE": (0, 1, "run ended"), "ERROR": (1, 1, "run ended with an error")}),
        Register("IRQ_STATUS", 0x0C, "w1c", "Events since last cleared; the interrupt output is "
                 "high while (IRQ_STATUS & IRQ_ENABLE) != 0.",
                 {"DONE": (0, 1, "run ended"), "ERROR": (1, 1, "run ended with an error")}),
        Register("VERSION", 0x10, "ro", "Register map and instruction set version (major << 16 | minor).",
                 reset=VERSION),
        Register("CONFIG_HASH_LO", 0x14, "ro", "Low 32 bits of the configuration hash (hw.config)."),
        Register("CONFIG_HASH_HI", 0x18, "ro", "High 32 bits of the configuration hash."),
        Register("PROGRAM_LENGTH", 0x1C, "rw", "Instructions in the program (hw.isa words)."),
    ]
    for k, region in enumerate(REGIONS):
        base = 0x20 + 8 * k
        regs += [Register(f"{region.upper()}_BASE_LO", base, "rw",
                          f"DRAM byte address of the {region} region, low 32 bits."),
                 Register(f"{region.upper()}_BASE_HI", base + 4, "rw",
                          f"... of the {region} region, high bits.")]
    for k, counter in enumerate(COUNTERS):
        base = 0x40 + 8 * k
        what = ("Cycles from START to the end of the run." if counter == "cycles" else
                f"Cycles of the run with the {counter.replace('_busy', '')} unit busy." if "busy" in counter
                else "Cycles of the run the core was idle while the next COMPUTE waited for a token.")
        regs += [Register(f"{counter.upper()}_LO", base, "ro",
                          what + " Low half; reading it latches the high."),
                 Register(f"{counter.upper()}_HI", base + 4, "ro", "High half, as latched by the low read.")]
    regs += [
        Register("TRACE_COUNT", 0x80, "ro", "Entries written to the trace buffer in the last run "
                 "(one per instruction that completed, up to its depth)."),
        Register("TRACE_INDEX", 0x84, "rw", "Trace entry that TRACE_OPCODE/TRACE_CYCLE show."),
        Register("TRACE_OPCODE", 0x88, "ro", "Index and opcode of that instruction: index << 8 | opcode."),
        Register("TRACE_CYCLE", 0x8C, "ro",
                 "Cycle (counted from START) at which that instruction completed."),
    ]
    offsets = [r.offset for r in regs]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 and o < 1 << ADDR_BITS for o in offsets)
    return tuple(regs)


REGISTERS = _registers()
BY_NAME = {r.name: r for r in REGISTERS}


def markdown():
    """The register map as a Markdown table (``docs/registers.md``)."""
    lines = ["| offset | name | access | reset | meaning |", "|---|---|---|---|---|"]
    for r in REGISTERS:
        doc = r.doc
        if r.bits:
            doc += "<br>" + "<br>".join(
                (f"`[{lsb + width - 1}:{lsb}]`" if width > 1 else f"`[{lsb}]`") + f" {name}: {meaning}"
                for name, (lsb, width, meaning) in r.bits.items())
        lines.append(f"| `0x{r.offset:03X}` | `{r.name}` | {r.access} | `0x{r.reset:X}` | {doc} |")
    return "\n".join(lines) + "\n"
