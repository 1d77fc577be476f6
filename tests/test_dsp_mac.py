"""hw.dsp_mac: the behaviour against a Python model, and the DSP48E2 primitive (its parameters
and OPMODE, through a model of the slice's datapath after UG579) against the behaviour in Icarus."""

import random
import shutil
import subprocess

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hw.dsp_mac import PRIMITIVE_PARAMS, XILINX, Addend, DspMac, opmode, primitive_declaration


def _wrap(v, bits=48):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


@pytest.mark.parametrize("widths", [(8, 8, 32, None), (27, 18, 48, None), (2, 2, 2, None),
                                    (26, 8, 48, 8)])
def test_behaviour_is_the_multiply_accumulate(widths):
    a_bits, b_bits, c_bits, d_bits = widths
    dut = DspMac(*widths[:3], d_bits=d_bits)
    rng = random.Random(a_bits * b_bits + c_bits)
    lim = lambda n: (-(1 << (n - 1)), (1 << (n - 1)) - 1)  # noqa: E731

    async def bench(ctx):
        p = 0
        for k in range(600):
            a = rng.choice([*lim(a_bits), rng.randint(*lim(a_bits))])
            b = rng.choice([*lim(b_bits), rng.randint(*lim(b_bits))])
            c = rng.choice([*lim(c_bits), rng.randint(*lim(c_bits))])
            pcin = rng.choice([*lim(48), rng.randint(*lim(48))])
            d = rng.choice([*lim(d_bits), rng.randint(*lim(d_bits))]) if d_bits else 0
            if d_bits:
                a = a >> 18 << 18  # the packed weights' high operand: (w1 << 18) + w0
                ctx.set(dut.d, d)
            addend = Addend.C if k == 0 else rng.choice(list(Addend))
            add_c, ce = rng.random() < 0.5, k == 0 or rng.random() < 0.8
            for port, v in ((dut.a, a), (dut.b, b), (dut.c, c), (dut.pcin, pcin), (dut.addend, addend),
                            (dut.add_c, add_c), (dut.ce, ce)):
                ctx.set(port, v)
            await ctx.tick()
            if ce:
                z = {Addend.ZERO: 0, Addend.PCIN: pcin, Addend.P: p, Addend.C: c}[addend]
                p = _wrap((a + d) * b + z + (c if add_c else 0))
            assert ctx.get(dut.p) == p == ctx.get(dut.pcout)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_opmode_codes():
    """X = M, Y = M; Z = 0, PCIN, P or C; W = 0 or C (UG579 tables 2-7 to 2-9)."""
    assert [opmode(a) for a in (Addend.ZERO, Addend.PCIN, Addend.P, Addend.C)] == [
        0b000000101, 0b000010101, 0b000100101, 0b000110101]
    assert opmode(Addend.PCIN, add_c=True) == 0b110010101


