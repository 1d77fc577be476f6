"""The computing core's command: one tile descriptor, defined once for the RTL, the replay and
(later) the compiler and the instruction set.

A command is one op of the integer model (or a part of one) on one core: its kind, shapes,
strides and the buffer addresses of its inputs, weights, parameters and outputs. The core's
address generators (``hw/core.py``) walk it; ``Command`` (host side) validates and packs it.
Buffers are addressed in words:

- **B** (activations): one word = T int8 channels of one pixel; a (C, H, W) tensor at ``base``
  is pixel-major, ``cw = ceil(C / T)`` words per pixel: word ``base + (y*W + x)*cw + c // T``.
- **W** (weights, buffer C): one word = one chunk, S lanes x T int8 weights. A reduction's
  weights are ``tiles`` runs of ``chunks = k*k*cwg`` words, chunk ``(ky*k + kx)*cwg + cc``
  holding input channels ``cc*T .. cc*T+T-1`` of the group at tap (ky, kx).
- **Grouped convs** keep each group word-aligned: a group of ``cg`` input channels takes
  ``cwg = ceil(cg / T)`` words of every pixel and ``group_tiles = ceil(og / S)`` output tiles
  (output words), zero-padded; the producer of the input writes that layout.
- **Q** (parameters, buffer C): one word per output tile (reductions) or channel chunk (add),
  ``ParamLayout``: a union of the reduction's and the add's per-lane parameters.
- **O** (int32 results, the output buffer): one word = S int32 lanes.

**Pixel blocks** (weight reuse): a reduction walks its pixels in blocks; each engine holds a
weight chunk for one block, one beat per pixel (``pblock`` / ``pbig``: ``pixel_blocks``), and a
block of fewer than ``min_beats`` pixels still takes ``min_beats`` beats per chunk (the rate of
the weight port). An odd last tile split between the engines walks ``split`` pixels in blocks
``oblock`` / ``obig``, the R-MAC engine on the pixels from ``split`` on.
"""

from dataclasses import dataclass, fields

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from quant import arith

__all__ = ["Op", "Post", "Command", "CommandError", "command_layout", "param_layout", "DIM_BITS", "cdiv",
           "pixel_blocks", "block_beats", "tail_pad", "split_pixels", "pixel_loop", "follow_loop"]

DIM_BITS = 16  # shapes, counts and word strides


class Op(enum.Enum, shape=3):
    REDUCE = 0  # conv / pointwise / grouped pointwise / linear on both engines
    ADD = 1  # residual add, element-wise over two tensors
    POOL = 2  # global average pool: per-channel sums over the pixels, one requantization
    DW = 3  # depthwise conv on the R-MAC engine (self-accumulation), window from buffer B
    ATTN_VK = 4  # one head: vk = v . ReLU(k)^T as outer products on the R-MAC engine, sum ReLU(k)
    ATTN_Q = 5  # one head: ReLU(q) . [sum k | vk] on both engines, into the attention output path


class Post(enum.Enum, shape=2):
    REQUANT = 0  # int8 through the requantizer
    HSWISH = 1  # int8 through the integer Hardswish (and the filter-wise shift)
    INT32 = 2  # raw int32 accumulators to the output buffer (head linears)


