"""Ops of the integer model as core commands: buffer images and the ``Command`` that runs them.

For one op (a frozen op of ``quant.integer`` with its input tensors) ``plan`` lays out the
operands in the word formats of ``hw/command.py`` -- inputs and outputs in buffer B, weight
chunks in W, per-tile parameters in Q, int32 results in O -- and returns a ``CorePlan``: the
words to write, the command, where the result lies and how to read it back. This is the part of
the compiler that concerns one core; the replay (``sim.replay``) and the tests use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hw.accelerator import one_pixel_beats
from hw.command import Command, CommandError, Op, Post, cdiv, follow_loop, pixel_loop
from hw.config import DW_KERNELS
from quant.arith import im2col
from sim.dataflow import block_limit, host_im2col
from sim.layout import fields

__all__ = ["pixel_parallel", "by_rows", "split", "group_rows", "head_groups", "split_heads",
           "CorePlan", "FusedPlan", "plan", "fused_plan", "pack_words", "unpack_words", "UnsupportedOp",
           "tensor_words", "input_words", "decode_output"]

class UnsupportedOp(Exception):
    """The op (or its shape) has no core command yet; the message says why."""


def tensor_words(x, lanes):
    """(C, H, W) int8 -> (H*W*cw, lanes): pixel-major, channels padded to whole words."""
    x = np.asarray(x, np.int64)
    c = x.shape[0]
    cw = cdiv(c, lanes)
    flat = np.zeros((x.shape[1] * x.shape[2], cw * lanes), np.int64)
    flat[:, :c] = x.reshape(c, -1).T
    return flat.reshape(-1, lanes)


def input_words(x, packing, lanes):
    """The B words of an input tensor as the host writes it: ``packing`` None (plain
    ``tensor_words``) or ``(k, stride, pad)``: the stem's input unrolled by the host (``im2col``:
    each output pixel's patch as the channels of one pixel)."""
    if packing is None:
        return tensor_words(x, lanes)
    k, stride, pad = packing
    cols, (ho, wo) = im2col(x, k, stride, pad)
    return tensor_words(cols.T.reshape(-1, ho, wo), lanes)