# The DSP48E2 datapath after UG579 (chapter 2): A x B (27 x 18, AMULTSEL = A, BMULTSEL = B), the
# X/Y/Z/W multiplexers by OPMODE, ALUMODE 0000 (Z + W + X + Y + CIN), the P register. Only the
# combinational input paths are modelled; any other register setting stops the simulation.
_SLICE_MODEL = """
module DSP48E2 #(parameter integer AREG = 1, ACASCREG = 1, BREG = 1, BCASCREG = 1, CREG = 1,
    DREG = 1, ADREG = 1, MREG = 1, PREG = 1, OPMODEREG = 1, ALUMODEREG = 1, INMODEREG = 1,
    CARRYINREG = 1, CARRYINSELREG = 1, parameter A_INPUT = "DIRECT", B_INPUT = "DIRECT",
    AMULTSEL = "A", BMULTSEL = "B", PREADDINSEL = "A", USE_MULT = "MULTIPLY", USE_SIMD = "ONE48",
    USE_PATTERN_DETECT = "NO_PATDET", USE_WIDEXOR = "FALSE") (
    input CLK, input [29:0] A, ACIN, input [17:0] B, BCIN, input [47:0] C, PCIN, input [26:0] D,
    input [8:0] OPMODE, input [3:0] ALUMODE, input [4:0] INMODE, input [2:0] CARRYINSEL,
    input CARRYIN, CARRYCASCIN, MULTSIGNIN, CEA1, CEA2, CEAD, CEALUMODE, CEB1, CEB2, CEC,
    CECARRYIN, CECTRL, CED, CEINMODE, CEM, CEP, RSTA, RSTALLCARRYIN, RSTALUMODE, RSTB, RSTC,
    RSTCTRL, RSTD, RSTINMODE, RSTM, RSTP,
    output [29:0] ACOUT, output [17:0] BCOUT, output CARRYCASCOUT, output [3:0] CARRYOUT,
    output MULTSIGNOUT, OVERFLOW, PATTERNBDETECT, PATTERNDETECT, UNDERFLOW,
    output [47:0] PCOUT, output [7:0] XOROUT, output reg [47:0] P);
  assign PCOUT = P;
  initial begin
    P = 0;
    if (AREG != 0 || BREG != 0 || CREG != 0 || MREG != 0 || PREG != 1 || OPMODEREG != 0 ||
        ALUMODEREG != 0 || INMODEREG != 0 || CARRYINREG != 0 || CARRYINSELREG != 0 ||
        DREG != 0 || ADREG != 0 || (AMULTSEL != "A" && AMULTSEL != "AD") || BMULTSEL != "B" ||
        PREADDINSEL != "A" || USE_MULT != "MULTIPLY" || USE_SIMD != "ONE48")
      $fatal(1, "DSP48E2 model: unsupported parameters");
  end
  // INMODE[2]: D into the pre-adder, [3]: subtract, [1]: A zeroed, [0]/[4]: A1/B1 (registers)
  wire [26:0] ad = (INMODE[1] ? 27'd0 : A[26:0]) + (INMODE[3] ? -1 : 1) * (INMODE[2] ? D : 27'd0);
  wire signed [44:0] m = $signed(AMULTSEL == "AD" ? ad : A[26:0]) * $signed(B);
  wire [47:0] mx = {{3{m[44]}}, m};
  reg [47:0] x, y, z, w;
  always @* begin
    case (OPMODE[1:0]) 2'b00: x = 0; 2'b01: x = mx; 2'b10: x = P; default: x = {A, B}; endcase
    case (OPMODE[3:2]) 2'b00: y = 0; 2'b01: y = 0; 2'b10: y = {48{1'b1}}; default: y = C; endcase
    case (OPMODE[6:4]) 3'b000: z = 0; 3'b001: z = PCIN; 3'b010: z = P; 3'b011: z = C;
      default: z = 48'bx; endcase
    case (OPMODE[8:7]) 2'b00: w = 0; 2'b01: w = P; 2'b10: w = 0; default: w = C; endcase
    if (OPMODE[1:0] == 2'b01 && OPMODE[3:2] != 2'b01) x = 48'bx;  // M takes both X and Y
  end
  always @(posedge CLK) begin
    if (ALUMODE != 4'b0000 || INMODE[4] || INMODE[0] || CARRYIN || CARRYINSEL != 0) P <= 48'bx;
    else if (RSTP) P <= 0;
    else if (CEP) P <= z + w + x + y;
  end
endmodule
"""

