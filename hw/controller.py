"""The controller: fetches the program's instructions (``hw.isa``) from DRAM, dispatches them to
three queues -- LOAD on the DMA reader, COMPUTE on the core, STORE on the DMA writer -- that run
concurrently under the program's dependency tokens, and reports the end of a run to the
registers."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import Resp
from hw.command import command_layout
from hw.control_registers import trace_layout
from hw.dma_reader import load_layout
from hw.dma_writer import store_layout
from hw.isa import HEADER, INSTRUCTION_BITS, TOKEN_BITS, Buffer, Opcode, Queue, Token, body_layouts, dma_port
from hw.params import check_int
from hw.registers import REGIONS, ErrorCode

__all__ = ["Controller", "QUEUE_DEPTH", "TRACE_ORDER"]

TRACE_ORDER = (Queue.COMPUTE, Queue.LOAD, Queue.STORE)  # who retires first when two would at once
QUEUE_DEPTH = 8  # instructions each queue holds (the accelerator's; the compiler bounds tokens by it)

INSTRUCTION_SHIFT = (INSTRUCTION_BITS // 8).bit_length() - 1  # log2 of an instruction's bytes


class Controller(wiring.Component):
    """Runs a program from ``START`` to ``END`` or the first error.

    **Dispatcher.** Fetches one instruction at a time by a DMA read of ``INSTRUCTION_BITS /
    axi_bits`` beats on engine 0 into the instruction register (FETCH, FETCH_WAIT), decodes it
    (DECODE) and pushes it to its queue (``hw.isa.Queue``; stalls while that queue holds
    ``queue_depth`` instructions), then fetches the next. SYNC and END wait until every queue is
    empty and idle (BARRIER); END then ends the run. An instruction fetch takes engine 0's reader
    before a LOAD waiting for it (a reader runs one command at a time).

    **Queues.** Each starts its instructions in order: the head starts once the counters of its
    ``wait`` tokens are non-zero (and takes one of each). COMPUTE hands its command to the core
    and is done -- or, if it signals, waits until the core is idle. LOAD and STORE hand their
    transfer to the DMA engine of their ``port`` (``hw.isa.dma_port``) once that engine is free:
    up to ``ports`` transfers run at once, one per engine, and each holds its engine until it
    retires; they retire in program order. Retiring takes a cycle: the trace entry and the
    ``signal`` tokens (one instruction per cycle over the queues, ``TRACE_ORDER``). Token bits of
    directions that do not end (``wait``) or start (``signal``) at the instruction's queue are
    ignored.

    **Errors** (``hw.registers.ErrorCode``): an illegal opcode, a fetch, load or store answered
    SLVERR/DECERR, a transfer past its buffer or on another engine than its buffer's,
    PROGRAM_LENGTH reached without END, a token counter overflow, or a deadlock (the dispatcher
    and every queue wait and nothing runs) stop new work; the run ends with the first error's
    code once the DMA and the core are idle. A soft reset does the same without a code.

    Parameters
    ----------
    addr_width : int
        DRAM byte address width of the AXI ports.
    axi_bits : int
        AXI data width (instruction fetch beats).
    addr_bits : int
        Buffer word address width of the core commands.
    word_shifts : tuple of 4 ints
        log2 of the DRAM beats per buffer word, per ``hw.isa.Buffer``.
    dma_addr_bits, dim_bits : int
        The DMA engine's buffer-beat address width and count width.
    queue_depth : int
        Instructions each queue holds (2..64).
    cores : int
        Computing cores of the array (1..64): a COMPUTE whose mask names another core or leaves
        out core 0 ends the run with CORE_MASK.
    ports : int
        DMA engines, one per AXI port (1..4).

    Members
    -------
    start, soft_reset : In(1) (pulses from the registers); busy : Out(1); finish : Out(1) (pulse),
        error : Out(8) (``ErrorCode``, with ``finish``).
    program_length : In(32); ``<region>_base`` : In(64) per ``hw.registers.REGIONS``.
    load, store : Out(stream.Signature(load_layout(...))), Out(stream.Signature(store_layout(...))),
        arrays of ``ports``: to the DMA engines; ``load_busy``, ``store_busy`` : In(1) and
        ``load_error``, ``store_error`` : In(2), one per engine.
    fetch_wr : Out(memory.WritePort.Signature(...)): engine 0's writes while ``fetching`` (the
        controller is the memory: the beat at address k is the instruction's k-th beat).
    fetching : Out(1): engine 0's current command is an instruction fetch.
    load_buffer, store_buffer : Out(2), per engine: the ``hw.isa.Buffer`` of its transfer;
    load_core, store_core : Out(6), per engine: its ``core`` field (whose pixel group of buffer B).
    load_out_of_range, store_out_of_range : In(1), per engine: a beat of its transfer addressed
        past its buffer (the run ends with ADDRESS_RANGE).
    cmd : Out(stream.Signature(command_layout(addr_bits))), cmd_cores : Out(cores): the command and
        the cores that take it at once; core_busy : In(1): any core busy; b_conflict : In(1): a
        core's access of buffer B was dropped (``CoreSlice``: a port of a half asked twice in a
        cycle), which ends the run with ``B_PORTS``.
    trace : Out(stream.Signature(trace_layout)): one entry per completed instruction (its index:
        the place in this run's program, 0 at PROGRAM_BASE).
    stall : Out(1): the core is idle while the next COMPUTE waits for a token (for data).
    """

    def __init__(self, addr_width=40, axi_bits=128, addr_bits=16, word_shifts=(0, 0, 0, 0), dma_addr_bits=20,
                 dim_bits=16, queue_depth=QUEUE_DEPTH, cores=1, ports=1):
        check_int("Address width", addr_width, 12, 64)
        self._cores = check_int("Cores", cores, 1, 64)
        self._ports = check_int("DMA ports", ports, 1, 4)
        check_int("Buffer address width", addr_bits, 4, 24)
        check_int("Queue depth", queue_depth, 2, 64)
        if len(word_shifts) != 4 or any(not 0 <= s <= 4 for s in word_shifts):
            raise ValueError(f"word_shifts must be 4 shifts of 0..4, not {word_shifts!r}")
        if INSTRUCTION_BITS % axi_bits:
            raise ValueError(f"AXI width {axi_bits} does not divide an instruction ({INSTRUCTION_BITS} bits)")
        self._aw, self._axi, self._ab, self._ws = addr_width, axi_bits, addr_bits, tuple(word_shifts)
        self._dab, self._db, self._qd = dma_addr_bits, dim_bits, queue_depth
        members = {
            "start": In(1), "soft_reset": In(1), "busy": Out(1), "finish": Out(1), "error": Out(8),
            "program_length": In(32),
            "load": Out(stream.Signature(load_layout(addr_width, dim_bits, dma_addr_bits))).array(ports),
            "store": Out(stream.Signature(store_layout(addr_width, dim_bits, dma_addr_bits))).array(ports),
            "load_busy": In(1).array(ports), "store_busy": In(1).array(ports),
            "load_error": In(2).array(ports), "store_error": In(2).array(ports),
            "fetch_wr": Out(memory.WritePort.Signature(addr_width=dma_addr_bits, shape=axi_bits)),
            "fetching": Out(1),
            "load_buffer": Out(2).array(ports), "store_buffer": Out(2).array(ports),
            "load_core": Out(6).array(ports), "store_core": Out(6).array(ports),
            "load_out_of_range": In(1).array(ports), "store_out_of_range": In(1).array(ports),
            "cmd": Out(stream.Signature(command_layout(addr_bits))), "cmd_cores": Out(cores),
            "b_conflict": In(1),
            "core_busy": In(1),
            "trace": Out(stream.Signature(trace_layout)), "stall": Out(1),
        }
        members.update({f"{region}_base": In(64) for region in REGIONS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        beats = INSTRUCTION_BITS // self._axi
        bodies = body_layouts(self._ab)
        instr = Signal(INSTRUCTION_BITS)
        with m.If(self.fetch_wr.en):
            with m.Switch(self.fetch_wr.addr[:max(1, (beats - 1).bit_length())]):
                for k in range(beats):
                    with m.Case(k):
                        m.d.sync += instr[k * self._axi:(k + 1) * self._axi].eq(self.fetch_wr.data)
        header = HEADER(instr[:HEADER.size])
        bases = Array(getattr(self, f"{region}_base")[:self._aw] for region in REGIONS)
        shifts = Array(Const(s, 3) for s in self._ws)
        opcodes = {Queue.LOAD: Opcode.LOAD, Queue.COMPUTE: Opcode.COMPUTE, Queue.STORE: Opcode.STORE}

        err = Signal(8)  # the first error's code; non-zero stops new work
        halt = Signal()
        m.d.comb += halt.eq(err != 0)
        flush = Signal()  # empty the queues (end of a run)
        errors = []  # (raised, code): the first raised in this order is kept

        def error(code):
            """Raise ``code`` in the current context (comb)."""
            raised = Signal(name=f"error{len(errors)}")
            m.d.comb += raised.eq(1)
            errors.append((raised, code))

        # Token counters: count + signals - waits, per direction.
        counts = {t: Signal(TOKEN_BITS, name=f"tokens_{t.name.lower()}") for t in Token}
        give = {t: Signal(name=f"give_{t.name.lower()}") for t in Token}
        take = {t: Signal(name=f"take_{t.name.lower()}") for t in Token}
        for t in Token:
            m.d.sync += counts[t].eq(counts[t] + give[t] - take[t])
        overflow = Cat(*(give[t] & ~take[t] & (counts[t] == (1 << TOKEN_BITS) - 1) for t in Token)).any()

        pc = Signal(32)
        # The queues: header + body of each instruction, in program order.
        fifos = {}
        for q in Queue:
            width = HEADER.size + bodies[opcodes[q]].size
            f = fifo.SyncFIFOBuffered(width=width, depth=self._qd)
            m.submodules[f"queue_{q.name.lower()}"] = ResetInserter(flush)(f)
            fifos[q] = f
            lo = HEADER["index"].offset  # the queue carries the instruction's place in this run
            m.d.comb += f.w_data.eq(Cat(instr[:lo], pc[:24], instr[lo + 24:width]))

        def queue_unit(q):
            """The head of queue ``q``, its token checks, and the signals of its FSM."""
            f = fifos[q]
            head = HEADER(f.r_data[:HEADER.size])
            u = dict(head=head, body=bodies[opcodes[q]](f.r_data[HEADER.size:]))
            tokens_ok = Cat(*(~head.wait[t.bit_length() - 1] | (counts[t] != 0)
                              for t in Token if t.dst == q)).all()
            for name in ("ready", "accept", "retire", "granted", "waiting", "issue"):
                u[name] = Signal(name=f"{q.name.lower()}_{name}")
            u["blocked"] = f.r_rdy & ~tokens_ok  # the head waits for a token
            m.d.comb += u["ready"].eq(f.r_rdy & tokens_ok & ~halt)
            # the retiring instruction's signal tokens and index: latched when it starts
            # (COMPUTE), or carried in the order of the DMA engines' transfers (LOAD, STORE)
            signal = u["signal"] = Signal(len(Token), name=f"{q.name.lower()}_signal")
            u["index"] = Signal(24, name=f"{q.name.lower()}_index")
            with m.If(u["accept"]):
                m.d.comb += f.r_en.eq(1)
                if q == Queue.COMPUTE:
                    m.d.sync += [signal.eq(head.signal), u["index"].eq(head.index)]
                m.d.comb += [take[t].eq(head.wait[t.bit_length() - 1]) for t in Token if t.dst == q]
            with m.If(u["retire"] & u["granted"]):
                m.d.comb += [give[t].eq(signal[t.bit_length() - 1]) for t in Token if t.src == q]
            return u

        units = {q: queue_unit(q) for q in Queue}
        in_fetch = Signal()  # the dispatcher holds the DMA reader's command port

        def retire_state(u):
            with m.State("RETIRE"):
                m.d.comb += u["retire"].eq(1)
                with m.If(u["granted"]):
                    m.next = "IDLE"

        def transfer_unit(q, ports, buf_name, busy, resp, out_of_range, slverr, decerr, buffer_out, core_out):
            """LOAD or STORE on the DMA engines: the head goes to the engine of its ``port`` once
            that engine is free; each engine runs one transfer (RUN) and holds it done (DONE)
            until it retires. Transfers retire in program order (``order``: their engines)."""
            u, name = units[q], q.name.lower()
            xfer = u["body"]
            shift = shifts[xfer.buffer]
            n = self._ports
            pb = max(1, (n - 1).bit_length())
            order = fifo.SyncFIFO(width=pb + len(Token) + 24, depth=n)  # engine, signal, index
            m.submodules[f"{name}_order"] = ResetInserter(flush)(order)
            head = u["head"]
            state = [Signal(2, name=f"{name}_engine{p}") for p in range(n)]  # FREE 0, RUN 1, DONE 2
            out = [Signal(name=f"{name}_out_of_range{p}") for p in range(n)]
            port = Signal(range(n), name=f"{name}_port")  # the head's engine
            m.d.comb += port.eq(xfer.port)
            bad_port = Signal(name=f"{name}_bad_port")  # not its buffer's engine (hw.isa.dma_port)
            owner_of_core = Array(Const(dma_port(Buffer.B, c, n), pb) for c in range(1 << len(xfer.core)))
            owner_of_buffer = Array(Const(dma_port(b, 0, n), pb) for b in Buffer)
            owner = Mux(xfer.buffer == Buffer.B, owner_of_core[xfer.core], owner_of_buffer[xfer.buffer])
            m.d.comb += bad_port.eq((xfer.port != owner) | (xfer.port >= n))
            opcode = Opcode.LOAD if q == Queue.LOAD else Opcode.STORE
            takes = Array(Const(opcode in b.directions) for b in Buffer)  # hw.isa.DIRECTIONS
            bad_dir = Signal(name=f"{name}_bad_direction")
            m.d.comb += bad_dir.eq(~takes[xfer.buffer])
            free = Array(s_ == 0 for s_ in state)[port]
            head_port = Signal(range(n), name=f"{name}_retiring")
            m.d.comb += [head_port.eq(order.r_data[:pb]),
                         u["signal"].eq(order.r_data[pb:pb + len(Token)]),
                         u["index"].eq(order.r_data[pb + len(Token):])]
            running = Cat(*(s_ == 1 for s_ in state)).any()
            with m.If(u["ready"] & bad_port):
                error(ErrorCode.PORT)
            with m.Elif(u["ready"] & bad_dir):
                error(ErrorCode.DIRECTION)
            # waiting: nothing to start or retire (after an error, transfers that stopped leave
            # their entries in ``order`` until the flush)
            m.d.comb += [u["waiting"].eq(~u["ready"] & ~running & (~order.r_rdy | halt)),
                         u["issue"].eq(u["ready"] & ~bad_port & ~bad_dir & free
                                       & ((port != 0) | ~in_fetch if q == Queue.LOAD else 1))]
            for p in range(n):
                s_ = state[p]
                pl = ports[p].payload
                with m.If(u["issue"] & (port == p)):
                    m.d.comb += [ports[p].valid.eq(1), pl.addr.eq(bases[xfer.region] + xfer.offset),
                                 pl.row_beats.eq(xfer.row_beats),
                                 pl.rows.eq(xfer.rows), pl.stride.eq(xfer.stride),
                                 getattr(pl, buf_name).eq(xfer.buf_addr << shift),
                                 getattr(pl, f"{buf_name}_stride").eq(xfer.buf_stride << shift)]
                    with m.If(ports[p].ready):
                        m.d.comb += [u["accept"].eq(1), order.w_en.eq(1),
                                     order.w_data.eq(Cat(Const(p, pb), head.signal, head.index))]
                        m.d.sync += [s_.eq(1), buffer_out[p].eq(xfer.buffer), core_out[p].eq(xfer.core),
                                     out[p].eq(0)]
                with m.If(s_ == 1):
                    with m.If(out_of_range[p]):
                        m.d.sync += out[p].eq(1)
                    with m.If(~busy[p]):
                        with m.If(resp[p] != Resp.OKAY):
                            error(Mux(resp[p] == Resp.DECERR, decerr, slverr))
                            m.d.sync += s_.eq(0)
                        with m.Elif(out[p]):
                            error(ErrorCode.ADDRESS_RANGE)
                            m.d.sync += s_.eq(0)
                        with m.Elif(halt):
                            m.d.sync += s_.eq(0)
                        with m.Else():
                            m.d.sync += s_.eq(2)
                with m.If(flush):
                    m.d.sync += s_.eq(0)
            done = Array(s_ == 2 for s_ in state)[head_port]
            with m.If(order.r_rdy & done):
                m.d.comb += u["retire"].eq(1)
                with m.If(u["granted"]):
                    m.d.comb += order.r_en.eq(1)
                    m.d.sync += Array(state)[head_port].eq(0)

        transfer_unit(Queue.LOAD, self.load, "dst", self.load_busy, self.load_error, self.load_out_of_range,
                      ErrorCode.LOAD_SLVERR, ErrorCode.LOAD_DECERR, self.load_buffer, self.load_core)
        transfer_unit(Queue.STORE, self.store, "src", self.store_busy, self.store_error,
                      self.store_out_of_range, ErrorCode.STORE_SLVERR, ErrorCode.STORE_DECERR,
                      self.store_buffer, self.store_core)

        # COMPUTE: the command to the core; with signals, done when the core is idle again.
        cu = units[Queue.COMPUTE]
        mask = cu["body"].cores
        bad_mask = Signal()  # a core the array lacks, or not the leader (core 0)
        m.d.comb += [bad_mask.eq((mask[self._cores:] != 0) | ~mask[0]), self.cmd_cores.eq(mask[:self._cores])]
        with m.FSM(name="compute_state"):
            with m.State("IDLE"):
                m.d.comb += [cu["waiting"].eq(~cu["ready"]), self.cmd.valid.eq(cu["ready"] & ~bad_mask),
                             self.cmd.payload.eq(cu["body"].command)]
                with m.If(cu["ready"] & bad_mask):
                    error(ErrorCode.CORE_MASK)
                with m.If(cu["ready"] & ~bad_mask & self.cmd.ready):
                    m.d.comb += cu["accept"].eq(1)
                    with m.If(cu["head"].signal.any()):
                        m.next = "RUN"
                    with m.Else():
                        m.next = "RETIRE"
            with m.State("RUN"):
                with m.If(~self.core_busy):
                    m.next = "RETIRE"
            retire_state(cu)

        # The dispatcher.
        fetching = Signal()
        m.d.comb += self.fetching.eq(fetching)
        is_op = {op: header.opcode == op for op in Opcode}
        target = Signal(range(len(Queue)))  # the decoded instruction's queue
        m.d.comb += target.eq(Mux(is_op[Opcode.LOAD], Queue.LOAD,
                                  Mux(is_op[Opcode.STORE], Queue.STORE, Queue.COMPUTE)))
        target_full = Array(~fifos[q].w_rdy for q in Queue)[target]
        quiet = Signal()  # nothing runs: the DMA and the core idle, every queue in IDLE with nothing to start
        m.d.comb += quiet.eq(~self.core_busy & ~Cat(*self.load_busy).any() & ~Cat(*self.store_busy).any()
                             & Cat(*(u["waiting"] for u in units.values())).all())
        drained = Cat(*(~f.r_rdy for f in fifos.values())).all() & quiet
        disp_trace, disp_stuck = Signal(), Signal()
        fetch = self.load[0]  # instruction fetches take engine 0
        ld = fetch.payload
        with m.FSM(name="state"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), err.eq(0)] + [counts[t].eq(0) for t in Token]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.soft_reset | halt):
                    m.next = "HALT"
                with m.Elif(pc == self.program_length):
                    error(ErrorCode.NO_END)
                with m.Else():
                    m.d.comb += [
                        in_fetch.eq(1), fetch.valid.eq(1),
                        ld.addr.eq(bases[REGIONS.index("program")] + (pc << INSTRUCTION_SHIFT)),
                        ld.row_beats.eq(beats), ld.rows.eq(1), ld.stride.eq(0), ld.dst.eq(0),
                        ld.dst_stride.eq(0),
                    ]
                    with m.If(fetch.ready):
                        m.d.sync += fetching.eq(1)
                        m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~self.load_busy[0]):
                    with m.If(self.load_error[0] != Resp.OKAY):
                        error(ErrorCode.FETCH_ERROR)
                        m.next = "HALT"
                    with m.Elif(self.soft_reset | halt):
                        m.next = "HALT"
                    with m.Else():
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.soft_reset | halt):
                    m.next = "HALT"
                with m.Elif(is_op[Opcode.LOAD] | is_op[Opcode.STORE] | is_op[Opcode.COMPUTE]):
                    m.d.comb += disp_stuck.eq(target_full)
                    with m.If(~target_full):
                        m.d.comb += Array(f.w_en for f in fifos.values())[target].eq(1)
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
                with m.Elif(is_op[Opcode.SYNC] | is_op[Opcode.END]):
                    m.next = "BARRIER"
                with m.Else():
                    error(ErrorCode.ILLEGAL_OPCODE)
                    m.next = "HALT"
            with m.State("BARRIER"):  # SYNC, END: every queue empty and idle
                m.d.comb += [self.busy.eq(1), disp_stuck.eq(~drained)]
                with m.If(self.soft_reset | halt):
                    m.next = "HALT"
                with m.Elif(drained):
                    m.d.comb += disp_trace.eq(1)
                    with m.If(is_op[Opcode.END]):
                        m.d.comb += [self.finish.eq(1), self.error.eq(ErrorCode.NONE), flush.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
            with m.State("HALT"):  # an error or a soft reset: let the DMA and the core finish
                m.d.comb += self.busy.eq(1)
                with m.If(quiet):
                    m.d.comb += [flush.eq(1), self.finish.eq(err != 0), self.error.eq(err)]
                    m.next = "IDLE"
        with m.If(fetch.valid & fetch.ready & ~in_fetch):
            m.d.sync += fetching.eq(0)

        # Stall and deadlock: a queue's head waits for a token; nothing else can move.
        blocked = Cat(*(u["blocked"] for u in units.values())).any()
        m.d.comb += self.stall.eq(units[Queue.COMPUTE]["blocked"] & ~self.core_busy)
        deadlock = Signal()
        m.d.comb += deadlock.eq(disp_stuck & quiet & blocked & ~halt)
        with m.If(deadlock):
            error(ErrorCode.DEADLOCK)
        with m.If(overflow):
            error(ErrorCode.TOKEN_OVERFLOW)
        with m.If(self.b_conflict):  # the core slice dropped a core's access of buffer B
            error(ErrorCode.B_PORTS)
        with m.If(err == 0):
            for raised, code in reversed(errors):  # the first in the list wins
                with m.If(raised):
                    m.d.sync += err.eq(code)

        # The trace: one entry per cycle; the dispatcher first, then the queues in TRACE_ORDER.
        with m.If(disp_trace):
            m.d.comb += [self.trace.valid.eq(1), self.trace.payload.index.eq(pc),
                         self.trace.payload.opcode.eq(header.opcode)]
        taken = Const(0, 1)
        for q in TRACE_ORDER:
            u = units[q]
            m.d.comb += u["granted"].eq(~disp_trace & ~taken)
            taken = taken | u["retire"]
            with m.If(u["retire"] & u["granted"]):
                m.d.comb += [self.trace.valid.eq(1), self.trace.payload.index.eq(u["index"]),
                             self.trace.payload.opcode.eq(opcodes[q])]
        return m
