"""The instruction set (hw.isa): encodings round-trip, every body fits an instruction, bad fields
and opcodes are refused."""

import pytest

from hw.command import command_layout
from hw.isa import HEADER, INSTRUCTION_BITS, Buffer, Opcode, Token, body_layouts, decode, dma_port, encode


def test_every_body_fits_for_every_buffer_address_width():
    for addr_bits in (4, 16, 24):
        for op, layout in body_layouts(addr_bits).items():
            assert HEADER.size + layout.size <= INSTRUCTION_BITS, (op, addr_bits)


def test_load_round_trip():
    fields = dict(region=1, buffer=Buffer.W, port=3, core=63, offset=(1 << 40) - 16, row_beats=7, rows=65535,
                  stride=4096 * 3, buf_addr=(1 << 24) - 1, buf_stride=9)
    raw = encode(Opcode.LOAD, index=1234, wait=Token.COMPUTE_TO_LOAD, signal=Token.LOAD_TO_COMPUTE, **fields)
    assert len(raw) == INSTRUCTION_BITS // 8
    op, header, body = decode(raw)
    assert op is Opcode.LOAD and header["index"] == 1234
    assert header["wait"] == Token.COMPUTE_TO_LOAD and header["signal"] == Token.LOAD_TO_COMPUTE
    assert body == fields


def test_compute_carries_a_core_command():
    layout = command_layout(16)
    cmd = {"op": 3, "k": 5, "stride": 2, "pixels": 49, "in_base": 0xBEEF, "follow": 1}
    raw = encode(Opcode.COMPUTE, cores=0xFFFF, command=cmd)
    _, _, body = decode(raw)
    assert body["cores"] == 0xFFFF
    packed = body["command"]
    for name, value in cmd.items():
        f = layout[name]
        assert packed >> f.offset & ((1 << f.width) - 1) == value, name


def test_errors():
    with pytest.raises(ValueError, match="illegal opcode 0"):
        decode(bytes(INSTRUCTION_BITS // 8))
    with pytest.raises(ValueError, match="LOAD.rows = 65536 does not fit in 16 bits"):
        encode(Opcode.LOAD, rows=65536)
    with pytest.raises(ValueError, match="no field 'bogus'"):
        encode(Opcode.STORE, bogus=1)
    with pytest.raises(ValueError):
        encode(9)


def test_dma_port_gives_every_memory_one_engine():
    assert {dma_port(b, k, 1) for b in Buffer for k in range(16)} == {0}
    # four engines: B of core k on k mod 4, the weights on 0, the parameters on 1, the outputs on 2
    assert [dma_port(Buffer.B, k, 4) for k in range(6)] == [0, 1, 2, 3, 0, 1]
    assert [dma_port(b, 5, 4) for b in (Buffer.W, Buffer.Q, Buffer.OUT)] == [0, 1, 2]
    assert [dma_port(b, 0, 2) for b in (Buffer.W, Buffer.Q, Buffer.OUT)] == [0, 1, 0]
