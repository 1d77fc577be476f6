"""``python -m runtime run --program DIR --image FILE``: one image through a compiled network on the
board (``runtime.board_backend``); prints the top-5 classes and the latency.

    python -m runtime run --program DIR --image FILE [--bitfile trio_vit.bit]
                          [--register-base 0xA0000000] [--udmabuf udmabuf0] [--timeout S]

Errors (a missing or foreign program, an unreadable image, no board) are one line, exit 2; a run
that stops with an error code exits 1.
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

PROG = "python -m runtime"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.exit(2)


def load_image(path, layout):
    """The image at ``path`` as the network takes it (``quant.data.preprocess`` with the model's
    resolution, crop and normalisation), float (C, H, W)."""
    from PIL import Image, UnidentifiedImageError

    from quant.data import preprocess
    from quant.model import ModelError, get_spec
    from runtime.program import ProgramError

    model = layout.get("model")
    if not model:
        raise ProgramError("the program does not name its model; recompile it with python -m gen.compile")
    try:
        spec = get_spec(model)
    except ModelError as e:
        raise ProgramError(str(e)) from None
    try:
        with Image.open(path) as img:
            x = preprocess(img, layout["input_shape"][1], spec.crop, spec.mean, spec.std)
    except (OSError, UnidentifiedImageError) as e:
        raise ProgramError(f"{path}: not a readable image ({e})") from None
    return x.astype(np.float64)


def top5(logits):
    order = np.argsort(-np.asarray(logits, np.float64), kind="stable")[:5]
    return [(int(k), float(logits[k])) for k in order]


async def run(backend, prog, image):
    from runtime.runtime import Runtime

    rt = Runtime(backend, prog)
    await rt.load()
    t0 = time.perf_counter()
    result = await rt.infer(image)
    return result, time.perf_counter() - t0


def main(argv=None):
    p = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one image through a program on the board")
    r.add_argument("--program", required=True, help="a program folder (python -m gen.compile)")
    r.add_argument("--image", required=True, help="an image file (JPEG, PNG, ...)")
    r.add_argument("--bitfile", help="trio_vit.bit from python -m gen's Vivado run (PYNQ loads it)")
    r.add_argument("--register-base", type=lambda s: int(s, 0), help="register base (default 0xA0000000)")
    r.add_argument("--udmabuf", default="udmabuf0", help="u-dma-buf device without PYNQ (udmabuf0)")
    r.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the interrupt")
    a = p.parse_args(argv)

    from runtime.board_backend import open_board
    from runtime.program import Program, ProgramError
    from runtime.runtime import RunError

    try:
        prog = Program(a.program)
        image = load_image(a.image, prog.layout)
        backend = open_board(a.bitfile, a.register_base, udmabuf=a.udmabuf, timeout_s=a.timeout)
        result, wall = asyncio.run(run(backend, prog, image))
    except ProgramError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    except RunError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1 if "stopped with error" in str(e) else 2
    freq = prog.layout["config"]["freq_mhz"]
    cycles = sum(result.cycles)
    print(f"{Path(a.image).name}: top-5 " + ", ".join(f"class {k} ({v:.3f})" for k, v in top5(result.logits)))
    print(f"latency: {cycles:,} cycles = {cycles / freq / 1e3:.3f} ms at {freq:g} MHz on the accelerator "
          f"({len(result.cycles)} segments); {wall * 1e3:.1f} ms with the host steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
