"""Integer-only execution of a quantized `Program`, and its golden-tensor export.

`freeze` turns the calibrated program into integer parameters (int8 weights, int32 biases, dyadic
multipliers/shifts, Hardswish thresholds, shift offsets, log2 offsets); `IntegerModel.run` executes
them with the functions of `quant.arith` only -- the functions the RTL is checked against. Two
steps run on the host, on purpose and by name: quantizing the normalised image to int8, and the
head's LayerNorm + Hardswish between its two linears (see docs/arithmetic.md section 9).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import arith
from .ptq import Program, numerator_scale

SCHEMA_VERSION = 1


def _np(t):
    return t.detach().double().cpu().numpy()


def _dy(scale):
    b, c = arith.dyadic(scale)
    return np.asarray(b, np.int64), np.asarray(c, np.int64)


class FreezeError(Exception):
    pass


def _int32_bias(name, bias, acc_scale):
    """round(bias / s_acc) as int32, or a FreezeError naming the layer (never wrapped)."""
    q = np.floor(bias / acc_scale + 0.5)
    lo, hi = arith.int_range(arith.ACC_BITS)
    if not np.isfinite(q).all() or (q < lo).any() or (q > hi).any():
        c = int(np.nanargmax(np.abs(np.nan_to_num(q, nan=np.inf))))
        s_acc = np.broadcast_to(acc_scale, bias.shape)[c]
        raise FreezeError(f"{name}: bias {bias.flat[c]:.4g} of channel {c} needs {q.flat[c]:.4g} steps "
                          f"of the accumulator scale {s_acc:.3g}, beyond int32 "
                          "(the calibration data left this layer's input or weights nearly all zero)")
    return q.astype(np.int64)


def freeze(prog: Program):
    """Integer parameters of every op of ``prog`` (a list of dicts, in execution order)."""
    if prog.options.divisor != "log2-4":
        raise FreezeError("the integer model implements the log2-4 divisor only "
                          "(uniform8 is a float ablation)")
    scale = {}  # tensor -> per-channel real step of its codes

    def tscale(name):
        if name not in scale:
            a = prog.act(name)
            scale[name] = _np(a.scale())
        return scale[name]

    frozen = [dict(kind="input", name="input", dst="input", scale=tscale("input"))]
    for op in prog.ops:
        try:
            frozen.append(_freeze_op(prog, op, tscale))
        except ValueError as e:  # a scale no dyadic pair of the contract can hold
            raise FreezeError(f"{op.name}: {e}") from None
    return frozen


def _per_tensor(op, what, scale):
    """The one step of a tensor the op assumes per-tensor; a FreezeError naming the op if the
    tensor's steps differ per channel (migration on a tensor that reaches this op)."""
    scale = np.asarray(scale)
    if np.ptp(scale) > 1e-12 * scale.max():
        raise FreezeError(f"{op.name}: {what} has per-channel steps ({scale.min():.3g}..{scale.max():.3g}) "
                          f"where this op needs one per tensor")
    return float(scale.flat[0])


