"""The computing cores attached to the global buffers, with a host port: the accelerator's array
(``hw.accelerator``) and, with one core, what the replay (``python -m sim.replay``) drives."""

from typing import NamedTuple

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.command import command_layout
from hw.core import ComputingCore
from hw.isa import Buffer, Opcode, dma_port
from hw.params import check_int

__all__ = ["CoreSlice", "BufferPorts", "MEMORIES"]

MEMORIES = ("b", "w", "q", "o")  # host port ``sel`` values 0..3: buffer B, weights, parameters, int32 outputs
# the core's ports of buffer B by the port of a half they take (``CoreSlice(b_halves=)``): port
# A, then the DMA's writes; port B, then the DMA's reads (``ComputingCore.b_accesses``)
B_SIDES = (("b_rd0", "d_rd0"), ("b_wr0", "b_rd1", "d_rd1"))


class BufferPorts(NamedTuple):
    """One buffer memory as a :class:`CoreSlice` builds it: its write and read ports, how many
    there are (one per core for B and the aux buffers), its word width in bits and its depth."""
    writes: int
    reads: int
    copies: int
    width: int
    depth: int
    shared: int = 0  # read ports on a write port's address (a read/write port of the RAM)


class CoreSlice(wiring.Component):
    """``cores`` :class:`ComputingCore` s in lockstep with memories standing for the global
    buffers (docs/architecture.md §3, §5): per core its **pixel group of buffer B** (activations:
    the core's 2 operand reads, its depthwise fill reads and its write); shared by all cores, the
    weight and parameter words of buffer C (2 read ports for W, one for Q, **multicast**: the leader's
    addresses, core 0's, read them for every core) and the output buffer (int32). Only core 0
    writes the output buffer, and the shared W where there are no aux buffers. With
    ``aux_depth``, each core has its own **aux buffer** of that many chunk words at W addresses
    from ``aux_base`` = ``2**mem_bits["w"]`` on: an attention's sum k and vk chunks, which each
    core of a head-parallel group writes and reads for its own heads (the core picks its aux word
    or the shared one: ``ComputingCore(aux_bit=)``); the cores then write W chunks there only
    (``gen.compile`` places every attention's there), so the shared W has the host's write
    port alone. Each memory has
    ``2**mem_bits[name]`` words (at most ``2**addr_bits``), sized by the replay so that every
    command's operands fit, or ``depths[name]`` words (the accelerator's capacities; B: per core).

    With ``b_halves`` (the accelerator's), each core's B is two true dual port RAMs, its lower
    and upper half, each port serving one side of the core's accesses (``B_SIDES``) first and the
    DMA when that side leaves it free (``_b_halves``): block RAM as Vivado infers it. Without
    (the replay's and the core tests' harness, which place operands freely and run the
    depthwise-pointwise band pipeline), it is one memory with a port per user.

    With ``core_module``, the cores are instances of that Verilog module (``ComputingCore`` emitted
    once as it, ``hw.accelerator.accelerator_verilog``) instead of L copies of their logic.

    **Lockstep**: a command goes to the cores of ``cmd_cores`` at once, when all of them are ready
    (they are then in the same state, so the multicast addresses are every core's); a command
    that does not include core 0 is not accepted (the controller refuses it: ``CORE_MASK``).

    Members
    -------
    cmd : In(stream.Signature(command_layout(addr_bits))); cmd_cores : In(cores), all ones by
        default: the cores that take the command; busy : Out(1): any core busy.
    Host port 0 (the members below); with ``host_ports`` P > 1, also ports 1..P-1 with the same
    members named ``host<p>_sel`` and so on (``host(p, name)``). Each memory has a host write port
    if the DMA loads it and a host read port if it stores it (``hw.isa.DIRECTIONS``: B both, the
    weights and parameters a write port, the output buffer a read port), driven by the host port
    ``hw.isa.dma_port`` names for it (the DMA engine that moves it): P engines load and store
    different memories at once.

    host_sel : In(2), host_core : In(range(cores)), host_addr : In(addr_bits), host_wdata :
        In(width), host_we : In(1): write one word of memory ``MEMORIES[host_sel]`` (of core
        ``host_core`` for B) per cycle (``width``: the widest word);
    host_wready : Out(1): the port takes a write on the next cycle; low while a write waits
        that cannot go now: on the weight buffer's shared RAM (``shared_w``), where ``w_rd0``
        reads again (a word takes two DMA beats or more, so the beat held cannot complete
        another), or on a half of B whose port A the core takes (``b_halves``);
    host_re : In(1), high by default: the port reads this cycle (``b_halves``: it takes a port of
        B only then); host_rready : Out(1): a read presented now is served (low: a half of B whose
        port B the core takes, or a write waiting there; the reader presents it again later);
    b_conflict : Out(1): a core's access of B found its port taken (a port of a half asked twice
        in a cycle, which the compiler never places); the access is lost (the controller ends the
        run: ``B_PORTS``).
    host_rsel : In(2), host_rcore : In(range(cores)), host_raddr : In(addr_bits), host_rdata :
        Out(width): the word at ``host_raddr`` of memory ``MEMORIES[host_rsel]`` (of core
        ``host_rcore`` for B), one cycle after it is presented (a read port of its own: the DMA
        loads and stores at once); above a memory's word, the bits are another memory's (the
        reader drops them: ``hw.accelerator``'s width adapter sends zeros there); a memory
        the port does not own, or does not store, reads as another.
    """

    def __init__(self, config, addr_bits=12, mem_bits=None, depths=None, cores=1, aux_depth=0,
                 core_module=None, host_ports=1, shared_w=False, b_halves=False):
        check_int("Address width", addr_bits, 4, 20)
        self._n = check_int("Cores", cores, 1, 64)
        self._hp = check_int("Host ports", host_ports, 1, 4)
        self._module = core_module  # instantiate the cores as this Verilog module (one definition)
        self._ab = addr_bits
        self._mem_bits = {name: addr_bits for name in MEMORIES}
        for name, bits in (mem_bits or {}).items():
            if name not in MEMORIES:
                raise ValueError(f"unknown memory {name!r}: expected one of {', '.join(MEMORIES)}")
            self._mem_bits[name] = check_int(f"Address width of memory {name}", bits, 1, addr_bits)
        self._aux = check_int("Aux depth", aux_depth, 0, 1 << 16)
        self._shared_w = bool(shared_w)
        self._halves = bool(b_halves)
        if shared_w and not aux_depth:
            raise ValueError("the weight buffer's shared port needs the aux buffers (the cores write no "
                             "chunks to W then)")
        if aux_depth and self._mem_bits["w"] >= addr_bits:
            raise ValueError(f"the aux buffer sits above W's {self._mem_bits['w']} address bits: "
                             f"needs addr_bits > {self._mem_bits['w']}, not {addr_bits}")
        self._cores = [ComputingCore(config, addr_bits, aux_bit=self.aux_bit)
                       for _ in range(1 if core_module else cores)]
        self._core = self._cores[0]
        if core_module:
            self._core._MustUse__silence = True  # its signature and geometry only
        self._depths = {name: 1 << bits for name, bits in self._mem_bits.items()}
        for name, depth in (depths or {}).items():  # fewer words than the address width reaches
            self._depths[name] = check_int(f"Depth of memory {name}", depth, 1, 1 << self._mem_bits[name])
        c = self._core
        self._shapes = c.buffer_layouts()
        width = max(s.size for s in self._shapes.values())
        self._width = width
        members = {
            "cmd": In(stream.Signature(command_layout(addr_bits))),
            "cmd_cores": In(cores, init=(1 << cores) - 1),
            "busy": Out(1),
        }
        for p in range(host_ports):
            h = f"host{p or ''}_"
            members.update({
                f"{h}sel": In(2), f"{h}core": In(range(cores)), f"{h}addr": In(addr_bits),
                f"{h}wdata": In(width), f"{h}we": In(1),
                f"{h}rsel": In(2), f"{h}rcore": In(range(cores)), f"{h}raddr": In(addr_bits),
                f"{h}rdata": Out(width), f"{h}wready": Out(1),
                f"{h}re": In(1, init=1), f"{h}rready": Out(1),
            })
        members["b_conflict"] = Out(1)
        super().__init__(members)

    core = property(lambda self: self._core)
    host_ports = property(lambda self: self._hp)

    def host(self, port, name):
        """Member ``name`` (``sel``, ``addr``, ``rdata``, ...) of host port ``port``."""
        return getattr(self, f"host{port or ''}_{name}")
    cores = property(lambda self: self._n)
    aux_base = property(lambda self: 1 << self._mem_bits["w"] if self._aux else None)
    aux_bit = property(lambda self: self._mem_bits["w"] if self._aux else None)  # the cores' ``aux_bit``
    aux_depth = property(lambda self: self._aux)
    shapes = property(lambda self: dict(self._shapes))
    mem_bits = property(lambda self: dict(self._mem_bits))

    def _ports(self, name):
        """(core read ports' names, core write ports' names, host write port, host read port) of
        memory ``name``: the core's ports for its buffer (``ComputingCore.memory_ports``; with aux
        buffers, the core writes W chunks only there), a host write port where the DMA loads the
        buffer and a host read port where it stores it (``hw.isa.DIRECTIONS``)."""
        readers, writers = self._core.memory_ports()[name]
        if name == "w" and self._aux:
            writers = []
        dirs = Buffer.of(name).directions
        return readers, writers, Opcode.LOAD in dirs, Opcode.STORE in dirs

    def buffer_ports(self):
        """{memory: :class:`BufferPorts`} of the memories this slice builds, from the same
        definitions ``elaborate`` uses (``_ports``); B and the aux buffers (the core's W ports, no
        host's) once per core."""
        out = {}
        for name in MEMORIES:
            readers, writers, host_w, host_r = self._ports(name)
            copies = self._n if name == "b" else 1
            shared = int(name == "w" and self._shared_w)
            if name == "b" and self._halves:  # two true dual port RAMs a core: two read/write ports
                out[name] = BufferPorts(2, 2, 2 * self._n, self._shapes[name].size, self._depths[name] // 2,
                                        shared=2)
                continue
            out[name] = BufferPorts(len(writers) + host_w, len(readers) + host_r, copies,
                                    self._shapes[name].size, self._depths[name], shared)
        if self._aux:
            readers, writers = self._core.memory_ports()["w"]
            out["aux"] = BufferPorts(len(writers), len(readers), self._n, self._shapes["w"].size, self._aux)
        return out

    def _aux_buffers(self, m, cores):
        """Each core's aux buffer, written and read by that core's W ports at addresses with bit
        ``aux_bit`` set; its read data go to the core's ``w_aux*``, which picks them."""
        bw, ab = self._mem_bits["w"], (self._aux - 1).bit_length() or 1
        readers, writers = self._core.memory_ports()["w"]
        for j, core in enumerate(cores):
            aux = memory.Memory(shape=self._shapes["w"], depth=self._aux, init=[])
            m.submodules[f"aux{j}"] = aux
            for wname in writers:
                port, mine = aux.write_port(), getattr(core, wname)
                m.d.comb += [port.addr.eq(mine.addr[:ab]), port.en.eq(mine.en & mine.addr[bw]),
                             port.data.eq(mine.data)]
            for p, rname in enumerate(readers):
                port, mine = aux.read_port(), getattr(core, rname)
                m.d.comb += [port.addr.eq(mine.addr[:ab]), port.en.eq(mine.en),
                             getattr(core, f"w_aux{p}").eq(port.data)]

    def _shared_w_port(self, m, mem, core, cores, hp, k, bits):
        """The weight buffer as a true dual port RAM: port A takes the host's writes and the
        core's ``w_rd0`` reads on one address, port B ``w_rd1``'s reads. ``w_rd0`` reads a chunk
        on a block's first beat and holds it for the block (its enable is high on that cycle
        alone), so a host write that meets a read waits in a register and goes on the next cycle
        without one: a block takes at least ``block_min`` >= 2 beats, and a weight word at least
        two DMA beats (the accelerator builds this port only then: ``Accelerator.shared_w``), so
        the next word is not there yet. A one-pixel command (a head linear) takes two beats per
        chunk on such an accelerator (``hw.accelerator.one_pixel_beats``), so ``w_rd0`` never
        reads on two cycles in a row in a compiled program; if it does, ``host_wready`` holds the
        DMA while a write waits and the port reads again, so a write is never lost. The chunk
        ``w_rd0`` read is kept in a register of its own (a write on port A changes the RAM's
        output). Returns the host port's term of ``wready``."""
        readers, _ = self._core.memory_ports()["w"]
        r0, r1 = (getattr(core, r) for r in readers)
        req = self.host(hp, "we") & (self.host(hp, "sel") == k)
        pend = Signal(name="w_pending")
        pend_addr = Signal(bits, name="w_pending_addr")
        pend_data = Signal(self._shapes["w"].size, name="w_pending_data")
        reads = Signal(name="w_rd0_reads_w")  # w_rd0 takes port A (an aux buffer's address does not)
        m.d.comb += reads.eq(r0.en & ~r0.addr[bits])
        pend_go = pend & ~reads  # a waiting write goes on the first cycle w_rd0 does not read W
        go_req = req & ~reads & ~pend
        with m.If(req & ~go_req):  # the port reads for w_rd0, or a write waits already
            m.d.sync += [pend_addr.eq(self.host(hp, "addr")[:bits]), pend_data.eq(self.host(hp, "wdata"))]
        m.d.sync += pend.eq((req & ~go_req) | (pend & ~pend_go))
        # hold the DMA only while a waiting write cannot go (w_rd0 reads on two cycles in a row)
        wready = ~(pend & reads)
        a_addr = Signal(bits, name="w_port_a_addr")
        host_addr = self.host(hp, "addr")[:bits]
        m.d.comb += a_addr.eq(Mux(pend_go, pend_addr, Mux(go_req, host_addr, r0.addr[:bits])))
        port_w, port_a, port_b = mem.write_port(), mem.read_port(), mem.read_port()
        m.d.comb += [port_w.addr.eq(a_addr), port_w.en.eq(pend_go | go_req),
                     port_w.data.eq(Mux(pend_go, pend_data, self.host(hp, "wdata"))),
                     port_a.addr.eq(a_addr), port_a.en.eq(1),
                     port_b.addr.eq(r1.addr[:bits]), port_b.en.eq(r1.en)]
        read0 = Signal(name="w_rd0_read")
        m.d.sync += read0.eq(reads)
        held = Signal(self._shapes["w"].size, name="w_rd0_held")
        data0 = Mux(read0, port_a.data.as_value(), held)
        m.d.sync += held.eq(data0)
        for c in cores:  # multicast to every core
            m.d.comb += [getattr(c, readers[0]).data.eq(data0), getattr(c, readers[1]).data.eq(port_b.data)]
        return wready

    def _b_halves(self, m, core, j, k, bits, hp):
        """Core ``j``'s buffer B as two true dual port RAMs, the lower and the upper half of its
        words, each port serving one side of the core's requests (``B_SIDES``) or the DMA: port A
        engine 0's operand read (``b_rd0``) or the first window fill read (``d_rd0``), else the
        DMA's write (a LOAD's word); port B the post-processor's write (``b_wr0``), engine 1's
        read (``b_rd1``) or the second window fill read (``d_rd1``), else the DMA's read (a
        STORE's). So the core is served whenever it makes at most one access of each side in a
        half in a cycle -- the compiler places every command so (``ComputingCore.b_accesses``,
        ``gen.compile``); a second is dropped, and ``b_conflict`` says so -- and the DMA takes a
        port the core leaves: a host write that finds port A taken waits in a register
        (``wready`` falls, so that no other comes meanwhile), a host read that would find port B
        taken is not taken (``rready`` low), nor one while a write waits. A read's data come from
        the half that served it, one cycle later. Returns (the DMA read's data, this core's terms
        of ``wready`` and ``rready``, a core request dropped)."""
        word = self._shapes["b"]
        depth = self._depths["b"]
        half = depth // 2
        readers, writers = self._core.memory_ports()["b"]
        ports = {name: getattr(core, name) for name in readers + writers}
        host = lambda name: self.host(hp, name)  # noqa: E731
        new_w = host("we") & (host("sel") == k) & (host("core") == j)
        pend = Signal(name=f"b{j}_dma_pending")
        pend_addr = Signal(bits, name=f"b{j}_dma_pending_addr")
        pend_data = Signal(word.size, name=f"b{j}_dma_pending_data")
        dma_w = (pend | new_w, Mux(pend, pend_addr, host("addr")[:bits]))
        dma_r = (host("re") & (host("rsel") == k) & (host("rcore") == j), host("raddr")[:bits])
        # per side: the core's requests (its port's name, enable, address) in order, then the DMA's
        sides = [[(n, ports[n].en, ports[n].addr[:bits]) for n in side if n in ports] for side in B_SIDES]
        sides[0].append((None, *dma_w))
        sides[1].append((None, *dma_r))
        served = [[[] for _ in side] for side in sides]  # per side and request: its grant in each half
        r_ok, w_ok, lost = [], [], []
        data = [[], []]  # per side: the lower and upper half's read data
        for h, which in enumerate(("lo", "hi")):
            mem = memory.Memory(shape=word, depth=half if h == 0 else depth - half, init=[])
            m.submodules[f"mem_b{j or ''}_{which}"] = mem
            for p, side in enumerate(sides):
                taken = Const(0)  # a request before this one is served by this port
                pick = Const(0, bits)
                for i, (_, en, addr) in enumerate(side):
                    hit = Signal(name=f"b{j}_{which}_{'ab'[p]}{i}_hit")
                    m.d.comb += hit.eq(en & ((addr >= half) if h else (addr < half)))
                    if i == len(side) - 1:  # the DMA's: the port is free of the core's
                        (w_ok if p == 0 else r_ok).append(~taken)
                    elif i:
                        lost.append(hit & taken)
                    grant = hit & ~taken
                    served[p][i].append(grant)
                    pick = pick | Mux(grant, addr, 0)
                    taken = taken | hit
                addr = Signal(bits, name=f"b{j}_{which}_port_{'ab'[p]}_addr")
                wp, rp = mem.write_port(), mem.read_port()
                write = served[0][-1][h] if p == 0 else served[1][0][h]  # the DMA's / b_wr0's
                m.d.comb += [addr.eq(pick - (half if h else 0)), wp.addr.eq(addr), rp.addr.eq(addr),
                             rp.en.eq(1), wp.en.eq(write),
                             wp.data.eq(Mux(pend, pend_data, host("wdata")[:word.size]) if p == 0 else
                                        ports[writers[0]].data)]
                data[p].append(rp.data)
        dma_data = None
        for p, side in enumerate(sides):  # a read's data, from the half that served it a cycle ago
            for i, (name, _, _) in enumerate(side):
                if name in writers or (name is None and p == 0):  # b_wr0, the DMA's write
                    continue
                upper = Signal(name=f"b{j}_{'ab'[p]}{i}_from_hi")
                with m.If(served[p][i][0] | served[p][i][1]):
                    m.d.sync += upper.eq(served[p][i][1])
                read = Mux(upper, data[p][1], data[p][0])
                if name is None:
                    dma_data = read
                else:
                    m.d.comb += ports[name].data.eq(read)
        w_go = served[0][-1][0] | served[0][-1][1]
        m.d.sync += pend.eq(dma_w[0] & ~w_go)
        with m.If(new_w):  # not taken now: it waits (while one waits, no other comes)
            m.d.sync += [pend_addr.eq(host("addr")[:bits]), pend_data.eq(host("wdata")[:word.size])]
        upper_w, upper_r = dma_w[1] >= half, dma_r[1] >= half
        # a read waits while a write waits (it could be of the word the write brings)
        return (dma_data, ~(dma_w[0] & ~Mux(upper_w, w_ok[1], w_ok[0])),
                ~pend & Mux(upper_r, r_ok[1], r_ok[0]), Cat(*lost, Const(0)).any())

    def elaborate(self, platform):
        m = Module()
        if self._module:  # one Verilog module, instantiated per core
            cores = [self._core.signature.create(path=(f"core{j}",)) for j in range(self._n)]
            for j, ports in enumerate(cores):
                args = {f"{'i' if member.flow == In else 'o'}_{'__'.join(map(str, path))}": Value.cast(value)
                        for path, member, value in self._core.signature.flatten(ports)}
                m.submodules[f"core{j}" if j else "core"] = Instance(self._module, i_clk=ClockSignal(),
                                                                     i_rst=ResetSignal(), **args)
        else:
            cores = self._cores
            for j, core in enumerate(cores):
                m.submodules[f"core{j}" if j else "core"] = core
        ready = Cat(*(c.cmd.ready | ~self.cmd_cores[j] for j, c in enumerate(cores))).all()
        m.d.comb += [self.cmd.ready.eq(ready & self.cmd_cores[0]),
                     self.busy.eq(Cat(*(c.busy for c in cores)).any())]
        for j, core in enumerate(cores):
            m.d.comb += [core.cmd.payload.eq(self.cmd.payload),
                         core.cmd.valid.eq(self.cmd.valid & self.cmd.ready & self.cmd_cores[j])]
        if self._aux:
            self._aux_buffers(m, cores)
        rdata = [{} for _ in range(self._hp)]  # per host port: {memory index: its read data}
        # per host port: what its wready and rready are the AND of (a write that waits on a
        # shared port; B's halves); high with none
        wready, rready, dropped = [[] for _ in range(self._hp)], [[] for _ in range(self._hp)], []
        for k, name in enumerate(MEMORIES):
            bits = self._mem_bits[name]
            owners = cores if name == "b" else cores[:1]  # one B per core; W, Q, O shared
            data_out = [[] for _ in range(self._hp)]  # per host port: (core, read data)
            readers, writers, loaded, stored = self._ports(name)
            for j, core in enumerate(owners):
                hp = dma_port(Buffer.of(name), j, self._hp)  # the host port that owns this memory
                if name == "b" and self._halves:
                    data, w_ok, r_ok, lost = self._b_halves(m, core, j, k, bits, hp)
                    data_out[hp].append((j, data))
                    wready[hp].append(w_ok)
                    rready[hp].append((self.host(hp, "rsel") != k) | (self.host(hp, "rcore") != j) | r_ok)
                    dropped.append(lost)
                    continue
                mem = memory.Memory(shape=self._shapes[name], depth=self._depths[name], init=[])
                m.submodules[f"mem_{name}{j}" if j else f"mem_{name}"] = mem
                if name == "w" and self._shared_w:
                    wready[hp].append(self._shared_w_port(m, mem, core, cores, hp, k, bits))
                    continue
                if loaded:
                    mine_w = self.host(hp, "core") == j if name == "b" else 1
                    host_w = mem.write_port()
                    m.d.comb += [host_w.addr.eq(self.host(hp, "addr")[:bits]),
                                 host_w.data.eq(self.host(hp, "wdata")),
                                 host_w.en.eq(self.host(hp, "we") & (self.host(hp, "sel") == k) & mine_w)]
                if stored:
                    host_r = mem.read_port()
                    m.d.comb += host_r.addr.eq(self.host(hp, "raddr")[:bits])
                    data_out[hp].append((j, host_r.data))
                for r in readers:  # the core's ports: addresses cut to this memory's depth
                    port, mine = mem.read_port(), getattr(core, r)
                    m.d.comb += [port.addr.eq(mine.addr[:bits]), port.en.eq(mine.en)]
                    for c in cores if name != "b" else [core]:  # W, Q: multicast to every core
                        m.d.comb += getattr(c, r).data.eq(port.data)
                for wname in writers:
                    port, mine = mem.write_port(), getattr(core, wname)
                    m.d.comb += [port.addr.eq(mine.addr[:bits]), port.en.eq(mine.en), port.data.eq(mine.data)]
            for hp, owned in enumerate(data_out):
                if len(owned) > 1:  # B of several cores: the one addressed a cycle ago
                    rcore = Signal.like(self.host(hp, "rcore"), name=f"host{hp}_rcore_{name}")
                    m.d.sync += rcore.eq(self.host(hp, "rcore"))
                    data = owned[0][1]
                    for j, d in owned[1:]:
                        data = Mux(rcore == j, d, data)
                    rdata[hp][k] = data
                elif owned:
                    rdata[hp][k] = owned[0][1]
        for hp in range(self._hp):
            m.d.comb += [self.host(hp, "wready").eq(Cat(*wready[hp], Const(1)).all()),
                         self.host(hp, "rready").eq(Cat(*rready[hp], Const(1)).all())]
        m.d.comb += self.b_conflict.eq(Cat(*dropped, Const(0)).any())
        for hp in range(self._hp):  # each port reads the memories it owns (others read as one of them)
            sel = Signal(2, name=f"host{hp}_rsel_q")
            m.d.sync += sel.eq(self.host(hp, "rsel"))
            if not rdata[hp]:
                continue
            # above a narrower word, the widest owned memory's bits (no select, no zeroing)
            words = {k: Value.cast(d) for k, d in rdata[hp].items()}
            wide = max(words, key=lambda k: len(words[k]))
            base = Cat(words[wide], Const(0, self._width - len(words[wide])))
            out = base
            for k, d in sorted(words.items()):
                if k != wide:
                    out = Mux(sel == k, Cat(d, base[len(d):]), out)
            m.d.comb += self.host(hp, "rdata").eq(out)
        return m
