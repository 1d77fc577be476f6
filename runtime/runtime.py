"""Runs a program on an accelerator through a backend (the same code for simulation and board).

A backend provides, all as coroutines: ``write_mem(addr, data)``, ``read_mem(addr, n)``,
``write_reg(offset, value)``, ``read_reg(offset)`` (raising on an AXI error response) and
``wait_irq()``; and the attributes ``dram_base``, ``dram_size`` (the DRAM window the runtime may
use). ``runtime.sim_backend.SimBackend`` is the cocotb one.
"""

from dataclasses import dataclass, field

import numpy as np

from hw.registers import BY_NAME, COUNTERS, VERSION, Control, ErrorCode, Irq, Status
from quant.integer import host_input, host_linear_post
from runtime.program import ProgramError
from sim.core_ops import decode_output, input_words

__all__ = ["Runtime", "RunError", "Result"]

PAGE = 4096


class RunError(Exception):
    """A run stopped with an error code, or did not end; one line says which and where."""


@dataclass
class Result:
    logits: np.ndarray
    cycles: list = field(default_factory=list)  # per segment, from the CYCLES counter
    stamps: list = field(default_factory=list)  # per segment, the trace: [(index, opcode, cycle)]
    counters: list = field(default_factory=list)  # per segment, {counter: cycles}