def _freeze_op(prog, op, tscale):
    """Integer parameters of one op (``tscale``: per-channel real step of a tensor)."""
    r = dict(kind=op.kind, name=op.name, srcs=list(op.srcs), dst=op.dst, block=op.block)
    if op.kind == "conv":
        wq = prog.weight(op.name)
        w = wq()
        codes = _np(wq.codes()).astype(np.int64)
        sw = _np(wq.s)
        sx = tscale(op.srcs[0])
        g = op.attrs["groups"]
        if g == 1 or g != codes.shape[0]:
            if np.ptp(sx) > 1e-12 * sx.max():
                raise FreezeError(f"{op.name}: per-channel input scales into a channel reduction")
            sa = sx[0] * sw
        else:  # depthwise: output channel o reads input channel o (migration folds here, eq. 7)
            sa = sx * sw
        bias = _np(prog.bias(op, w))
        r.update(stride=op.attrs["stride"], pad=op.attrs["pad"], groups=g, act=op.attrs["act"],
                 w=codes, bias=_int32_bias(op.name, bias, sa))
        so = tscale(op.dst)
        delta = _np(prog.act(op.dst).delta)
        if op.attrs["act"] == "hswish":
            s_h = prog.hswish[op.name]
            three = int(round(3.0 / s_h))
            unit = s_h * s_h / 6.0
            r["h_mult"], r["h_shift"] = _dy(sa / s_h)
            r["three"] = three
            r["offset"] = arith.check_range(np.floor(delta / unit + 0.5).astype(np.int64),
                                            arith.SHIFT_OFFSET_BITS, name="filter-wise shift")
            r["mult"], r["shift"] = _dy(unit / so)
        else:
            if np.abs(delta).sum():
                raise FreezeError(f"{op.name}: shifted output without Hardswish")
            r["mult"], r["shift"] = _dy(sa / so)
    elif op.kind == "add":
        so = tscale(op.dst)
        r["mult_a"], r["mult_b"], r["shift"] = arith.dyadic_pair(tscale(op.srcs[0]) / so,
                                                                 tscale(op.srcs[1]) / so)
    elif op.kind == "attn":
        p = prog.attn_params[op.name]
        so = _per_tensor(op, "the output", tscale(op.dst))
        r.update(dim=op.attrs["dim"], offset=[int(o) for o in p["offset"]], g=p["g"], branches=[])
        for bi, s in enumerate(op.srcs):
            st = _per_tensor(op, f"input {s}", tscale(s))
            br = {}
            br["vk_mult"], br["vk_shift"] = _dy(st * st / p["s_vk"])
            br["ks_mult"], br["ks_shift"] = _dy(st / p["s_ks"])
            num = numerator_scale(p, bi, st, so, getattr(prog.options, "offset_residual", True))
            br["num_mult"], br["num_shift"] = _dy(num)
            r["branches"].append(br)
    elif op.kind == "pool":
        if "hw" not in op.attrs:
            raise FreezeError(f"{op.name}: the pooled area is unknown (calibrate the program first)")
        ratio = _per_tensor(op, "the input", tscale(op.srcs[0]))
        ratio /= _per_tensor(op, "the output", tscale(op.dst))
        r["hw"] = op.attrs["hw"]
        r["mult"], r["shift"] = _dy(ratio / op.attrs["hw"])
    elif op.kind == "linear":
        wq = prog.weight(op.name)
        sx = _per_tensor(op, "the input", tscale(op.srcs[0]))
        sw = _np(wq.s)
        r.update(w=_np(wq.codes()).astype(np.int64), acc_scale=sx * sw, post=op.attrs["post"])
        r["bias"] = _int32_bias(op.name, _np(prog.biases[op.name]), sx * sw)
        if op.attrs["post"]:
            gamma, beta, eps = op.attrs["ln"]
            r.update(ln_weight=_np(gamma), ln_bias=_np(beta), ln_eps=eps, out_scale=tscale(op.dst))
    return r


def _ch(v):
    """Per-channel vector -> broadcastable over (C, H, W)."""
    v = np.asarray(v)
    return v.reshape(-1, 1, 1) if v.ndim else v


class IntegerModel:
    """Runs frozen ops on one image at a time with integer tensors (numpy int64 holding int8/int32)."""

    def __init__(self, frozen):
        self.ops = frozen

    def run(self, image, trace=None):
        """image: float (C, H, W) normalised; returns float logits (host dequantization of the
        final int32 accumulators). ``trace(op, inputs, output, extra)`` sees every op."""
        env = {}
        for r in self.ops:
            k = r["kind"]
            if k == "input":  # host: normalised image -> int8
                env["input"] = host_input(image, r)
                out, extra, ins = env["input"], {}, {}
            else:
                ins = {f"x{i}": env[s] for i, s in enumerate(r["srcs"])}
                out, extra = getattr(self, "_" + k)(r, *ins.values())
                env[r["dst"]] = out
            if trace:
                trace(r, ins, out, extra)
        return env["logits"]

    def _conv(self, r, x):
        acc = arith.conv2d_acc(x, r["w"], r["bias"], r["stride"], r["pad"], r["groups"])
        if r["act"] == "hswish":
            h = arith.requantize(acc, _ch(r["h_mult"]), _ch(r["h_shift"]), out_bits=arith.HSWISH_BITS)
            y = arith.hswish_requantize(acc, _ch(r["h_mult"]), _ch(r["h_shift"]), r["three"],
                                        _ch(r["offset"]), _ch(r["mult"]), _ch(r["shift"]))
            return y, dict(acc=acc, pre=h)
        return arith.requantize(acc, _ch(r["mult"]), _ch(r["shift"])), dict(acc=acc)

    def _add(self, r, a, b):
        return arith.add_requantize(a, b, _ch(r["mult_a"]), _ch(r["mult_b"]), _ch(r["shift"])), {}

    def _attn(self, r, *branches):
        dim = r["dim"]
        outs, extra = [], {}
        for bi, (t, br) in enumerate(zip(branches, r["branches"], strict=True)):
            c, h, w = t.shape
            qkv = t.reshape(-1, 3 * dim, h * w)
            q, k, v = np.maximum(qkv[:, :dim], 0), np.maximum(qkv[:, dim:2 * dim], 0), qkv[:, 2 * dim:]
            vk32 = arith.check_range(v @ k.transpose(0, 2, 1), arith.ACC_BITS, name="v.k^T")
            vk8 = arith.requantize(vk32, br["vk_mult"], br["vk_shift"])
            ks32 = arith.adder_tree(k, in_bits=arith.ACT_BITS)  # row sums of ReLU(K): (heads, dim)
            ks8 = arith.requantize(ks32, br["ks_mult"], br["ks_shift"])
            num = arith.check_range(vk8 @ q, arith.ACC_BITS, name="numerator")
            den = arith.check_range(np.einsum("hd,hdn->hn", ks8, q), arith.ACC_BITS, name="divisor")
            e = arith.log2_quantize(den, r["offset"][bi])
            x16 = arith.requantize(num, br["num_mult"], br["num_shift"], out_bits=arith.DIVIDEND_BITS)
            outs.append(arith.attention_output(num, den[:, None, :], br["num_mult"], br["num_shift"],
                                               r["offset"][bi]))
            extra.update({f"b{bi}_vk8": vk8, f"b{bi}_ks8": ks8, f"b{bi}_num": num, f"b{bi}_den": den,
                          f"b{bi}_log2": e, f"b{bi}_dividend": x16})
        out = np.concatenate(outs)  # (heads', dim, HW)
        c, h, w = branches[0].shape
        return out.reshape(-1, h, w), extra

    def _pool(self, r, x):
        c, h, w = x.shape
        if h * w != r["hw"]:
            raise FreezeError(f"{r['name']}: frozen for {r['hw']} pooled pixels, run on {h * w} "
                              "(calibrate at the resolution you run)")
        acc = arith.accumulate(x.reshape(c, -1))
        return arith.requantize(acc, r["mult"], r["shift"]), dict(acc=acc)

    def _linear(self, r, x):
        acc = arith.matmul_acc(x, r["w"].T, r["bias"])
        return host_linear_post(acc, r), dict(acc=acc)

    def logits(self, images, progress=None):
        out = []
        for i, img in enumerate(images):
            out.append(self.run(np.asarray(img, np.float64)))
            if progress:
                progress(i + 1, len(images))
        return torch.tensor(np.stack(out), dtype=torch.float32)