_BENCH = """
module bench;
  reg clk = 0, ce = 0;
  reg [25:0] a; reg [7:0] b, d; reg [31:0] c; reg [2:0] addend; reg add_c; reg [47:0] pcin;
  wire [47:0] p_slice, p_model, pc_slice, pc_model;
  slice s(.clk(clk), .rst(1'b0), .a(a[A_BITS-1:0]), .b(b), .c(c), .pcin(pcin), .addend(addend),
          .add_c(add_c), .ce(ce), .p(p_slice), .pcout(pc_slice) PRE_S);
  model m(.clk(clk), .rst(1'b0), .a(a[A_BITS-1:0]), .b(b), .c(c), .pcin(pcin), .addend(addend),
          .add_c(add_c), .ce(ce), .p(p_model), .pcout(pc_model) PRE_M);
  integer k, errors = 0, seed = 7;
  always #5 clk = ~clk;
  initial begin
    for (k = 0; k < 20000; k = k + 1) begin
      a = (k % 97 == 0) ? (A_BITS > 8 ? 26'h2000000 : 26'h80) : $random(seed);
      b = (k % 89 == 0) ? 8'h80 : $random(seed);
      d = (k % 79 == 0) ? 8'h80 : $random(seed); if (A_BITS > 8) a[17:0] = 0;
      c = (k % 83 == 0) ? 32'h80000000 : $random(seed);
      pcin = {$random(seed), $random(seed)}; add_c = $random(seed);
      case (k == 0 ? 3 : $unsigned($random(seed)) % 4) 0: addend = 3'b000; 1: addend = 3'b001;
        2: addend = 3'b010; default: addend = 3'b011; endcase
      ce = k == 0 || ($unsigned($random(seed)) % 5 != 0);
      @(posedge clk); #1;
      if (p_slice !== p_model || pc_slice !== pc_model) begin errors = errors + 1;
        if (errors < 5) $display("cycle %0d: slice %h, behaviour %h", k, p_slice, p_model); end
    end
    $display("ERRORS %0d", errors);
    $finish;
  end
endmodule
"""


@pytest.mark.parametrize("pre", [False, True], ids=["plain", "pre-adder"])
def test_primitive_equals_behaviour_in_icarus(tmp_path, pre):
    """The generator's DSP48E2 instance (parameters, OPMODE, sign extension, clock enable, the
    cascade) on a model of the slice against the behaviour Amaranth simulates: 20,000 random
    and extreme cycles, P and PCOUT compared every cycle."""
    if shutil.which("iverilog") is None:
        pytest.fail("iverilog is not installed (scripts/ensure-iverilog installs it)")
    make = (lambda: DspMac(26, 8, 48, d_bits=8)) if pre else DspMac  # the MAT engine's: (w1 << 18) + w0
    slice_v = verilog.convert(make(), name="slice", platform=XILINX, emit_src=False)
    model_v = verilog.convert(make(), name="model", emit_src=False)
    assert "DSP48E2" in slice_v and "DSP48E2" not in model_v
    for name in PRIMITIVE_PARAMS:
        assert f".{name}(" in slice_v, name
    assert ('.AMULTSEL("AD")' in slice_v) == pre
    bench = (_BENCH.replace("A_BITS", "26" if pre else "8").replace("PRE_S", ", .d(d)" if pre else "")
             .replace("PRE_M", ", .d(d)" if pre else ""))
    (tmp_path / "all.v").write_text("`timescale 1ns/1ps\n" + _SLICE_MODEL + slice_v + model_v + bench)
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "sim"), str(tmp_path / "all.v")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], check=True, capture_output=True,
                         text=True).stdout
    assert "ERRORS 0" in out, out


def test_primitive_declaration_has_every_port_the_instance_connects():
    decl = primitive_declaration()
    slice_v = verilog.convert(DspMac(), name="slice", platform=XILINX, emit_src=False)
    inst = slice_v[slice_v.index(") dsp ("):]
    ports = {line.strip()[1:line.strip().index("(")] for line in inst.splitlines()
             if line.strip().startswith(".")}
    header = decl[decl.index("(") + 1:decl.index(";")].rstrip(")")
    assert ports == {name.strip() for name in header.split(",")}  # all of them, each once
    with pytest.raises(ValueError, match="C width"):
        DspMac(8, 8, 49)