def command_layout(addr_bits):
    """The descriptor as an ``amaranth.lib.data.StructLayout``; addresses ``addr_bits`` wide."""
    a, d = unsigned(addr_bits), unsigned(DIM_BITS)
    return data.StructLayout({
        "op": Op, "post": Post,
        "in_base": a, "in2_base": a, "out_base": a, "w_base": a, "q_base": a,
        "in_h": d, "in_w": d, "in_cw": d,  # input height, width, words per pixel
        "out_w": d, "out_cw": d, "pixels": d,  # output width, words per pixel, pixel count
        "out_h": d, "blocks": d,  # depthwise: output rows, blocks of M pixels per row
        "k": unsigned(3), "stride": unsigned(2), "pad": unsigned(3),
        "tiles": d, "cwg": d, "chunks": d,  # output tiles; input words per group; k*k*cwg
        # tile t belongs to group t // group_tiles, whose inputs start at word group * group_cw
        "group_tiles": d, "group_cw": d,
        "split": d, "split_y": d, "split_x": d,  # odd last tile: the R-MAC engine's first pixel
        # pixel blocks (weight reuse): `pbig` blocks of `pblock` pixels, then blocks of pblock - 1;
        # the split odd tile's `split` pixels likewise in `oblock` / `obig`; >= min_beats per block
        "pblock": d, "pbig": d, "oblock": d, "obig": d, "min_beats": d,
        # depthwise: bands of `band` output rows (band_pixels pixels, band_words output words),
        # all channel words of a band before the next; a REDUCE with `follow` runs on the MAT engine
        # alongside it, each pixel once its band is written (the DW -> PW band pipeline)
        "band": d, "band_pixels": d, "band_words": d, "follow": unsigned(1),
        # depthwise and generic convs: rows above 0 and from in_h on are read from the buffer
        # (halo rows of the neighbouring cores' row groups, or zeros the DMA put there), not padded
        "halo": unsigned(1),
        # derived (``Command.derived``; the address generators step by them instead of multiplying):
        # words per input and output row, and where the split odd tile's R-MAC engine starts
        # (input row, input pixel, output pixel)
        "in_row": a, "out_row": a, "split_irow": a, "split_iw": a, "split_ow": a,
        "three": unsigned(arith.HSWISH_BITS - 1),  # Hardswish threshold T
        "pool_mult": unsigned(arith.MULT_BITS), "pool_shift": unsigned(arith.SHIFT_BITS),
        # attention (per-tensor): vk and sum-k requantizers, the numerator's, the log2 offset
        "vk_mult": unsigned(arith.MULT_BITS), "vk_shift": unsigned(arith.SHIFT_BITS),
        "ks_mult": unsigned(arith.MULT_BITS), "ks_shift": unsigned(arith.SHIFT_BITS),
        "num_mult": unsigned(arith.MULT_BITS), "num_shift": unsigned(arith.SHIFT_BITS),
        "log2_offset": signed(arith.OFFSET_BITS),
    })


def param_layout(lanes):
    """One word of buffer Q: per-lane parameters of a reduction's output tile, or of an add's
    channel chunk (a union: the command's op says which view is meant)."""
    vec = lambda shape: data.ArrayLayout(shape, lanes)  # noqa: E731
    reduce = data.StructLayout({
        "bias": vec(signed(arith.ACC_BITS)),
        "h_mult": vec(unsigned(arith.MULT_BITS)), "h_shift": vec(unsigned(arith.SHIFT_BITS)),
        "offset": vec(signed(arith.SHIFT_OFFSET_BITS)),
        "mult": vec(unsigned(arith.MULT_BITS)), "shift": vec(unsigned(arith.SHIFT_BITS)),
    })
    add = data.StructLayout({
        "mult_a": vec(unsigned(arith.MULT_BITS)), "mult_b": vec(unsigned(arith.MULT_BITS)),
        "shift": vec(unsigned(arith.SHIFT_BITS)),
    })
    return data.UnionLayout({"reduce": reduce, "add": add})


