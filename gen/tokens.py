"""Dependency tokens of a program from its instructions' buffer accesses.

Each instruction of a program runs on one of the controller's queues (``hw.isa.Queue``); the
queues run concurrently, each in program order. Two instructions on different queues must keep
their program order when they touch the same buffer words and one of them writes them (a
COMPUTE reads what a LOAD wrote, a LOAD overwrites what a COMPUTE still reads, a STORE reads
what a COMPUTE wrote, a COMPUTE overwrites what a STORE still reads, a LOAD reads DRAM bytes a
STORE writes, ...). For every such pair
the later instruction waits for a token that the earlier one signals (``hw.isa.Token``).

Only the latest conflicting instruction of each other queue matters (its queue runs in order),
and a dependency already implied by an earlier wait of the same queue on the same direction is
dropped. The waits of one direction then pair with its signals in order -- the k-th wait with
the k-th signal -- which is how the controller's token counters pair them. Every signal comes
before its wait in program order, so the in-order dispatcher cannot deadlock.
"""

from dataclasses import dataclass

from hw.isa import TOKEN_BITS, Opcode, Queue, Token

__all__ = ["Access", "assign_tokens", "check_tokens", "TokenError"]


class TokenError(Exception):
    """The program needs more outstanding tokens than the controller counts."""


@dataclass(frozen=True)
class Access:
    """Words ``[lo, hi)`` of buffer memory ``mem`` (``hw.core_slice.MEMORIES``), or bytes of a
    DRAM region (``mem`` ``"dram.<region>"``: a STORE's results that a later LOAD reads back),
    written or read."""
    mem: str
    lo: int
    hi: int
    write: bool

    def conflicts(self, other):
        return (self.mem == other.mem and (self.write or other.write)
                and self.lo < other.hi and other.lo < self.hi)


def _conflict(a, b):
    return any(x.conflicts(y) for x in a for y in b)


def assign_tokens(opcodes, accesses, segments, queue_depth):
    """(waits, signals): the ``wait`` and ``signal`` bits of every instruction.

    ``opcodes[i]``, ``accesses[i]`` (Access list) per instruction; ``segments``: [(first, count)]
    -- each ends with END, which drains every queue, so tokens do not cross them. SYNC is a
    barrier too. Raises TokenError if a direction could hold more tokens than its counter."""
    n = len(opcodes)
    waits, signals = [0] * n, [0] * n
    limit = (1 << TOKEN_BITS) - 1 - queue_depth
    for first, count in segments:
        last = {}  # (src, dst) -> the latest instruction of src that dst has waited for
        barrier = first - 1
        done = {q: [] for q in Queue}  # instructions of each queue so far, in order
        pairs = {t: [] for t in Token}
        for j in range(first, first + count):
            dst = Queue.of(opcodes[j])
            if dst is None:  # SYNC, END: everything before is done
                barrier = j
                continue
            for src in Queue:
                if src == dst:
                    continue
                floor = max(last.get((src, dst), barrier), barrier)
                for i in reversed(done[src]):
                    if i <= floor:
                        break
                    if _conflict(accesses[i], accesses[j]):
                        t = Token.between(src, dst)
                        signals[i] |= t
                        waits[j] |= t
                        last[(src, dst)] = i
                        pairs[t].append((i, j))
                        break
            done[dst].append(j)
        for t, ps in pairs.items():  # tokens signalled before position p and waited for at or after it
            events = sorted([(i + 1, 1) for i, _ in ps] + [(j + 1, -1) for _, j in ps])
            level = peak = 0
            for _, d in events:
                level += d
                peak = max(peak, level)
            if peak > limit:
                raise TokenError(f"{peak} {t.name} tokens could be outstanding; the controller counts "
                                 f"{limit} (with queues of {queue_depth})")
    return waits, signals


def check_tokens(opcodes, waits, signals):
    """Raise ValueError unless every token bit sits on an instruction of its queue."""
    for i, op in enumerate(opcodes):
        q = Queue.of(op)
        for t in Token:
            if waits[i] & t and t.dst != q:
                raise ValueError(f"instruction {i} ({Opcode(op).name}) waits for {t.name}")
            if signals[i] & t and t.src != q:
                raise ValueError(f"instruction {i} ({Opcode(op).name}) signals {t.name}")
