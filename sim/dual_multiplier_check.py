"""Exactness of the packed DualMultiplier on Icarus, over all or nearly all int8 operands.

A plain-Verilog testbench (no cocotb: 16.7 M checks need the simulator's own loop) compares the
emitted Verilog of ``DualMultiplier(packing=True)`` with ``a*b0`` and ``a*b1``.

- near-exhaustive: every (a, b0) pair with b1 over a set of corner values, and every (a, b1)
  pair with b0 over the same set: 2 x 65,536 x |set| triples (pytest: 3 values, about 20 s;
  the command line without --full: 13 values, about 90 s);
- exhaustive (``python -m sim.dual_multiplier_check --full``, in ``make sim-full``): all 2**24
  triples, about 3 minutes on Icarus.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from hw.dual_multiplier import DualMultiplier

__all__ = ["check_dual_multiplier", "CORNERS"]

CORNERS = (-128, -127, -65, -64, -2, -1, 0, 1, 2, 63, 64, 126, 127)

_TB = """
module tb;
  reg signed [7:0] a, b0, b1;
  wire signed [15:0] p0, p1;
  integer i, j, f, checked, errors;
  integer fixed [0:{n}];
  dual dut(.a(a), .b0(b0), .b1(b1), .p0(p0), .p1(p1));
  task check; begin
    #1; checked = checked + 1;
    if (p0 !== a * b0 || p1 !== a * b1) begin
      if (errors < 5) $display("MISMATCH a=%0d b0=%0d b1=%0d p0=%0d p1=%0d", a, b0, b1, p0, p1);
      errors = errors + 1;
    end
  end endtask
  initial begin
    checked = 0; errors = 0;
    {init}
    for (i = -128; i < 128; i = i + 1)
      for (j = -128; j < 128; j = j + 1)
        {loop}
    $display("RESULT checked=%0d errors=%0d", checked, errors);
    $finish;
  end
endmodule
"""


def check_dual_multiplier(full=False, corners=CORNERS, workdir=None):
    """Run the check; return (checked, errors)."""
    if full:
        init, n = "", 0
        loop = ("for (f = -128; f < 128; f = f + 1) begin "
                "a = i; b0 = j; b1 = f; check; end")
    else:
        init = " ".join(f"fixed[{k}] = {v};" for k, v in enumerate(corners))
        n = len(corners) - 1
        loop = (f"for (f = 0; f <= {n}; f = f + 1) begin "
                "a = i; b0 = j; b1 = fixed[f]; check; a = i; b0 = fixed[f]; b1 = j; check; end")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        dut = DualMultiplier(packing=True)
        (tmp / "dual.v").write_text(verilog.convert(dut, name="dual", emit_src=False))
        (tmp / "tb.v").write_text(_TB.format(n=n, init=init, loop=loop))
        subprocess.run(["iverilog", "-g2012", "-o", str(tmp / "tb.vvp"), str(tmp / "tb.v"),
                        str(tmp / "dual.v")], check=True, capture_output=True, text=True)
        out = subprocess.run(["vvp", "-n", str(tmp / "tb.vvp")], check=True, capture_output=True,
                             text=True).stdout
    for line in out.splitlines():
        if line.startswith("MISMATCH"):
            print(line, file=sys.stderr)
    match = re.search(r"RESULT checked=(\d+) errors=(\d+)", out)
    if not match:
        raise RuntimeError(f"no result from the testbench:\n{out[-2000:]}")
    return int(match.group(1)), int(match.group(2))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.dual_multiplier_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="all 2**24 operand triples (minutes)")
    args = p.parse_args(argv)
    checked, errors = check_dual_multiplier(full=args.full)
    print(f"DualMultiplier(packing=True) on Icarus: {checked} operand triples, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