def _align(n):
    return -(-n // PAGE) * PAGE


class Runtime:
    def __init__(self, backend, program):
        self.be, self.prog = backend, program
        lay = program.layout
        self.beat_bytes = lay["axi_bits"] // 8
        self.lanes = lay["lanes"]
        self.word_beats = lay["word_beats"]
        base = backend.dram_base
        self.bases = {"program": base}
        self.bases["weights"] = _align(base + lay["regions"]["program"])
        self.bases["activations"] = _align(self.bases["weights"] + lay["regions"]["weights"])
        self.bases["output"] = self.bases["activations"]
        end = self.bases["activations"] + lay["regions"]["activations"]
        if end > backend.dram_base + backend.dram_size:
            raise ProgramError(f"the program needs {end - base:,} bytes of DRAM, "
                               f"the backend has {backend.dram_size:,}")

    async def reg(self, name, value=None):
        off = BY_NAME[name].offset
        if value is None:
            return await self.be.read_reg(off)
        await self.be.write_reg(off, value)

    async def attach(self):
        """Check the accelerator: the register map version and the configuration hash."""
        version = await self.reg("VERSION")
        if version != VERSION:
            raise ProgramError(f"the accelerator's register map is version {version:#x}, "
                               f"this runtime's {VERSION:#x}")
        h = await self.reg("CONFIG_HASH_HI") << 32 | await self.reg("CONFIG_HASH_LO")
        if f"{h:016x}" != self.prog.config_hash:
            raise ProgramError(f"{self.prog.folder}: compiled for configuration [{self.prog.config_hash}], "
                               f"the accelerator is [{h:016x}]; recompile with its configuration")

    async def load(self):
        """Write the program and the weights region; set the region bases."""
        await self.attach()
        await self.be.write_mem(self.bases["program"], self.prog.instructions)
        await self.be.write_mem(self.bases["weights"], self.prog.weights)
        for region, base in self.bases.items():
            await self.reg(f"{region.upper()}_BASE_LO", base & 0xFFFF_FFFF)
            await self.reg(f"{region.upper()}_BASE_HI", base >> 32)
        await self.reg("IRQ_ENABLE", Irq.DONE | Irq.ERROR)

    # -- tensors in the activations region
    def _word_bytes(self, mem):
        return self.word_beats[mem] * self.beat_bytes

    async def write_tensor(self, name, words):
        t = self.prog.tensors[name]
        wb = self._word_bytes(t["mem"])
        raw = np.zeros((len(words), wb), np.uint8)
        lanes = np.asarray(words, np.int64).astype(np.int8).view(np.uint8)
        raw[:, :self.lanes] = lanes.reshape(len(words), -1)
        await self.be.write_mem(self.bases["activations"] + t["offset"], raw.tobytes())

    async def read_tensor(self, name):
        """A layer's output as the integer model has it (int8 activations, int32 accumulators)."""
        t = self.prog.tensors[name]
        wb = self._word_bytes(t["mem"])
        raw = np.frombuffer(await self.be.read_mem(self.bases["activations"] + t["offset"], t["words"] * wb),
                            np.uint8).reshape(t["words"], wb)
        lane_bytes = 1 if t["mem"] == "b" else 4
        vals = raw[:, :self.lanes * lane_bytes].copy().view(np.int8 if lane_bytes == 1 else "<i4")
        return decode_output(vals.astype(np.int64), t.get("kind", ""), t["mem"], tuple(t["shape"]),
                             t.get("groups", 1))

    # -- a run
    async def _segment(self, k):
        start, length = self.prog.layout["segments"][k]
        size = self.prog.layout["instruction_bytes"]
        base = self.bases["program"] + start * size
        await self.reg("PROGRAM_BASE_LO", base & 0xFFFF_FFFF)
        await self.reg("PROGRAM_BASE_HI", base >> 32)
        await self.reg("PROGRAM_LENGTH", length)
        await self.reg("IRQ_STATUS", Irq.DONE | Irq.ERROR)
        await self.reg("CONTROL", Control.START)
        await self.be.wait_irq()
        status = await self.reg("STATUS")
        await self.reg("IRQ_STATUS", Irq.DONE | Irq.ERROR)
        count = await self.reg("TRACE_COUNT")
        stamps = []
        for i in range(count):
            await self.reg("TRACE_INDEX", i)
            word = await self.reg("TRACE_OPCODE")
            stamps.append((word >> 8, word & 0xFF, await self.reg("TRACE_CYCLE")))
        code = status >> Status.ERROR_SHIFT & ((1 << Status.ERROR_BITS) - 1)
        if code:
            where = start + max((s[0] + 1 for s in stamps), default=0)
            raise RunError(f"segment {k} stopped with error {code} ({ErrorCode.NAMES.get(code, '?')}) "
                           f"at instruction {where}")
        if not status & Status.DONE:
            raise RunError(f"segment {k}: interrupt without DONE (STATUS {status:#x})")
        counters = {}
        for name in COUNTERS:
            lo = await self.reg(f"{name.upper()}_LO")  # latches the high half
            counters[name] = await self.reg(f"{name.upper()}_HI") << 32 | lo
        return counters, stamps

    async def infer(self, image):
        """One image (float, normalised, (C, H, W)) through the network; returns a ``Result``."""
        lay = self.prog.layout
        x = host_input(np.asarray(image, np.float64), {"scale": self.prog.host["input_scale"]})
        inputs = [(n, t) for n, t in lay["tensors"].items() if t.get("host") and not n.endswith(".host")]
        for name, t in inputs:
            packing = tuple(t["packing"]) if t.get("packing") else None
            await self.write_tensor(name, input_words(x, packing, self.lanes))
        result = Result(logits=None)
        steps = {s["segment"]: s for s in lay["host_steps"]}
        for k in range(len(lay["segments"])):
            counters, stamps = await self._segment(k)
            result.cycles.append(counters["cycles"])
            result.counters.append(counters)
            result.stamps.append(stamps)
            step = steps.get(k)
            if step is None:
                continue
            acc = await self.read_tensor(step["src"])
            key = step["key"]
            r = {name: self.prog.host.get(f"{key}_{name}") for name in
                 ("acc_scale", "ln_weight", "ln_bias", "ln_eps", "out_scale")}
            r["post"] = True if step["post"] else None
            y = host_linear_post(acc, r)
            if step["post"]:
                words = input_words(np.asarray(y).reshape(-1, 1, 1), None, self.lanes)
                await self.write_tensor(step["dst"], words)
            else:
                result.logits = y
        return result