def decode_output(values, kind, mem, out_shape, groups):
    """Result words read back (int64 array (n, lanes)) -> the result tensor: a pool's vector, a
    linear's int32 vector, or (C, H, W) with every group's channels word-aligned."""
    if kind == "pool":
        return values.reshape(-1)[:out_shape[0]]
    if mem == "o":  # linear: (1, tiles) words of S int32
        return values.reshape(-1)[:out_shape[0]]
    c, h, w = out_shape
    flat = values.reshape(h * w, groups, -1)[:, :, :c // groups].reshape(h * w, c)
    return flat.T.reshape(c, h, w)


def _get(value, path):
    for p in path:
        if isinstance(value, dict):
            if p not in value:
                return None
            value = value[p]
        else:
            value = value[p]
    return value


def pack_words(layout, items):
    """``items``: a list of nested values (dicts / arrays indexed like ``layout``) -> ints.
    Fields missing from an item (the other views of a union) are left 0."""
    leaves = fields(layout)
    out = []
    for item in items:
        word = 0
        for path, offset, width, _ in leaves:
            v = _get(item, path)
            if v is not None:
                word |= (int(v) & ((1 << width) - 1)) << offset
        out.append(word)
    return out


def unpack_words(layout, words):
    """Ints of an array layout (e.g. a B word of T int8) -> int64 array (n, ...)."""
    leaves = fields(layout)
    shape = tuple(max(p[d] for p, *_ in leaves) + 1 for d in range(len(leaves[0][0])))
    out = np.zeros((len(words),) + shape, np.int64)
    for path, offset, width, is_signed in leaves:
        vals = np.array([(w >> offset) & ((1 << width) - 1) for w in words], dtype=np.int64)
        if is_signed:
            vals = np.where(vals >> (width - 1), vals - (1 << width), vals)
        out[(slice(None),) + tuple(path)] = vals
    return out


@dataclass
class CorePlan:
    """What one command needs: ``writes[mem] = (base, [word values])`` (nested values packed by
    the caller with the core's layouts), the command, and where its result is."""

    command: Command
    writes: dict = field(default_factory=dict)
    out_mem: str = "b"
    out_base: int = 0
    out_words: int = 0
    out_shape: tuple = ()
    kind: str = ""
    groups: int = 1  # outputs word-aligned per group: (groups, tiles per group * S) per pixel
    commands: list = field(default_factory=list)  # several commands (attention), run in order

    def words_needed(self):
        """Per memory, the highest word address + 1 this command uses (to size the buffers)."""
        top = {mem: base + len(v) for mem, (base, v) in self.writes.items()}
        top[self.out_mem] = max(top.get(self.out_mem, 0), self.out_base + self.out_words)
        return top

    def relocate(self, offsets):
        """The same command with every buffer region moved by ``offsets[mem]`` words (so the
        operands of many commands can sit in one buffer image side by side); ``offsets["out"]``,
        if given, moves the result instead of its memory's offset."""
        o = {m: offsets.get(m, 0) for m in ("b", "w", "q", "o")}
        o["out"] = offsets.get("out", o[self.out_mem])
        writes = {m: (base + o[m], items) for m, (base, items) in self.writes.items()}
        return replace(self, command=_move(self.command, o, "out"),
                       commands=[_move(c, o, "out") for c in self.commands],
                       writes=writes, out_base=self.out_base + o["out"])

    def all_commands(self):
        return self.commands or [self.command]

    def outputs(self):
        """[(memory, base, words, decode)] of the results to read back."""
        return [(self.out_mem, self.out_base, self.out_words, self.decode)]

    def decode(self, values):
        """Words read back from ``out_mem`` (int64 array (n, lanes)) -> the result tensor."""
        return decode_output(values, self.kind, self.out_mem, self.out_shape, self.groups)


def _move(c, o, out_mem):
    """Command ``c`` with its regions moved by ``o[mem]`` words (its output in ``out_mem``)."""
    return replace(c, in_base=c.in_base + o["b"], in2_base=c.in2_base + o["b"],
                   out_base=c.out_base + o[out_mem], w_base=c.w_base + o["w"], q_base=c.q_base + o["q"])


@dataclass
class FusedPlan:
    """A depthwise conv and the pointwise conv it feeds as the band pipeline (docs/architecture.md
    §7) on one core: the depthwise command in bands of ``band`` rows, the pointwise conv of the
    first ``follow_rows`` rows on the MAT engine alongside it (``follow``), the rows left on both
    engines afterwards. The depthwise output stays in B as the pointwise input; both results are
    read back (``outputs``: depthwise, pointwise)."""

    parts: list  # [depthwise CorePlan, pointwise CorePlan], relocated into one image
    commands: list
    writes: dict
    band: int
    follow_rows: int
    kind: str = "dw+pw"

    def all_commands(self):
        return self.commands

    def outputs(self):
        return [o for p in self.parts for o in p.outputs()]

    def words_needed(self):
        top = {}
        for p in self.parts:
            for mem, n in p.words_needed().items():
                top[mem] = max(top.get(mem, 0), n)
        return top

    def relocate(self, offsets):
        o = {m: offsets.get(m, 0) for m in ("b", "w", "q", "o")}
        return replace(self, parts=[p.relocate(offsets) for p in self.parts],
                       commands=[_move(c, o, "b") for c in self.commands],
                       writes={m: (base + o[m], items) for m, (base, items) in self.writes.items()})


def fusable(dw_r, dw_x, pw_r, lanes):
    """Whether a depthwise op and the op after it can run as the band pipeline: the second is a
    1x1 stride-1 conv (plain or grouped with word-aligned groups, so that the depthwise output
    is its input layout) with an int8 output."""
    if dw_r.get("kind") != "conv" or pw_r.get("kind") != "conv":
        return False
    c = np.shape(dw_x)[0]
    w = np.shape(pw_r["w"])
    if not (int(dw_r["groups"]) == c > 1 and w[2] == w[3] == 1 and int(pw_r["stride"]) == 1
            and int(pw_r["pad"]) == 0 and w[1] * int(pw_r["groups"]) == c):
        return False
    g = int(pw_r["groups"])
    return g == 1 or (c // g) % lanes == 0


def fused_plan(dw_r, dw_x, pw_r, pw_x, cfg, addr_bits=None):
    """The ``FusedPlan`` of a depthwise op on ``dw_x`` and the pointwise op after it (``pw_x``: its
    input, the depthwise output, for the plan's shapes), with the band height and the rows of
    the MAT-only part the model finds fastest (``sim.dataflow.fused_core_cycles``); None when
    running them one after the other is no slower (or they cannot be fused)."""
    from hw.core import ComputingCore
    from sim.dataflow import band_post_load, core_cycles, fused_core_cycles

    if not fusable(dw_r, dw_x, pw_r, cfg.s):
        return None
    dwp, pwp = plan(dw_r, [dw_x], cfg, addr_bits), plan(pw_r, [pw_x], cfg, addr_bits)
    d, c = dwp.command, pwp.command
    if c.pixels != d.pixels or c.in_cw != d.out_cw:
        return None
    if band_post_load(cfg, d.k, d.stride, c.chunks) > 1:  # more than the one post-processor takes
        return None
    core = ComputingCore(cfg)
    core._MustUse__silence = True  # read for its overheads
    lo, hi = cfg.block_min, block_limit(cfg, c.chunks * cfg.t)
    ho, wo = d.out_h, d.out_w
    best = (core_cycles(cfg, d, core) + core_cycles(cfg, c, core), None)
    for band in (1, 2, 4):
        if band >= ho:
            break
        dcmd = replace(d, band=band, band_pixels=band * wo, band_words=band * wo * d.out_cw)
        for rows in range(band, ho + 1, band):
            follow = replace(c, in_h=rows, pixels=rows * wo, **follow_loop(rows * wo, wo, band, lo, hi))
            rest = None
            if rows < ho:
                left = (ho - rows) * wo
                rest = replace(c, in_base=c.in_base + rows * wo * c.in_cw,
                               out_base=c.out_base + rows * wo * c.out_cw, in_h=ho - rows, pixels=left,
                               **pixel_loop(left, wo, lo, hi, one_pixel_beats(cfg)))
            cycles = fused_core_cycles(cfg, dcmd, follow, rest, core)
            if cycles < best[0]:
                best = (cycles, (band, rows, [dcmd, follow] + ([rest] if rest else [])))
    if best[1] is None:
        return None
    band, rows, cmds = best[1]
    # one image: B = [depthwise input | depthwise output = pointwise input | pointwise output]
    o = {"b": d.out_base, "w": len(dwp.writes["w"][1]), "q": len(dwp.writes["q"][1])}
    pwp = pwp.relocate(o)
    pwp = replace(pwp, writes={m: v for m, v in pwp.writes.items() if m != "b"})
    cmds = [cmds[0]] + [_move(x, o, "b") for x in cmds[1:]]
    writes = dict(dwp.writes)
    for mem, (base, items) in pwp.writes.items():
        writes[mem] = (writes[mem][0], writes[mem][1] + items) if mem in writes else (base, items)
    if addr_bits is not None:
        try:
            for x in cmds:
                x.check(addr_bits)
        except CommandError as e:
            raise UnsupportedOp(str(e)) from None
    return FusedPlan([dwp, pwp], cmds, writes, band, rows)


def _vec(v, n):
    return np.broadcast_to(np.asarray(v, np.int64).reshape(-1), (n,)) if np.ndim(v) else np.full(n, int(v))


def _reduce(r, x, cfg):
    """conv (generic, pointwise, grouped) or linear."""
    lanes = cfg.s
    if r["kind"] == "linear":
        xin = np.asarray(x, np.int64).reshape(-1, 1, 1)
        w = np.asarray(r["w"], np.int64)[:, :, None, None]
        k, stride, pad, groups = 1, 1, 0, 1
        post = Post.INT32
    else:
        xin = np.asarray(x, np.int64)
        w = np.asarray(r["w"], np.int64)
        k, stride, pad, groups = w.shape[2], r["stride"], r["pad"], r["groups"]
        post = Post.HSWISH if r["act"] == "hswish" else Post.REQUANT
    if k > 1 and host_im2col(xin.shape[0], k, groups, cfg):  # the stem: unrolled by the host
        cols, (ho, wo) = im2col(xin, k, stride, pad)
        xin = cols.T.reshape(-1, ho, wo)  # = input_words(x, (k, stride, pad), lanes)
        w = w.reshape(w.shape[0], -1, 1, 1)
        k, stride, pad = 1, 1, 0
    cin, h, wd = xin.shape
    cout = w.shape[0]
    cg, og = cin // groups, cout // groups
    if groups == cin and groups > 1:
        return _depthwise(r, xin, w, k, stride, pad, post, cfg)
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    # every group word-aligned (hw/command.py): cwg input words and tpg output tiles per group
    cwg, tpg = cdiv(cg, lanes), cdiv(og, lanes)
    tiles = groups * tpg
    chunks = k * k * cwg
    # weights: tile (g, j), chunk (ky*k + kx)*cwg + cc: lane s = output g*og + j*S + s, t' = input cc*T + t'
    wpad = np.zeros((groups, tpg * lanes, cwg * lanes, k, k), np.int64)
    wpad[:, :og, :cg] = w.reshape(groups, og, cg, k, k)
    wch = wpad.reshape(tiles, lanes, cwg, lanes, k, k).transpose(0, 4, 5, 2, 1, 3)
    w_items = list(wch.reshape(tiles * chunks, lanes, lanes))

    def per_tile(v):
        out = np.zeros((groups, tpg * lanes), np.int64)
        out[:, :og] = _vec(v, cout).reshape(groups, og)
        return out.reshape(tiles, lanes)

    names = {Post.HSWISH: ("h_mult", "h_shift", "offset", "mult", "shift"), Post.REQUANT: ("mult", "shift"),
             Post.INT32: ()}[post]
    q = {"bias": per_tile(r["bias"]), **{n: per_tile(r[n]) for n in names}}
    q_items = [{"reduce": {n: a[t] for n, a in q.items()}} for t in range(tiles)]
    xg = np.zeros((groups, cwg * lanes, h, wd), np.int64)
    xg[:, :cg] = xin.reshape(groups, cg, h, wd)
    in_words = tensor_words(xg.reshape(groups * cwg * lanes, h, wd), lanes)
    cw = groups * cwg
    pixels = ho * wo
    out_base = len(in_words)
    cmd = Command(op=Op.REDUCE, post=post, in_base=0, out_base=0 if post == Post.INT32 else out_base,
                  w_base=0, q_base=0, in_h=h, in_w=wd, in_cw=cw, out_w=wo, out_cw=tiles, pixels=pixels,
                  k=k, stride=stride, pad=pad, tiles=tiles, cwg=cwg, chunks=chunks,
                  group_tiles=tpg, group_cw=cwg if groups > 1 else 0, three=int(r.get("three", 1) or 1),
                  **_pixel_loop(pixels, wo, chunks, cfg))
    plan_ = CorePlan(cmd, {"b": (0, list(in_words)), "w": (0, w_items), "q": (0, q_items)},
                     out_mem="o" if post == Post.INT32 else "b", out_base=cmd.out_base,
                     out_words=pixels * tiles, out_shape=(cout,) if post == Post.INT32 else (cout, ho, wo),
                     kind=r["kind"], groups=groups)
    return plan_


def _pixel_loop(pixels, width, chunks, cfg):
    """The command's pixel blocks and odd-tile split (``hw.command.pixel_loop``), with the block
    limit the model uses (buffer A stages the block's inputs: ``chunks`` words per pixel) and the
    accelerator's beats per chunk of a single pixel (``hw.accelerator.one_pixel_beats``)."""
    return pixel_loop(pixels, width, cfg.block_min, block_limit(cfg, chunks * cfg.t), one_pixel_beats(cfg))


def _depthwise(r, x, w, k, stride, pad, post, cfg):
    """Depthwise conv: one weight word per (channel word g, kernel tap), lane 0 holding the N
    channels' weights; one parameter word per channel word."""
    lanes = cfg.n
    c, h, wd = x.shape
    if k not in DW_KERNELS or stride not in (1, 2) or pad != k // 2:
        kernels = " and ".join(f"{n}x{n}" for n in DW_KERNELS)
        raise UnsupportedOp(f"depthwise {k}x{k} stride {stride} pad {pad}: the core runs {kernels}, "
                            f"stride 1 or 2, padding k // 2")
    cw = cdiv(c, lanes)
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    wpad = np.zeros((cw * lanes, k * k), np.int64)
    wpad[:c] = w.reshape(c, k * k)
    w_items = []
    for g in range(cw):
        for tap in range(k * k):
            chunk = np.zeros((lanes, lanes), np.int64)
            chunk[0] = wpad[g * lanes:(g + 1) * lanes, tap]
            w_items.append(chunk)
    names = {Post.HSWISH: ("h_mult", "h_shift", "offset", "mult", "shift"),
             Post.REQUANT: ("mult", "shift")}[post]

    def per_word(v):
        out = np.zeros(cw * lanes, np.int64)
        out[:c] = _vec(v, c)
        return out.reshape(cw, lanes)

    q = {"bias": per_word(r["bias"]), **{n: per_word(r[n]) for n in names}}
    q_items = [{"reduce": {n: a[g] for n, a in q.items()}} for g in range(cw)]
    in_words = tensor_words(x, lanes)
    cmd = Command(op=Op.DW, post=post, in_base=0, out_base=len(in_words), in_h=h, in_w=wd, in_cw=cw,
                  out_w=wo, out_h=ho, out_cw=cw, pixels=ho * wo, blocks=cdiv(wo, cfg.m), k=k, stride=stride,
                  pad=pad, three=int(r.get("three", 1) or 1), band=ho, band_pixels=ho * wo,
                  band_words=ho * wo * cw)
    return CorePlan(cmd, {"b": (0, list(in_words)), "w": (0, w_items), "q": (0, q_items)},
                    out_base=len(in_words), out_words=ho * wo * cw, out_shape=(c, ho, wo), kind="dw")


def _add(r, a, b, lanes):
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    c, h, w = a.shape
    cw = cdiv(c, lanes)
    wa, wb = tensor_words(a, lanes), tensor_words(b, lanes)
    q = {}
    for name in ("mult_a", "mult_b", "shift"):
        v = np.zeros(cw * lanes, np.int64)
        v[:c] = _vec(r[name], c)
        q[name] = v.reshape(cw, lanes)
    q_items = [{"add": {n: v[j] for n, v in q.items()}} for j in range(cw)]
    n = len(wa)
    cmd = Command(op=Op.ADD, in_base=0, in2_base=n, out_base=2 * n, in_h=h, in_w=w, in_cw=cw, out_w=w,
                  out_cw=cw, pixels=h * w)
    return CorePlan(cmd, {"b": (0, list(wa) + list(wb)), "q": (0, q_items)}, out_base=2 * n, out_words=n,
                    out_shape=(c, h, w), kind="add")


def _pool(r, x, lanes):
    x = np.asarray(x, np.int64)
    c, h, w = x.shape
    cw = cdiv(c, lanes)
    words = tensor_words(x, lanes)
    cmd = Command(op=Op.POOL, in_base=0, out_base=len(words), in_h=h, in_w=w, in_cw=cw, out_w=w,
                  out_cw=cw, pixels=h * w, pool_mult=int(np.asarray(r["mult"]).reshape(-1)[0]),
                  pool_shift=int(np.asarray(r["shift"]).reshape(-1)[0]))
    return CorePlan(cmd, {"b": (0, list(words))}, out_base=len(words), out_words=cw, out_shape=(c,),
                    kind="pool")


def _attention(r, branches, cfg):
    """A LiteMLA's attention, per branch and head two commands: ATTN_VK writes the head's
    [sum k | vk] weight chunks (requantized to int8) into W, ATTN_Q reduces ReLU(q) against
    them: tile 0 the divisor, tiles 1.. the numerators, into the attention output path. Inputs
    are laid out word-aligned per (head, q/k/v) group of ``dim`` channels; so is the output,
    per head."""
    lanes = cfg.s
    d = int(np.asarray(r["dim"]))
    cwd = cdiv(d, lanes)
    b_items, b_top = [], 0
    bases, heads = [], []
    for x in branches:
        x = np.asarray(x, np.int64)
        c, h, w = x.shape
        groups = c // d
        xg = np.zeros((groups, cwd * lanes, h, w), np.int64)
        xg[:, :d] = x.reshape(groups, d, h, w)
        words = tensor_words(xg.reshape(groups * cwd * lanes, h, w), lanes)
        bases.append(b_top)
        heads.append(groups // 3)
        b_items += list(words)
        b_top += len(words)
    n = h * w
    if n < cfg.m:
        raise UnsupportedOp(f"attention over {n} tokens: the core's vk serializer needs at least M = {cfg.m}")
    if n > cfg.attention_tokens:
        raise UnsupportedOp(f"attention over {n} tokens: the divisor buffer ({cfg.divisor_kib} KiB) holds "
                            f"{cfg.attention_tokens} int32 divisors; enlarge divisor_kib")
    total = sum(heads)
    out_cw = total * cwd
    region = (1 + cwd) * cwd  # W words per head: [sum k | vk] chunks
    cmds, head0 = [], 0
    offsets = np.asarray(r["log2_offset"]).reshape(-1)
    for bi, (base, nh) in enumerate(zip(bases, heads, strict=True)):
        in_cw = nh * 3 * cwd
        par = {k: int(np.asarray(r[f"b{bi}_{k}"]).reshape(-1)[0])
               for k in ("vk_mult", "vk_shift", "ks_mult", "ks_shift", "num_mult", "num_shift")}
        for hh in range(nh):
            g = head0 + hh
            in_base = base + hh * 3 * cwd
            cmds.append(Command(op=Op.ATTN_VK, in_base=in_base, in_cw=in_cw, pixels=n, cwg=cwd,
                                w_base=g * region, **par))
            tiles = 1 + cwd
            cmds.append(Command(op=Op.ATTN_Q, in_base=in_base, in_h=1, in_w=n, in_cw=in_cw, out_w=n,
                                out_cw=out_cw, pixels=n, tiles=tiles, cwg=cwd, chunks=cwd, group_tiles=tiles,
                                **_pixel_loop(n, n, cwd, cfg), w_base=g * region,
                                out_base=b_top + g * cwd - 1, log2_offset=int(offsets[bi]), **par))
        head0 += nh
    w_zero = [np.zeros((lanes, lanes), np.int64)] * (total * region)
    return CorePlan(cmds[0], {"b": (0, b_items), "w": (0, w_zero)}, out_base=b_top, out_words=n * out_cw,
                    out_shape=(total * d, h, w), kind="attn", groups=total, commands=cmds)


def pixel_parallel(p):
    """Whether plan ``p`` can be cut into groups of consecutive output pixels over the cores
    (``split``): a pointwise reduction (the host-unrolled stem included) into buffer B or a
    residual add -- ops whose output pixel needs only its own input pixel's words -- or a
    depthwise or generic conv, cut into groups of whole output rows (``by_rows``), each core
    reading the input rows of its group and the halo rows around them."""
    if not isinstance(p, CorePlan) or p.commands or p.out_mem != "b":
        return False
    c = p.command
    return c.op in (Op.ADD, Op.DW) or (c.op == Op.REDUCE and c.post != Post.INT32)


def by_rows(p):
    """Whether a ``pixel_parallel`` plan is cut by whole output rows with halos (a depthwise or
    generic k x k conv) rather than by pixels."""
    c = p.command
    return c.op == Op.DW or (c.op == Op.REDUCE and (c.k > 1 or c.stride > 1 or c.pixels != c.in_h * c.in_w))


def group_rows(p):
    """(halo rows above, halo rows below) a depthwise core's own input rows (``split``)."""
    c = p.command
    return c.pad, max(0, c.k - c.pad - c.stride)


def split(p, per_core, cfg, group=0):
    """The plan core ``group`` of a lockstep group runs when ``pixel_parallel`` plan ``p`` is cut
    into groups of ``per_core`` consecutive output pixels (a depthwise conv: whole rows); the
    last group may have fewer: its core computes the rest from whatever its buffer holds, and
    nothing stores those pixels. Every core runs the same command over ``per_core`` pixels, its
    operands at the same buffer addresses, the weights and parameters whole:

    - pointwise or add: each input's words of the group's pixels, one input after the other;
    - by rows (depthwise, generic conv): the group's input rows with ``pad`` halo rows above and
      ``k - pad - s`` below (zeros beyond the tensor), the command's input at the first of its
      own rows (``halo``).
    """
    c = p.command
    base, words = p.writes["b"]
    assert base == 0 and pixel_parallel(p)
    blank = np.zeros_like(np.asarray(words[0]))
    if by_rows(p):
        assert per_core % c.out_w == 0, "a row group is whole rows"
        rows = per_core // c.out_w
        above, below = group_rows(p)
        row = c.in_w * c.in_cw
        y0 = group * rows * c.stride - above
        b = []
        for y in range(y0, group * rows * c.stride + rows * c.stride + below):
            b += list(words[y * row:(y + 1) * row]) if 0 <= y < c.in_h else [blank] * row
        if c.op == Op.DW:
            cmd = replace(c, in_base=above * row, out_base=len(b), in_h=rows * c.stride, out_h=rows,
                          pixels=per_core, band=rows, band_pixels=per_core, band_words=per_core * c.out_cw,
                          halo=1)
        else:
            cmd = replace(c, in_base=above * row, out_base=len(b), in_h=rows * c.stride, pixels=per_core,
                          halo=1, **_pixel_loop(per_core, c.out_w, c.chunks, cfg))
        return replace(p, command=cmd, writes={**p.writes, "b": (0, b)}, out_base=len(b),
                       out_words=per_core * c.out_cw, out_shape=(p.out_shape[0], rows, c.out_w))
    per_in = c.in_cw
    n_in = 2 if c.op == Op.ADD else 1
    total = c.pixels * per_in
    b = []
    for i in range(n_in):
        mine = list(words[i * total + group * per_core * per_in:i * total + (group + 1) * per_core * per_in])
        b += mine + [blank] * (per_core * per_in - len(mine))  # fewer pixels than a group
    out_base = n_in * per_core * per_in
    geometry = dict(in_h=1, in_w=per_core, out_w=per_core, pixels=per_core, out_base=out_base)
    if c.op == Op.ADD:
        cmd = replace(c, in2_base=per_core * per_in, **geometry)
    else:
        cmd = replace(c, **geometry, **_pixel_loop(per_core, per_core, c.chunks, cfg))
    return replace(p, command=cmd, writes={**p.writes, "b": (0, b)}, out_base=out_base,
                   out_words=per_core * c.out_cw, out_shape=(p.out_shape[0], 1, per_core))


def head_groups(r, branches, cores):
    """(cores, heads of each branch per core) of an attention cut by heads over ``cores``
    (``split_heads``), or (1, None) when it is not (one core, or branches of unequal heads)."""
    d = int(np.asarray(r["dim"]))
    heads = {np.asarray(x).shape[0] // (3 * d) for x in branches}
    if cores == 1 or len(heads) != 1:
        return 1, None
    nh, = heads
    per = cdiv(nh, cores)
    return cdiv(nh, per), per


def split_heads(r, branches, per, group, cfg):
    """The attention plan of core ``group`` when every branch's heads are cut into groups of
    ``per`` (``head_groups``): that core's heads of each branch (zeros for heads past the last),
    its output ``[branch 0's heads | branch 1's]`` per pixel. Every core runs the same commands
    on its own heads."""
    d = int(np.asarray(r["dim"]))
    subs = []
    for x in branches:
        x = np.asarray(x, np.int64)
        h0, h1 = group * per, min(x.shape[0] // (3 * d), (group + 1) * per)
        sub = np.zeros((per * 3 * d,) + x.shape[1:], np.int64)
        sub[:(h1 - h0) * 3 * d] = x[h0 * 3 * d:h1 * 3 * d]
        subs.append(sub)
    return _attention(r, subs, cfg)


def plan(r, inputs, cfg, addr_bits=None):
    """The ``CorePlan`` of frozen op ``r`` (a dict as ``quant.integer.freeze`` makes or the
    export's arrays) on inputs ``inputs`` (list of int arrays) for a core of configuration
    ``cfg``. Raises ``UnsupportedOp``."""
    kind = r["kind"]
    lanes = cfg.s
    if kind in ("conv", "linear"):
        p = _reduce(r, inputs[0], cfg)
    elif kind == "add":
        p = _add(r, inputs[0], inputs[1], lanes)
    elif kind == "pool":
        p = _pool(r, inputs[0], lanes)
    elif kind == "attn":
        p = _attention(r, inputs, cfg)
    else:
        raise UnsupportedOp(f"{kind} ops have no core command yet")
    if addr_bits is not None:
        try:
            for c in p.all_commands():
                c.check(addr_bits)
        except CommandError as e:
            raise UnsupportedOp(str(e)) from None
    return p
