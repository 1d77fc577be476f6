"""Dependency tokens (``gen.tokens``): small cases by hand, and the compiled proxy checked by an
independent happens-before analysis -- every pair of instructions on different queues that touch
the same buffer words (or DRAM bytes), one of them writing, must be ordered by the queues' order
and the tokens as the controller pairs them (the k-th wait of a direction with its k-th signal)."""

import pytest

from gen.compile import compile_network, load_frozen
from gen.tokens import Access, TokenError, assign_tokens, check_tokens
from hw.config import PRESETS
from hw.isa import Opcode, Queue, Token, decode

L, C, S, E = Opcode.LOAD, Opcode.COMPUTE, Opcode.STORE, Opcode.END


def w(mem, lo, hi):
    return Access(mem, lo, hi, True)


def r(mem, lo, hi):
    return Access(mem, lo, hi, False)


def test_load_compute_store_chain():
    ops = [L, C, S, E]
    acc = [[w("b", 0, 8)], [r("b", 0, 8), w("b", 8, 16)], [r("b", 8, 16)], []]
    waits, signals = assign_tokens(ops, acc, [(0, 4)], 8)
    assert signals == [Token.LOAD_TO_COMPUTE, Token.COMPUTE_TO_STORE, 0, 0]
    assert waits == [0, Token.LOAD_TO_COMPUTE, Token.COMPUTE_TO_STORE, 0]
    check_tokens(ops, waits, signals)


def test_disjoint_regions_need_no_tokens_and_reads_do_not_conflict():
    ops = [L, C, S, L, E]
    acc = [[w("w", 0, 4)], [r("w", 0, 4), r("b", 0, 8), w("o", 0, 2)], [r("b", 0, 8)], [w("w", 4, 8)], []]
    waits, signals = assign_tokens(ops, acc, [(0, 5)], 8)
    assert waits[2] == 0 and waits[3] == 0  # the STORE reads what the COMPUTE only reads; W 4..8 is free
    assert waits[1] == Token.LOAD_TO_COMPUTE


def test_write_after_read_and_the_dram_round_trip():
    ops = [C, L, S, L, E]
    acc = [[r("w", 0, 4), w("b", 0, 4)], [w("w", 0, 4)],  # the LOAD overwrites what the COMPUTE reads
           [r("b", 0, 4), w("dram.activations", 0, 64)],
           [w("b", 8, 12), r("dram.activations", 0, 64)], []]  # reads back what the STORE writes
    waits, signals = assign_tokens(ops, acc, [(0, 5)], 8)
    assert waits[1] == Token.COMPUTE_TO_LOAD and waits[3] == Token.STORE_TO_LOAD
    assert signals[0] == Token.COMPUTE_TO_LOAD | Token.COMPUTE_TO_STORE and signals[2] == Token.STORE_TO_LOAD


def test_implied_dependency_is_dropped():
    ops = [C, C, L, L, E]
    acc = [[r("w", 0, 4)], [r("w", 4, 8)], [w("w", 4, 8)], [w("w", 0, 4)], []]
    waits, signals = assign_tokens(ops, acc, [(0, 5)], 8)
    # the second LOAD's conflict (COMPUTE 0) is done before COMPUTE 1, which the first LOAD waited for
    assert waits[2] == Token.COMPUTE_TO_LOAD and waits[3] == 0 and signals[0] == 0


def test_segments_do_not_share_tokens():
    ops = [L, E, C, E]
    acc = [[w("b", 0, 8)], [], [r("b", 0, 8)], []]
    waits, signals = assign_tokens(ops, acc, [(0, 2), (2, 2)], 8)
    assert waits == [0] * 4 and signals == [0] * 4


def test_too_many_outstanding_tokens_is_a_compile_error():
    n = 300
    ops = [L] * n + [C] * n + [E]
    acc = [[w("b", k, k + 1)] for k in range(n)] + [[r("b", k, k + 1)] for k in range(n)] + [[]]
    with pytest.raises(TokenError, match="LOAD_TO_COMPUTE tokens could be outstanding"):
        assign_tokens(ops, acc, [(0, 2 * n + 1)], 8)


def test_misplaced_token_bits_are_refused():
    with pytest.raises(ValueError, match="waits for COMPUTE_TO_STORE"):
        check_tokens([L], [Token.COMPUTE_TO_STORE], [0])


def happens_before(ops, waits, signals):
    """Per instruction, {queue: the latest instruction of it done before this one starts}."""
    start, done = [], []
    last = {}  # queue -> previous instruction
    pending = {t: [] for t in Token}  # done-knowledge of signals not yet taken, in order
    for j, op in enumerate(ops):
        q = Queue.of(op)
        if q is None:
            start.append({}), done.append({})
            continue
        k = {}
        if q in last:
            p = last[q]
            k = dict(done[p] if q != Queue.COMPUTE else start[p])  # transfers wait for the one before
        for t in Token:
            if waits[j] & t:
                for qq, i in pending[t].pop(0).items():
                    k[qq] = max(k.get(qq, -1), i)
        start.append(k)
        d = dict(k)
        d[q] = j  # (a COMPUTE that signals is done when the core is idle: every earlier one too)
        done.append(d)
        for t in Token:
            if signals[j] & t:
                pending[t].append(d)
        last[q] = j
    assert not any(pending.values()), "a signal without its wait"
    return start


def test_proxy_program_orders_every_conflict(proxy_quantized):
    frozen, shape, _ = load_frozen(proxy_quantized)
    cfg = PRESETS["tiny"]
    prog = compile_network(frozen, shape, cfg)
    ops, waits, signals = [], [], []
    for raw in prog.instructions:
        op, h, _ = decode(raw)
        ops.append(op), waits.append(h["wait"]), signals.append(h["signal"])
    check_tokens(ops, waits, signals)
    assert any(waits) and len(prog.accesses) == len(ops)
    checked = 0
    for first, count in prog.layout["segments"]:
        seg = range(first, first + count)
        hb = happens_before([ops[i] for i in seg], [waits[i] for i in seg], [signals[i] for i in seg])
        for j in seg:
            for i in range(first, j):
                qi, qj = Queue.of(ops[i]), Queue.of(ops[j])
                if qi is None or qj is None or qi == qj:
                    continue
                if any(a.conflicts(b) for a in prog.accesses[i] for b in prog.accesses[j]):
                    checked += 1
                    assert hb[j - first].get(qi, -1) >= i - first, (i, j, ops[i].name, ops[j].name)
    assert checked > 100
