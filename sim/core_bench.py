"""Drives a :class:`hw.core_slice.CoreSlice` through its host port: load a ``CorePlan``'s words,
run its command, read the result back. Simulator-independent: a driver object moves values
(``set``, ``get``, ``cycle``, ``wait_idle``); ``AmaranthDriver`` runs it in amaranth.sim, the cocotb
testbench (``sim/tb/core_replay.py``) on Icarus or Verilator.
"""

from __future__ import annotations

from hw.core_slice import MEMORIES
from sim.core_ops import pack_words, unpack_words

__all__ = ["run_plan", "AmaranthDriver", "run_amaranth"]


async def run_plan(drv, shapes, addr_bits, plan, groups=None):
    """Load ``plan``, run its commands, read its results. Each command is presented once the core
    is idle, except a ``follow`` command, which goes in right behind the depthwise command it
    runs alongside. Returns (result tensor, RTL cycles from the first command's acceptance to
    idle), or ([results], cycles) for a plan with several outputs (``FusedPlan``).

    ``groups``: several cores in lockstep (``sim.core_ops.split``): per core, the words of
    buffer B its pixel group holds; the command goes to all of them, and the result is
    [per core's result]."""
    for core, b in enumerate(groups or [None]):
        for mem, (base, items) in plan.writes.items():
            if core and mem != "b":
                continue  # W and Q are shared
            words = pack_words(shapes[mem], b if (b is not None and mem == "b") else items)
            drv.set("host_sel", MEMORIES.index(mem))
            if groups:
                drv.set("host_core", core)
            drv.set("host_we", 1)
            for k, word in enumerate(words):
                drv.set("host_addr", base + k)
                drv.set("host_wdata", word)
                await drv.cycle()
            drv.set("host_we", 0)
    if groups:
        drv.set("cmd_cores", (1 << len(groups)) - 1)
    cycles = 0
    for k, command in enumerate(plan.all_commands()):
        if k and not command.follow:
            cycles += await drv.wait_idle()
        drv.set("cmd__payload", command.value(addr_bits))
        drv.set("cmd__valid", 1)
        await drv.cycle()  # accepted at this edge (the core is idle, or this one follows)
        drv.set("cmd__valid", 0)
        cycles += 1
    cycles += await drv.wait_idle()
    per_core = []
    for core in range(len(groups or [None])):
        results = []
        for mem, base, count, decode in plan.outputs():
            drv.set("host_rsel", MEMORIES.index(mem))
            if groups:
                drv.set("host_rcore", core)
            words = []
            for k in range(count):  # the word at the address presented before the edge
                drv.set("host_raddr", base + k)
                await drv.cycle()
                words.append(drv.get("host_rdata"))
            mask = (1 << shapes[mem].size) - 1
            results.append(decode(unpack_words(shapes[mem], [w & mask for w in words])))
        per_core.append(results[0] if len(results) == 1 else results)
    return (per_core if groups else per_core[0]), cycles


class AmaranthDriver:
    def __init__(self, dut, ctx):
        self.dut, self.ctx = dut, ctx

    def _sig(self, name):
        if name.startswith("cmd__"):
            return getattr(self.dut.cmd, name[5:])
        return getattr(self.dut, name)

    def set(self, name, value):
        sig = self._sig(name)
        self.ctx.set(sig.as_value() if hasattr(sig, "as_value") else sig, value)

    def get(self, name):
        return self.ctx.get(self._sig(name))

    async def cycle(self):
        await self.ctx.tick()

    async def wait_idle(self):
        n = 0
        while self.ctx.get(self.dut.busy):
            await self.ctx.tick()
            n += 1
        return n


def run_amaranth(config, plans, addr_bits, weight_reads=False, groups=None, mem_bits=None, aux_depth=0):
    """Run ``plans`` one after the other on a fresh CoreSlice in amaranth.sim: [(result, cycles)],
    with ``weight_reads`` [(result, cycles, reads, back_to_back)]: the weight-port reads (both
    engines) while the core was busy, and the cycles on which ``w_rd0`` read right after a read
    (on the weight buffer's shared port a host write then waits: ``CoreSlice(shared_w=)``).
    ``groups`` (per plan, per core its B words: ``run_plan``): that many cores in lockstep;
    ``mem_bits``, ``aux_depth``: the CoreSlice's."""
    from amaranth.sim import Simulator

    from hw.core_slice import CoreSlice

    cores = max((len(g) for g in groups or [] if g), default=1)
    dut = CoreSlice(config, addr_bits, mem_bits, cores=cores, aux_depth=aux_depth)
    out, reads = [], [0, 0]

    async def tb(ctx):
        drv = AmaranthDriver(dut, ctx)
        for k, p in enumerate(plans):
            reads[:] = [0, 0]
            result = await run_plan(drv, dut.shapes, addr_bits, p, groups[k] if groups else None)
            out.append(result + tuple(reads) if weight_reads else result)

    async def count(ctx):
        core = dut.core
        last = 0
        async for _, _, busy, en0, en1 in ctx.tick().sample(core.busy, core.w_rd0.en, core.w_rd1.en):
            if busy:
                reads[0] += en0 + en1
                reads[1] += en0 & last
            last = en0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    if weight_reads:
        sim.add_process(count)
    sim.run()
    return out
