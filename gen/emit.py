"""Verilog emission of components, stamped with the configuration that produced them."""

import re
from importlib.metadata import version

from amaranth.back import rtlil as _rtlil
from amaranth.back import verilog
from amaranth.hdl import _nir

_amaranth_version = version("amaranth")

__all__ = ["module_name", "unit_verilog", "memory_init", "for_simulation"]

PREFIX = "trio_"


def module_name(unit_name):
    """Verilog module name of a registry unit, e.g. ``trio_requantizer``."""
    return PREFIX + unit_name


def _emit_memory_init(self, cell_idx, cell):
    """Amaranth 0.5's ``ModuleEmitter.emit_memory`` with the init data written as one RTLIL
    constant (the text ``sigspec`` makes of all-constant nets), instead of through one ``Net``
    object per bit: a 16-core accelerator's buffers hold 23 Mbit, which took a minute that way. The
    RTLIL is the same text (``tests/test_gen.py`` compares both)."""
    memory_info = self.memories[cell_idx]
    mask = (1 << cell.width) - 1
    bits = "".join(format(row & mask, f"0{cell.width}b") for row in reversed(cell.init))
    self.builder.cell("$meminit_v2", ports={
        "ADDR": self.sigspec(),
        "DATA": f"{len(bits)}'{bits}" if bits else self.sigspec(),
        "EN": self.sigspec(_nir.Value.ones(cell.width)),
    }, parameters={
        "MEMID": memory_info.memid,
        "ABITS": 0,
        "WIDTH": cell.width,
        "WORDS": cell.depth,
        "PRIORITY": 0,
    }, src_loc=cell.src_loc)


_AMARANTH_EMIT_MEMORY = _rtlil.ModuleEmitter.emit_memory
if _amaranth_version.startswith("0.5."):  # the method this replaces is Amaranth 0.5's
    _rtlil.ModuleEmitter.emit_memory = _emit_memory_init


def unit_verilog(component, name, stamp, platform=None):
    """Verilog text of ``component`` as module ``name``, headed by ``stamp`` comment lines,
    elaborated for ``platform`` (``hw.dsp_mac.XILINX``: vendor primitives; None: simulation).

    A ``timescale`` directive is included so Icarus (under cocotb) and Vivado agree on units.
    """
    text = verilog.convert(component, name=name, emit_src=False, platform=platform)
    header = "".join(f"// {line}\n" for line in stamp)
    return header + "`timescale 1ns/1ps\n" + text


def memory_init(text, files=None):
    """Rewrite the entry-by-entry ``initial`` block Amaranth emits for every memory (all zeros
    here; megabytes of Verilog for deep memories) as ``$readmemh`` of ``files[name]``, or as a
    zero-filling loop for memories not in ``files``."""
    files = files or {}
    decl = re.compile(r"^( *)reg (\[\d+:0\] )?(\S+) \[(\d+):0\];\n"
                      r"\1initial begin\n(?:\1  \3\[\d+\] = [^;]+;\n)+\1end\n", re.M)

    def repl(mt):
        ind, width, name, top = mt.group(1), mt.group(2) or "", mt.group(3), int(mt.group(4))
        head = f"{ind}reg {width}{name} [{top}:0];\n"
        if name in files:
            return head + f'{ind}initial $readmemh("{files[name]}", {name});\n'
        return (head + f"{ind}integer {name}__i;\n{ind}initial for ({name}__i = 0; {name}__i <= {top}; "
                f"{name}__i = {name}__i + 1) {name}[{name}__i] = 0;\n")

    return decl.sub(repl, text)


_KICK = re.compile(r"^( *)reg (\\\$auto\$verilog_backend\S*) += 0;$", re.M)


def for_simulation(text):
    """Verilog for event-driven simulators: deep memories as ``memory_init`` does, and Yosys's
    start-up trigger (``reg \\$auto$verilog_backend... = 0``, which every combinational block tests
    so that it runs once at time 0) assigned at ``#0`` instead of in its declaration: Icarus
    performs declaration assignments before the ``always @*`` blocks wait, so a combinational
    output of registers that keep their initial values (a controller's ``busy`` in its idle
    state) would stay X, and the design would never leave it."""
    return _KICK.sub(lambda m: f"{m.group(1)}reg {m.group(2)} ;\n{m.group(1)}initial #0 {m.group(2)} = 1'h1;",
                     memory_init(text))
