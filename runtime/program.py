"""A compiled program folder (``gen.compile``), checked before anything is written to a device."""

import json
from pathlib import Path

import numpy as np

__all__ = ["Program", "ProgramError", "FORMAT"]

FORMAT = 1  # the layout.json format this runtime reads (gen.compile.FORMAT)
FILES = ("layout.json", "program.bin", "weights.bin", "host.npz")


class ProgramError(Exception):
    """The program folder is missing, truncated, or not for this accelerator; one line says why."""


class Program:
    """``layout`` (the parsed layout.json), ``instructions`` and ``weights`` (bytes), ``host``
    (the host steps' parameters). Raises ProgramError when a file is missing or truncated."""

    def __init__(self, folder):
        folder = Path(folder)
        if not folder.is_dir():
            raise ProgramError(f"{folder}: no such program folder (write one with python -m gen.compile)")
        for name in FILES:
            if not (folder / name).is_file():
                raise ProgramError(f"{folder}: {name} missing; not a program folder of python -m gen.compile")
        try:
            self.layout = json.loads((folder / "layout.json").read_text())
        except json.JSONDecodeError as e:
            raise ProgramError(f"{folder / 'layout.json'}: not valid JSON ({e})") from None
        if self.layout.get("format") != FORMAT:
            raise ProgramError(f"{folder}: layout format {self.layout.get('format')!r}, "
                               f"this runtime reads {FORMAT}")
        self.instructions = (folder / "program.bin").read_bytes()
        self.weights = (folder / "weights.bin").read_bytes()
        size = self.layout["instruction_bytes"]
        want = sum(n for _, n in self.layout["segments"]) * size
        if len(self.instructions) != want:
            raise ProgramError(f"{folder / 'program.bin'}: {len(self.instructions)} bytes, "
                               f"the layout says {want} "
                               f"(truncated or from another compile)")
        if len(self.weights) != self.layout["regions"]["weights"]:
            raise ProgramError(f"{folder / 'weights.bin'}: {len(self.weights)} bytes, the layout says "
                               f"{self.layout['regions']['weights']} (truncated or from another compile)")
        with np.load(folder / "host.npz") as h:
            self.host = {k: h[k] for k in h.keys()}
        self.folder = folder

    config_hash = property(lambda self: self.layout["config_hash"])
    tensors = property(lambda self: self.layout["tensors"])
    ops = property(lambda self: self.layout["ops"])
