"""A simulator-independent stream testbench: drives a unit's input stream with random valid
gaps, its output stream with random back-pressure, and checks every output against the golden
function, in order. The cocotb module ``sim.tb.stream_unit`` and the amaranth.sim runner
``run_amaranth`` only move signal values in and out of it, once per clock cycle.
"""

import numpy as np

from sim.layout import pack, unpack

__all__ = ["StreamBench", "Mismatch", "run_amaranth"]


class Mismatch(AssertionError):
    pass


class StreamBench:
    """Per cycle: call :meth:`drive` (values to apply), then :meth:`observe` (settled values).

    Parameters: ``spec`` (a ``sim.units.UnitSpec``), ``dut`` (the component, for its layouts and
    parameters), ``vectors`` random vectors after the corner cases, ``seed``, and the
    probabilities of offering a vector / accepting an output in a cycle.
    """

    def __init__(self, spec, dut, vectors, seed, p_valid=0.8, p_ready=0.8):
        self.inputs, self.expected = spec.vectors(dut, vectors, seed)
        self.words = pack(dut.i.payload.shape(), self.inputs)
        self.out_layout = dut.o.payload.shape()
        self.total_in = len(self.words)
        self.total = len(next(iter(self.expected.values())))  # outputs expected
        self.rng = np.random.default_rng(seed + 1)
        self.p_valid, self.p_ready = p_valid, p_ready
        self.sent = 0
        self.received = []
        self.cycles = 0
        self.latency = dut.latency
        self._valid = False

    @property
    def done(self):
        return len(self.received) >= self.total

    @property
    def max_cycles(self):
        """Generous bound: every vector may wait on both random gates, plus the pipeline depth."""
        slack = 1 / (self.p_valid * self.p_ready)
        return int(max(self.total_in, self.total) * slack * 4) + 100 * (self.latency + 1)

    def drive(self):
        """(in_valid, in_payload, out_ready) for this cycle. A valid offer is held until taken."""
        if not self._valid and self.sent < self.total_in and self.rng.random() < self.p_valid:
            self._valid = True
        word = self.words[self.sent] if self._valid else 0
        return int(self._valid), word, int(self.rng.random() < self.p_ready)

    def observe(self, in_ready, out_valid, out_payload, out_ready):
        """Settled values of this cycle; transfers happen at the coming clock edge."""
        self.cycles += 1
        if self._valid and in_ready:
            self.sent += 1
            self._valid = False
        if out_valid and out_ready:
            self.received.append(int(out_payload))
        if self.cycles > self.max_cycles:
            raise Mismatch(f"timeout: {len(self.received)} of {self.total} outputs after "
                           f"{self.cycles} cycles")

    def check(self):
        """Compare every received output with the golden result; raise on the first difference."""
        got = unpack(self.out_layout, self.received)
        for name, want in self.expected.items():
            have = got[name]
            bad = np.nonzero((have != want).reshape(len(have), -1).any(axis=1))[0]
            if len(bad):
                v = int(bad[0])
                ins = ""
                if self.total_in == self.total:  # one output per input: show that input
                    ins = ", inputs " + str({k: np.asarray(a[v]).tolist()
                                              for k, a in self.inputs.items()})
                raise Mismatch(f"output {v} of {self.total}: {name} = {have[v].tolist()}, golden "
                               f"{np.asarray(want[v]).tolist()}{ins} "
                               f"({len(bad)} mismatching outputs)")
        return {"vectors": self.total, "beats": self.total_in, "cycles": self.cycles}


def run_amaranth(spec, params, vectors, seed=1, **probs):
    """Run ``spec``'s unit with ``params`` in amaranth.sim against the golden function."""
    from amaranth.sim import Simulator

    dut = spec.build(params)
    bench = StreamBench(spec, dut, vectors, seed, **probs)
    i_payload, o_payload = dut.i.payload.as_value(), dut.o.payload.as_value()

    async def testbench(ctx):
        while not bench.done:
            valid, word, ready = bench.drive()
            ctx.set(dut.i.valid, valid)
            ctx.set(i_payload, word)
            ctx.set(dut.o.ready, ready)
            bench.observe(ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(o_payload), ready)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return bench.check()
