"""The host runtime without a simulator: a program folder checked before use (missing, truncated,
foreign configuration), and the register and memory operations of a run against a fake backend
that plays the accelerator's registers."""

import asyncio
import shutil

import numpy as np
import pytest

from gen.compile import compile_network, load_frozen
from hw.config import PRESETS
from hw.registers import BY_NAME, VERSION, Control, Irq, Status
from runtime import Program, ProgramError, RunError, Runtime


@pytest.fixture(scope="module")
def program(proxy_quantized, tmp_path_factory):
    frozen, shape, meta = load_frozen(proxy_quantized)
    d = tmp_path_factory.mktemp("program") / "p"
    compile_network(frozen, shape, PRESETS["tiny"], model=meta["model"]).write(d)
    return d


class FakeBackend:
    """Registers in a dict; a START ends at once with the given STATUS; memory in a bytearray."""

    def __init__(self, config_hash, status=Status.DONE, size=1 << 24, base=0):
        self.regs = {BY_NAME["VERSION"].offset: VERSION,
                     BY_NAME["CONFIG_HASH_LO"].offset: config_hash & 0xFFFF_FFFF,
                     BY_NAME["CONFIG_HASH_HI"].offset: config_hash >> 32}
        self.mem = bytearray(size)
        self.dram_base, self.dram_size = base, size
        self.status, self.log = status, []

    async def write_mem(self, addr, data):
        self.mem[addr - self.dram_base:addr - self.dram_base + len(data)] = data
        self.log.append(("mem", addr, len(data)))

    async def read_mem(self, addr, n):
        return bytes(self.mem[addr - self.dram_base:addr - self.dram_base + n])

    async def write_reg(self, off, value):
        self.log.append(("reg", off, value))
        self.play(off, value)

    def play(self, off, value):
        """The register write's effect: a START ends at once with ``status``."""
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


def test_every_layer_output_reads_back_in_its_shape(program):
    """Every layer's output decodes from its words (``Runtime.read_tensor``) to the integer
    model's shape: on ``tiny`` the proxy's last attention runs in two head rounds, and its output
    is laid out by the whole op's heads, not the first round's."""
    prog = Program(program)
    rt = Runtime(FakeBackend(int(prog.config_hash, 16)), prog)
    asyncio.run(rt.load())
    ops = prog.layout["ops"]
    assert any(o["kind"] == "attn" for o in ops)
    for op in ops:
        t = prog.tensors[op["dst"]]
        got = asyncio.run(rt.read_tensor(op["dst"]))
        want = tuple(t["shape"]) if t["mem"] == "b" and t.get("kind") != "pool" else (t["shape"][0],)
        assert got.shape == want, op["name"]


def test_a_run_error_names_the_code(program):
    prog = Program(program)
    be = FakeBackend(int(prog.config_hash, 16), status=Status.DONE | 3 << Status.ERROR_SHIFT)
    rt = Runtime(be, prog)
    asyncio.run(rt.load())
    with pytest.raises(RunError, match="DMA read SLVERR"):
        asyncio.run(rt.infer(np.zeros((3, 64, 64))))


class FakeRegisters:
    """The accelerator's registers as the board backend sees them (read/write of 32-bit words):
    a START raises IRQ_STATUS.DONE at once; every access recorded."""

    def __init__(self, config_hash):
        self.fake = FakeBackend(config_hash)
        self.log = []

    def read(self, off):
        if off == BY_NAME["IRQ_STATUS"].offset:
            return Irq.DONE
        return self.fake.regs.get(off, 0)

    def write(self, off, value):
        self.log.append(("reg", off, value))
        self.fake.play(off, value)


class FakeBuffer(np.ndarray):
    """A pynq buffer: uint8 array with a physical address; flushes and invalidates counted."""

    def __new__(cls, size, address):
        buf = np.zeros(size, np.uint8).view(cls)
        buf.physical_address, buf.flushes, buf.invalidates = address, 0, 0
        return buf

    def flush(self):
        self.flushes += 1

    def invalidate(self):
        self.invalidates += 1


