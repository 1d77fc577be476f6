"""The host runtime without a simulator: a program folder checked before use (missing, truncated,
foreign configuration), and the register and memory operations of a run against a fake backend
that plays the accelerator's registers."""

import asyncio
import shutil

import pytest

from gen.compile import compile_network, load_frozen
from hw.config import PRESETS
from hw.registers import BY_NAME, VERSION, Control, Status
from runtime import Program, ProgramError, RunError, Runtime


@pytest.fixture(scope="module")
def program(proxy_quantized, tmp_path_factory):
    frozen, shape, _ = load_frozen(proxy_quantized)
    d = tmp_path_factory.mktemp("program") / "p"
    compile_network(frozen, shape, PRESETS["tiny"]).write(d)
    return d


class FakeBackend:
    """Registers in a dict; a START ends at once with the given STATUS; memory in a bytearray."""

    def __init__(self, config_hash, status=Status.DONE, size=1 << 24):
        self.regs = {BY_NAME["VERSION"].offset: VERSION,
                     BY_NAME["CONFIG_HASH_LO"].offset: config_hash & 0xFFFF_FFFF,
                     BY_NAME["CONFIG_HASH_HI"].offset: config_hash >> 32}
        self.mem = bytearray(size)
        self.dram_base, self.dram_size = 0, size
        self.status, self.log = status, []

    async def write_mem(self, addr, data):
        self.mem[addr:addr + len(data)] = data
        self.log.append(("mem", addr, len(data)))

    async def read_mem(self, addr, n):
        return bytes(self.mem[addr:addr + n])

    async def write_reg(self, off, value):
        self.log.append(("reg", off, value))
        self.regs[off] = value
        if off == BY_NAME["CONTROL"].offset and value & Control.START:
            self.regs[BY_NAME["STATUS"].offset] = self.status

    async def read_reg(self, off):
        return self.regs.get(off, 0)

    async def wait_irq(self):
        pass


def test_program_folder_errors(program, tmp_path):
    with pytest.raises(ProgramError, match="no such program folder"):
        Program(tmp_path / "none")
    bad = tmp_path / "truncated"
    shutil.copytree(program, bad)
    (bad / "program.bin").write_bytes((bad / "program.bin").read_bytes()[:-5])
    with pytest.raises(ProgramError, match="truncated"):
        Program(bad)
    shutil.copy(program / "program.bin", bad / "program.bin")
    (bad / "weights.bin").write_bytes(b"")
    with pytest.raises(ProgramError, match="weights.bin"):
        Program(bad)
    (bad / "layout.json").unlink()
    with pytest.raises(ProgramError, match="layout.json missing"):
        Program(bad)


def test_foreign_configuration_is_refused(program):
    prog = Program(program)
    be = FakeBackend(int(PRESETS["paper"].hash, 16))
    with pytest.raises(ProgramError, match="recompile with its configuration"):
        asyncio.run(Runtime(be, prog).load())
    assert not any(kind == "mem" for kind, *_ in be.log), "nothing may be written before the check"


def test_load_writes_the_image_and_the_region_bases(program):
    prog = Program(program)
    be = FakeBackend(int(prog.config_hash, 16))
    rt = Runtime(be, prog)
    asyncio.run(rt.load())
    assert bytes(be.mem[:len(prog.instructions)]) == prog.instructions
    w = rt.bases["weights"]
    assert bytes(be.mem[w:w + len(prog.weights)]) == prog.weights
    assert be.regs[BY_NAME["WEIGHTS_BASE_LO"].offset] == w


def test_a_run_error_names_the_code(program):
    prog = Program(program)
    be = FakeBackend(int(prog.config_hash, 16), status=Status.DONE | 3 << Status.ERROR_SHIFT)
    rt = Runtime(be, prog)
    asyncio.run(rt.load())
    import numpy as np
    with pytest.raises(RunError, match="DMA read SLVERR"):
        asyncio.run(rt.infer(np.zeros((3, 64, 64))))