def host_input(image, r):
    """Host step before the accelerator: the normalised float image (C, H, W) -> int8 codes
    with the input op's scale."""
    return arith.quantize(image, _ch(r["scale"]))


def host_linear_post(acc, r):
    """Host step after a head linear's int32 accumulators: the logits (dequantized) after the last
    linear; between the linears LayerNorm + Hardswish in float, then int8 for the next one."""
    y = acc * r["acc_scale"]
    if r["post"] is None:
        return y
    y = (y - y.mean()) / np.sqrt(y.var() + r["ln_eps"]) * r["ln_weight"] + r["ln_bias"]
    y = y * np.clip(y + 3, 0, 6) / 6
    return arith.quantize(y, r["out_scale"])


# --------------------------------------------------------------------------------------------------
# Golden tensors

def _params(r):
    skip = {"kind", "name", "srcs", "dst", "block", "branches", "ln_weight", "ln_bias", "ln_eps", "post",
            "act", "acc_scale", "out_scale", "scale", "offset"}
    out = {k: np.asarray(v) for k, v in r.items() if k not in skip and v is not None}
    if "offset" in r:
        out["offset" if r["kind"] == "conv" else "log2_offset"] = np.asarray(r["offset"])
    for bi, br in enumerate(r.get("branches", [])):
        out.update({f"b{bi}_{k}": np.asarray(v) for k, v in br.items()})
    return out


def export(frozen, image, out_dir, meta):
    """Run one image and write one .npz per op plus manifest.json; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []

    def trace(r, ins, out, extra):
        idx = len(entries)
        fname = f"{idx:03d}_{r['name'].replace('.', '_')}.npz"
        arrays = {"y": np.asarray(out)}
        arrays.update({k: np.asarray(v) for k, v in ins.items()})
        arrays.update({k: np.asarray(v) for k, v in extra.items() if v is not None})
        arrays.update(_params(r))
        ints = {k: (v.astype(np.int32) if v.dtype.kind == "i" else v) for k, v in arrays.items()}
        np.savez_compressed(out_dir / fname, **ints)
        entries.append(dict(index=idx, file=fname, kind=r["kind"], name=r["name"], srcs=r.get("srcs", []),
                            dst=r["dst"], act=r.get("act"), host=r["kind"] == "input" or bool(r.get("post")),
                            arrays={k: [str(v.dtype), list(v.shape)] for k, v in ints.items()}))

    logits = IntegerModel(frozen).run(np.asarray(image, np.float64), trace)
    manifest = dict(schema=SCHEMA_VERSION, **meta, logits=[float(v) for v in logits], ops=entries)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


__all__ = ["freeze", "IntegerModel", "export", "FreezeError", "host_input", "host_linear_post"]
