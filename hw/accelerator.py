"""The accelerator top: AXI4-Lite registers, the controller, one DMA engine per AXI4 manager
port, and the computing cores with their buffers."""

from functools import cache
from typing import NamedTuple

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import axi4, axi4_lite
from hw.config import AcceleratorConfig, ConfigError
from hw.control_registers import ControlRegisters
from hw.controller import Controller
from hw.core import ComputingCore
from hw.core_slice import MEMORIES, CoreSlice
from hw.dma import Dma
from hw.isa import BUF_ADDR_BITS
from hw.registers import ADDR_BITS, REGIONS

__all__ = ["Accelerator", "accelerator_verilog", "memory_depths", "word_beats", "BufferGeometry",
           "buffer_geometry", "one_pixel_beats", "silenced", "CORE_MODULE"]

CORE_MODULE = "trio_computing_core"  # the computing core's Verilog module, instantiated per core

DIM_BITS = 16  # DMA row and beat counts (hw.isa: 16-bit fields)
TRACE_DEPTH = 4096  # per-instruction cycle stamps of one segment (8 BRAM36)


def memory_depths(config, shapes):
    """Words of each buffer (``hw.core_slice.MEMORIES``) from the configuration's capacities: B
    split evenly between the cores' pixel groups (the depth given is per core), the output buffer
    whole, buffer C split 3 : 1 between weight chunks and parameters."""
    bits = {"b": config.buffer_b_kib * 8192 // config.cores, "w": config.buffer_c_kib * 8192 * 3 // 4,
            "q": config.buffer_c_kib * 8192 // 4, "o": config.output_kib * 8192}
    return {name: bits[name] // shapes[name].size for name in MEMORIES}


def word_beats(config, shapes):
    """DRAM beats per buffer word (a power of two; the word's low bits in the first beat)."""
    out = {}
    for name in MEMORIES:
        n = -(-shapes[name].size // config.axi_bits)
        out[name] = 1 << (n - 1).bit_length()
    return out


class BufferGeometry(NamedTuple):
    """The buffers of an accelerator configuration (``buffer_geometry``)."""
    shapes: dict      # {memory: its word's shape} (``CoreSlice.shapes``)
    depths: dict      # {memory: words} (``memory_depths``; B per core)
    bits: dict        # {memory: address bits}
    aux_depth: int    # chunk words of each core's aux buffer (0: none)
    word_beats: dict  # {memory: DMA beats per word} (``word_beats``)
    shared_w: bool    # the weight buffer's host writes share engine 0's read port


@cache
def buffer_geometry(config):
    """:class:`BufferGeometry` of ``config``, one definition for the accelerator and the compiler.
    Each core's aux buffer (an attention's vk chunks) sits at W addresses above W's, so it exists
    where W is not the deepest memory. The weight buffer is one true dual port RAM, its host
    writes sharing engine 0's read port (``CoreSlice(shared_w=)``), where there are aux buffers
    (the cores then never write W), a weight word takes two DMA beats or more and a block two
    beats or more: the port is then free on every other cycle but in a one-pixel command, which
    therefore takes two beats per chunk (``one_pixel_beats``)."""
    probe = CoreSlice(config, 4)
    probe._MustUse__silence = True
    probe.core._MustUse__silence = True
    shapes = probe.shapes
    depths = memory_depths(config, shapes)
    bits = {name: (d - 1).bit_length() for name, d in depths.items()}
    aux = config.aux_kib * 8192 // shapes["w"].size if bits["w"] < max(bits.values()) else 0
    beats = word_beats(config, shapes)
    shared = bool(aux) and beats["w"] >= 2 and config.block_min >= 2
    return BufferGeometry(shapes, depths, bits, aux, beats, shared)


def one_pixel_beats(config):
    """Beats per weight chunk of a one-pixel command (a head linear): two where the weight
    buffer's port is shared (``buffer_geometry``), so that engine 0 reads on every other cycle
    and a host write never waits for more than one; else one, and one for a configuration the
    computing core cannot be (the performance model still describes it: ``sim.perf --sweep``)."""
    try:
        return 2 if buffer_geometry(config).shared_w else 1
    except ConfigError:
        return 1


def silenced(component):
    """``component`` and every component it holds marked as built to be read, not elaborated
    (the compiler reads an accelerator's buffer geometry and the core's overheads)."""
    seen, todo = set(), [component]
    while todo:
        c = todo.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        c._MustUse__silence = True
        for v in vars(c).values():
            todo += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, wiring.Component)]
    return component


class Accelerator(wiring.Component):
    """The accelerator of one configuration: ``config.cores`` computing cores in lockstep
    (``hw.core_slice.CoreSlice``: buffer B in one pixel group per core, buffer C and the output
    buffer shared and multicast).

    Members
    -------
    s_axil : In(hw.axi.axi4_lite(12, 32)): the register map of ``hw.registers``.
    m_axi0 .. m_axi<P-1> : Out(hw.axi.axi4(addr_width, config.axi_bits)), one per DMA engine
        (P = ``config.axi_ports``): its loads and stores (``hw.isa.dma_port``: which buffer
        memories each engine moves); m_axi0 also fetches the instructions.
    irq : Out(1): the registers' interrupt (level).

    A run: the host writes the region bases and PROGRAM_LENGTH, sets START; the controller
    fetches and executes the program (``hw.controller``); DMA beats reach the buffers through a
    width adapter (a buffer word spans ``word_beats`` beats, low bits first, and is written the
    cycle after its last); an access past a buffer's depth is dropped and ends the run with
    ADDRESS_RANGE.
    """

    def __init__(self, config, addr_width=40, core_module=None):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if config.cores > 64:
            raise ConfigError(f"the controller addresses at most 64 cores, not {config.cores}")
        geo = buffer_geometry(config)
        self._depths, self._bits = geo.depths, geo.bits
        addr_bits = max(self._bits.values())
        if addr_bits > 20:
            raise ConfigError(f"buffer B of {config.buffer_b_kib} KiB needs {addr_bits}-bit word addresses; "
                              f"the core takes at most 20")
        self._cfg, self._aw = config, addr_width
        aux, self._beats, self._shared_w = geo.aux_depth, geo.word_beats, geo.shared_w
        self._slice = CoreSlice(config, addr_bits, self._bits, self._depths, cores=config.cores,
                                aux_depth=aux, core_module=core_module, host_ports=config.axi_ports,
                                shared_w=self._shared_w, b_halves=True)
        shifts = tuple(self._beats[n].bit_length() - 1 for n in MEMORIES)
        self._shifts = shifts
        self._dab = BUF_ADDR_BITS + max(shifts)
        self._ports = config.axi_ports
        self._dma = [Dma(addr_width, config.axi_bits, self._dab, max_beats=16, outstanding=8,
                         dim_bits=DIM_BITS) for _ in range(self._ports)]
        self._regs = ControlRegisters(config_hash=int(config.hash, 16), trace_depth=TRACE_DEPTH)
        self._ctrl = Controller(addr_width, config.axi_bits, addr_bits, shifts, self._dab, DIM_BITS,
                                cores=config.cores, ports=self._ports)
        members = {"s_axil": In(axi4_lite(ADDR_BITS, 32))}
        members.update({f"m_axi{p}": Out(axi4(addr_width, config.axi_bits)) for p in range(self._ports)})
        members["irq"] = Out(1)
        super().__init__(members)

    config = property(lambda self: self._cfg)
    addr_bits = property(lambda self: self._slice.core.addr_bits)
    memory_depths = property(lambda self: dict(self._depths))
    word_beats = property(lambda self: dict(self._beats))
    shapes = property(lambda self: self._slice.shapes)
    buffer_ports = property(lambda self: self._slice.buffer_ports(),
                            doc="{memory: hw.core_slice.BufferPorts} (``CoreSlice.buffer_ports``)")
    core = property(lambda self: self._slice.core)
    aux_base = property(lambda self: self._slice.aux_base)  # W word address of each core's aux buffer
    aux_depth = property(lambda self: self._slice.aux_depth)  # its words (0: none)
    aux_bit = property(lambda self: self._slice.aux_bit)  # the W address bit that selects it
    shared_w = property(lambda self: self._shared_w)  # the weight buffer's host writes share w_rd0's port

    def core_module(self):
        """A :class:`ComputingCore` as the cores' Verilog module (``CORE_MODULE``) is built."""
        return ComputingCore(self._cfg, self.addr_bits, aux_bit=self.aux_bit)

    def elaborate(self, platform):
        m = Module()
        regs = m.submodules.registers = self._regs
        ctrl = m.submodules.controller = self._ctrl
        core = m.submodules.core = self._slice
        dmas = self._dma
        for p, dma in enumerate(dmas):
            m.submodules[f"dma{p}" if p else "dma"] = dma
            wiring.connect(m, dma.axi, wiring.flipped(getattr(self, f"m_axi{p}")))
            wiring.connect(m, ctrl.load[p], dma.load)
            wiring.connect(m, ctrl.store[p], dma.store)
            m.d.comb += [ctrl.load_busy[p].eq(dma.load_busy), ctrl.store_busy[p].eq(dma.store_busy),
                         ctrl.load_error[p].eq(dma.load_error), ctrl.store_error[p].eq(dma.store_error)]
        wiring.connect(m, wiring.flipped(self.s_axil), regs.axi)
        m.d.comb += [
            self.irq.eq(regs.irq),
            ctrl.start.eq(regs.start), ctrl.soft_reset.eq(regs.soft_reset),
            regs.busy.eq(ctrl.busy), regs.finish.eq(ctrl.finish), regs.error.eq(ctrl.error),
            ctrl.program_length.eq(regs.program_length),
            regs.unit_busy.eq(Cat(Cat(*(d.load_busy for d in dmas)).any(),
                                  Cat(*(d.store_busy for d in dmas)).any(), core.busy, ctrl.stall)),
            ctrl.core_busy.eq(core.busy),
        ]
        for region in REGIONS:
            m.d.comb += getattr(ctrl, f"{region}_base").eq(getattr(regs, f"{region}_base"))
        wiring.connect(m, ctrl.trace, regs.trace)
        wiring.connect(m, ctrl.cmd, core.cmd)
        m.d.comb += [core.cmd_cores.eq(ctrl.cmd_cores), ctrl.b_conflict.eq(core.b_conflict)]
        wr0 = dmas[0].wr  # instruction fetches: engine 0's beats into the instruction register
        m.d.comb += [ctrl.fetch_wr.addr.eq(wr0.addr), ctrl.fetch_wr.data.eq(wr0.data),
                     ctrl.fetch_wr.en.eq(wr0.en & ctrl.fetching)]
        for p, dma in enumerate(dmas):
            self._adapter(m, p, dma, ctrl, core, fetching=ctrl.fetching if p == 0 else Const(0))
            m.d.comb += [dma.wr_ready.eq(core.host(p, "wready")), dma.rd_ready.eq(core.host(p, "rready"))]
        return m

    def _adapter(self, m, p, dma, ctrl, core, fetching):
        """Engine ``p``'s width adapter: its DMA beats <-> buffer words through host port ``p`` of
        the core slice (the writes in its LOAD's buffer, the reads in its STORE's)."""
        axi_bits = self._cfg.axi_bits
        max_beats = max(self._beats.values())
        shifts = Array(Const(s, 3) for s in self._shifts)
        depths = Array(Const(self._depths[n], self._dab) for n in MEMORIES)
        load_buffer, store_buffer = ctrl.load_buffer[p], ctrl.store_buffer[p]
        w_shift, r_shift = shifts[load_buffer], shifts[store_buffer]
        wr, rd = dma.wr, dma.rd
        w_mask = (Const(1, 5) << w_shift) - 1
        w_sub, w_word = wr.addr & w_mask, wr.addr >> w_shift
        r_word = rd.addr >> r_shift
        r_sub = Signal(range(max_beats), name=f"r_sub{p}")
        m.d.sync += r_sub.eq(rd.addr & ((Const(1, 5) << r_shift) - 1))
        gathered = Array(Signal(axi_bits, name=f"gathered{p}_{k}") for k in range(max_beats))
        writing = wr.en & ~fetching
        with m.If(writing):
            m.d.sync += gathered[w_sub].eq(wr.data)
        # the word is written the cycle after its last beat, from the beat registers alone (no
        # select between the arriving beat and the registers: a LUT per bit and port)
        word = Cat(*gathered)
        cores = self._cfg.cores  # a core past the array's, for buffer B, is out of range too
        w_core, r_core = (load_buffer == 0) & (ctrl.load_core[p] >= cores), \
            (store_buffer == 0) & (ctrl.store_core[p] >= cores)
        w_out = (w_word >= depths[load_buffer]) | w_core
        r_out = (r_word >= depths[store_buffer]) | r_core
        host = lambda name: core.host(p, name)  # noqa: E731
        host_w = len(host("wdata"))
        m.d.sync += [host("sel").eq(load_buffer), host("addr").eq(w_word), host("core").eq(ctrl.load_core[p]),
                     host("we").eq(writing & (w_sub == w_mask) & ~w_out)]
        m.d.comb += [
            host("rcore").eq(ctrl.store_core[p]),
            host("wdata").eq(word[:host_w]),
            host("rsel").eq(store_buffer), host("raddr").eq(r_word), host("re").eq(rd.en),
            ctrl.load_out_of_range[p].eq(writing & w_out), ctrl.store_out_of_range[p].eq(rd.en & r_out),
        ]
        padded = Cat(host("rdata"), Const(0, max_beats * axi_bits - host_w))
        beats = Array(padded[k * axi_bits:(k + 1) * axi_bits] for k in range(max_beats))
        r_out_d = Signal(name=f"r_out{p}")  # a read past the buffer: zeros go out (and ADDRESS_RANGE)
        m.d.sync += r_out_d.eq(r_out)
        # a beat's bits past the word (the read data there are another memory's): zeros go out
        shapes = self.shapes
        past = {}  # per beat bit: the (buffer, beat) where it lies past the word, within host_w
        for i in range(axi_bits):
            past[i] = tuple((k, r) for k, n in enumerate(MEMORIES) for r in range(self._beats[n])
                            if shapes[n].size <= r * axi_bits + i < host_w)
        conds = {}
        for key in sorted(set(past.values())):
            cond = Signal(name=f"r_past{p}_{len(conds)}")
            m.d.comb += cond.eq(r_out_d | Cat(*((store_buffer == k) & (r_sub == r) for k, r in key)).any()
                                if key else r_out_d)
            conds[key] = cond
        beat = beats[r_sub]
        m.d.comb += rd.data.eq(Cat(*(Mux(conds[past[i]], 0, beat[i]) for i in range(axi_bits))))


def _module_verilog(config, which, top, stamp, addr_width, platform):
    from gen.emit import unit_verilog

    acc = Accelerator(config, addr_width=addr_width, core_module=CORE_MODULE)
    if which == "top":
        return unit_verilog(acc, top, list(stamp), platform)
    silenced(acc)
    return unit_verilog(acc.core_module(), CORE_MODULE, list(stamp), platform)


def accelerator_verilog(config, top="trio_accelerator", stamp=(), addr_width=40, platform=None):
    """{module name: Verilog text} of the accelerator of ``config``: the top (``top``), whose
    cores are instances of ``CORE_MODULE``, and that module, emitted once. The two are elaborated
    in two processes at once. ``platform``: ``hw.dsp_mac.XILINX`` for Vivado (the engines'
    multiply-accumulates as DSP48E2 primitives), None for simulation (their behaviour)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2) as pool:
        core = pool.submit(_module_verilog, config, "core", top, tuple(stamp), addr_width, platform)
        text = _module_verilog(config, "top", top, tuple(stamp), addr_width, platform)
        return {top: text, CORE_MODULE: core.result()}