def test_board_backend_issues_what_the_simulation_backend_does(program):
    """The board backend on a fake memory map: the same register writes (offsets and values, in
    order) and the same DRAM image as the backend the simulation runs, with the buffer flushed after
    every write and invalidated before every read."""
    from runtime.board_backend import BoardBackend

    prog = Program(program)
    h = int(prog.config_hash, 16)
    image = np.random.default_rng(0).normal(size=prog.layout["input_shape"])
    ref = FakeBackend(h, size=1 << 24, base=0x6000_0000)
    want = asyncio.run(_load_and_infer(Runtime(ref, prog), image))
    regs, buf = FakeRegisters(h), FakeBuffer(1 << 24, 0x6000_0000)
    board = BoardBackend(regs, buf, timeout_s=1)
    got = asyncio.run(_load_and_infer(Runtime(board, prog), image))
    assert [x for x in ref.log if x[0] == "reg"] == regs.log
    assert bytes(buf) == bytes(ref.mem)
    assert np.array_equal(got.logits, want.logits)
    writes = sum(1 for x in ref.log if x[0] == "mem")
    assert buf.flushes == writes and buf.invalidates >= 1


async def _load_and_infer(rt, image):
    await rt.load()
    return await rt.infer(image)


def test_board_backend_errors_and_mappings(tmp_path):
    from runtime.board_backend import BoardBackend, MappedRegisters, UdmaBuffer

    board = BoardBackend(FakeRegisters(0), FakeBuffer(4096, 0x1000), timeout_s=0.01)
    with pytest.raises(RunError, match="outside the buffer"):
        asyncio.run(board.write_mem(0x1000 + 4000, bytes(100)))
    board.regs.read = lambda off: 0  # the interrupt never comes
    with pytest.raises(RunError, match="no interrupt within"):
        asyncio.run(board.wait_irq())
    # /dev/mem and u-dma-buf stand-ins: plain files mapped the same way
    mem = tmp_path / "mem"
    mem.write_bytes(bytes(3 * 4096))
    regs = MappedRegisters(mem, 4096)
    regs.write(0x10, 0xDEADBEEF)
    assert regs.read(0x10) == 0xDEADBEEF and mem.read_bytes()[4096 + 0x10:4096 + 0x14] == b"\xef\xbe\xad\xde"
    sysfs = tmp_path / "sys" / "udmabuf0"
    sysfs.mkdir(parents=True)
    (sysfs / "phys_addr").write_text("0x70000000\n")
    (sysfs / "size").write_text("8192\n")
    (tmp_path / "udmabuf0").write_bytes(bytes(8192))
    buf = UdmaBuffer("udmabuf0", dev_dir=tmp_path, sys_dir=tmp_path / "sys")
    assert (buf.physical_address, buf.size) == (0x7000_0000, 8192)
    b = BoardBackend(regs, buf)
    asyncio.run(b.write_mem(0x7000_0010, b"abc"))
    assert asyncio.run(b.read_mem(0x7000_0010, 3)) == b"abc"
    with pytest.raises(RunError, match="u-dma-buf module loaded"):
        UdmaBuffer("udmabuf9", dev_dir=tmp_path, sys_dir=tmp_path / "sys")


def test_runtime_cli_errors_are_one_line(program, tmp_path):
    import subprocess
    import sys

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "runtime", "run", *args], capture_output=True, text=True)
        return p.returncode, p.stderr

    rc, err = run("--program", str(tmp_path / "none"), "--image", "x.png")
    assert rc == 2 and err.count("\n") == 1 and "no such program folder" in err
    rc, err = run("--program", str(program), "--image", str(tmp_path / "none.png"))
    assert rc == 2 and err.count("\n") == 1 and "not a readable image" in err and "Traceback" not in err
