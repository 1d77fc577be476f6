"""Host runtime of the accelerator: loads a program folder (``python -m gen.compile``), writes its
DRAM image, performs the host steps of the arithmetic contract (image -> int8 input; LayerNorm +
Hardswish between the head linears; logits), programs the registers (``hw.registers``), starts a
run, waits for the interrupt and reads the results -- through a backend: ``runtime.sim_backend``
(cocotb, the generated RTL against cocotbext-axi models) today, the board's later."""

from runtime.program import Program, ProgramError
from runtime.runtime import RunError, Runtime

__all__ = ["Program", "ProgramError", "Runtime", "RunError"]