def cdiv(a, b):
    """ceil(a / b) for integers."""
    return -(-a // b)


def pixel_blocks(pixels, largest):
    """How the core cuts ``pixels`` into blocks of at most ``largest``: ceil(pixels / largest)
    blocks as equal as can be. Returns (size, big, count): ``big`` blocks of ``size`` pixels,
    then ``count - big`` of ``size - 1``."""
    count = cdiv(pixels, largest)
    size = cdiv(pixels, count)
    return size, pixels - count * (size - 1), count


def block_beats(pixels, smallest, largest):
    """Beats of one chunk over ``pixels`` in blocks (``pixel_blocks``), a block of fewer than
    ``smallest`` pixels taking ``smallest``."""
    size, big, count = pixel_blocks(pixels, largest)
    return big * max(size, smallest) + (count - big) * max(size - 1, smallest)


def tail_pad(pixels, smallest, largest):
    """Padding beats of the last block of a run over ``pixels``: none are issued after the
    command's last real beat (no weight chunk follows it)."""
    size, big, count = pixel_blocks(pixels, largest)
    return max(0, smallest - (size if big == count else size - 1))


def split_pixels(pixels, smallest):
    """The MAT engine's pixels of an odd last tile: half of them when each half has at least
    ``smallest`` pixels (the R-MAC engine takes the rest), else all of them."""
    return cdiv(pixels, 2) if pixels >= 2 * smallest else pixels


def pixel_loop(pixels, width, smallest, largest, one=1):
    """The pixel-loop fields of a reduction over ``pixels`` output pixels (``width`` per row):
    the odd last tile is split between the engines when each half has at least ``smallest``
    pixels, else it runs on the MAT engine alone; a single pixel (the head linears) takes
    ``one`` beats per chunk (``hw.accelerator.one_pixel_beats``: two where the weight buffer's
    port is shared)."""
    split = split_pixels(pixels, smallest)
    pblock, pbig, _ = pixel_blocks(pixels, largest)
    oblock, obig, _ = pixel_blocks(split, largest)
    return dict(split=split, split_y=split // width, split_x=split % width, pblock=pblock, pbig=pbig,
                oblock=oblock, obig=obig, min_beats=one if pixels == 1 else smallest)


def follow_loop(pixels, width, band, smallest, largest):
    """The pixel-loop fields of a REDUCE that follows a depthwise command on the MAT engine:
    segments of ``band`` rows (``width`` pixels each), all tiles of a segment before the next,
    each in blocks (``pixel_blocks``; the last, shorter segment in ``oblock`` / ``obig``)."""
    seg = band * width
    pblock, pbig, _ = pixel_blocks(seg, largest)
    oblock, obig, _ = pixel_blocks(pixels % seg or seg, largest)
    return dict(follow=1, band=band, band_pixels=seg, pblock=pblock, pbig=pbig, oblock=oblock, obig=obig,
                min_beats=smallest, split=pixels, split_y=0, split_x=0)


class CommandError(ValueError):
    """A command the core cannot run (the message names the field)."""


@dataclass(frozen=True)
class Command:
    """Host-side form of one command; ``fields()`` gives the values ``command_layout`` packs."""

    op: Op
    post: Post = Post.REQUANT
    in_base: int = 0
    in2_base: int = 0
    out_base: int = 0
    w_base: int = 0
    q_base: int = 0
    in_h: int = 1
    in_w: int = 1
    in_cw: int = 1
    out_w: int = 1
    out_cw: int = 1
    pixels: int = 1
    out_h: int = 1
    blocks: int = 1
    k: int = 1
    stride: int = 1
    pad: int = 0
    tiles: int = 1
    cwg: int = 1
    chunks: int = 1
    group_tiles: int = 1
    group_cw: int = 0
    split: int = 0
    split_y: int = 0
    split_x: int = 0
    pblock: int = 1
    pbig: int = 1
    oblock: int = 1
    obig: int = 1
    min_beats: int = 1
    band: int = 0
    band_pixels: int = 0
    band_words: int = 0
    follow: int = 0
    halo: int = 0
    three: int = 1
    pool_mult: int = 0
    pool_shift: int = 0
    vk_mult: int = 0
    vk_shift: int = 0
    ks_mult: int = 0
    ks_shift: int = 0
    num_mult: int = 0
    num_shift: int = 0
    log2_offset: int = 0

    def derived(self):
        """The fields the packed descriptor adds to these (products of them, computed here once so
        that the core's address generators only add)."""
        in_row = self.in_w * self.in_cw
        split_irow = self.split_y * self.stride * in_row
        return dict(in_row=in_row, out_row=self.out_w * self.out_cw, split_irow=split_irow,
                    split_iw=split_irow + self.split_x * self.stride * self.in_cw,
                    split_ow=self.split * self.out_cw)

    def _items(self):
        for f in fields(self):
            yield f.name, getattr(self, f.name)
        yield from self.derived().items()

    def check(self, addr_bits):
        """Raise ``CommandError`` naming the first field that does not fit its width."""
        layout = command_layout(addr_bits)
        for name, v in self._items():
            if isinstance(v, enum.Enum):
                continue
            width = layout[name].width
            if name == "log2_offset":
                lo, hi = arith.int_range(width)
                if not lo <= v <= hi:
                    raise CommandError(f"command field {name} = {v} does not fit {width} signed bits")
                continue
            if not 0 <= v < 1 << width:
                raise CommandError(f"command field {name} = {v} does not fit {width} bits")
        if self.k not in (1, 3, 5) or self.stride not in (1, 2):
            raise CommandError(f"kernel {self.k} / stride {self.stride}: the core runs k in 1, 3, 5 "
                               f"and stride 1 or 2")
        return self

    def value(self, addr_bits):
        """The packed descriptor (an int) for the core's command port."""
        layout = command_layout(addr_bits)
        word = 0
        for name, v in self._items():
            v = v.value if isinstance(v, enum.Enum) else v
            field = layout[name]
            word |= (v & ((1 << field.width) - 1)) << field.offset
        return word
