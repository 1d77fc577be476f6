"""Stream handshake for fixed-latency pipelines that stall as a whole.

Not a component: the helpers every pipelined unit uses to join an input and an output
``amaranth.lib.stream`` with a chain of stage registers. Stream rules hold: ``o.valid`` is a
register (it never depends on ``o.ready``), and a payload stays stable until it is taken.
Throughput is one transfer per cycle while the consumer is ready.
"""

from amaranth.hdl import Signal, Value
from amaranth.lib import memory

__all__ = ["Pipeline", "BlockAccumulators", "StreamUnit"]


class Pipeline:
    """Handshake of a ``depth``-stage pipeline between streams ``i`` and ``o`` inside module ``m``.

    Use :meth:`stage` to register each stage's values; every stage advances together when
    ``en`` is high, that is when the output is empty or being taken.
    """

    def __init__(self, m, i, o, depth, drive_output=True):
        if depth < 1:
            raise ValueError(f"pipeline depth must be at least 1, not {depth}")
        self._m = m
        self.en = Signal()
        m.d.comb += [self.en.eq(~o.valid | o.ready), i.ready.eq(self.en)]
        #: ``valids[k]``: stage k holds a beat (``valids[0]`` is the input transfer itself).
        self.valids = [i.valid]
        for k in range(depth):
            nxt = Signal(name=f"valid_s{k + 1}")
            with m.If(self.en):
                m.d.sync += nxt.eq(self.valids[-1])
            self.valids.append(nxt)
        if drive_output:  # otherwise the unit drives o.valid from a register loaded under en
            m.d.comb += o.valid.eq(self.valids[-1])

    module = property(lambda self: self._m, doc="The module the stage registers belong to.")

    def delay(self, value, stages, name):
        """``value`` carried through ``stages`` stage registers (alongside data in flight)."""
        for k in range(stages):
            value = self.stage(value, f"{name}_d{k + 1}")
        return value

    def stage(self, value, name, shape=None):
        """A register loaded with ``value`` whenever the pipeline advances."""
        value = Value.cast(value)
        reg = Signal(shape if shape is not None else value.shape(), name=name)
        with self._m.If(self.en):
            self._m.d.sync += reg.eq(value)
        return reg


class BlockAccumulators:
    """Per-pixel accumulators of a weight-reuse block, for both engines: a ``block``-deep memory
    of ``shape`` (LUT RAM), read asynchronously at ``slot`` and written at ``slot`` on ``en``.
    ``data`` is the slot's current value, ``data_in`` (to drive) what ``en`` writes; a beat sees
    the previous beat's write to its slot."""

    def __init__(self, m, block, shape, slot, en):
        mem = memory.Memory(shape=shape, depth=block, init=[])
        m.submodules.block_accumulators = mem
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        m.d.comb += [rd.addr.eq(slot), wr.addr.eq(slot), wr.en.eq(en)]
        self.data, self.data_in = rd.data, wr.data



class StreamUnit:
    """Mixin of the post-processing units: one ``i`` and one ``o`` stream of ``lib.data`` layouts,
    the constructor arguments as ``params``, a class-level ``LATENCY``. Use with
    ``wiring.Component``: ``class Unit(StreamUnit, wiring.Component)``."""

    LATENCY = 1

    def _stream_init(self, params, in_layout, out_layout):
        from amaranth.lib import stream, wiring

        self._p = dict(params)
        wiring.Component.__init__(self, {"i": wiring.In(stream.Signature(in_layout)),
                                         "o": wiring.Out(stream.Signature(out_layout))})

    lanes = property(lambda self: self._p["lanes"])
    latency = property(lambda self: self.LATENCY)
    params = property(lambda self: dict(self._p))
