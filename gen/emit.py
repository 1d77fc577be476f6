"""Verilog emission of components, stamped with the configuration that produced them."""

from amaranth.back import verilog

__all__ = ["module_name", "unit_verilog"]

PREFIX = "trio_"


def module_name(unit_name):
    """Verilog module name of a registry unit, e.g. ``trio_requantizer``."""
    return PREFIX + unit_name


def unit_verilog(component, name, stamp):
    """Verilog text of ``component`` as module ``name``, headed by ``stamp`` comment lines.

    A ``timescale`` directive is included so Icarus (under cocotb) and Vivado agree on units.
    """
    text = verilog.convert(component, name=name, emit_src=False)
    header = "".join(f"// {line}\n" for line in stamp)
    return header + "`timescale 1ns/1ps\n" + text
