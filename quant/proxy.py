"""The real-data proxy measurement: a narrow EfficientViT trained on scikit-learn's bundled digits,
then quantized with Trio-ViT, vanilla PTQ, the observer baselines and the ablation switches.

    python -m quant.proxy train --out build/proxy/proxy.pt          # ~1 min on 2 cores
    python -m quant.proxy table --checkpoint build/proxy/proxy.pt   # the ablation table
    python -m quant.proxy vit-train --out build/proxy/vit.pt        # the ViT proxy (TSPTQ-ViT)
    python -m quant.proxy vit-table --checkpoint build/proxy/vit.pt # its table

Every run is seeded and single-threaded (float sums in one order), so the numbers in the README
come out the same from these two commands anywhere.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import digits_split
from .integer import IntegerModel, freeze
from .model import build_model
from .ptq import QuantOptions, evaluate, quantize_model


def _mbconv_convs(model):
    """(name, module, kind) of every depthwise conv ("dw") and second pointwise conv ("pw2") of
    the MBConv/DSConv blocks: the convs whose inputs migration and shifting target."""
    for name, mod in model.named_modules():
        for suffix, kind in ((".depth_conv", "dw"), (".point_conv", "pw2")):
            if name.endswith(suffix) and ".main." in name:
                yield name, mod, kind


class _Stress:
    """The stress proxy's training penalty: EfficientViT's channel statistics (paper Fig. 3) on the
    tensors Trio-ViT's techniques target. Each depthwise input channel c is pulled towards an RMS
    of 10**u_c (u_c uniform in [-1.5, 1.5]: three decades of inter-channel spread, Fig. 3c); each
    second-pointwise input channel towards a mean of mu_c (uniform in [0, 3]) with a standard
    deviation of 0.15 (narrow, offset channels: the inter-channel asymmetry of Fig. 3e). The
    targets are seeded; the penalty is added to the cross-entropy during training only."""

    def __init__(self, model, seed, weight=1.0):
        self.weight, self.seen, self.hooks = weight, [], []
        g = torch.Generator().manual_seed(seed + 1)
        for _, mod, kind in _mbconv_convs(model):
            c = mod.conv.in_channels
            u = torch.rand(c, generator=g)  # one draw per conv, in module order
            t = 10 ** (u * 3 - 1.5) if kind == "dw" else u * 3
            self.hooks.append(mod.register_forward_hook(
                lambda m, inp, out, kind=kind, t=t: self.seen.append((kind, inp[0], t))))

    def loss(self):
        total = 0.0
        for kind, x, t in self.seen:
            ch = x.transpose(0, 1).flatten(1)
            if kind == "dw":
                total = total + ((ch.pow(2).mean(1) + 1e-6).log() / 2 - t.log()).pow(2).mean()
            else:
                spread = ((ch.std(1) + 1e-3).log() - math.log(0.15)).pow(2).mean()
                total = total + (ch.mean(1) - t).pow(2).mean() + spread
        self.seen.clear()
        return self.weight * total

    def remove(self):
        for h in self.hooks:
            h.remove()


def channel_spread(model, images):
    """Per depthwise input: the largest over the smallest channel range, and the share of the
    tensor's quantization range that 90 % of its values occupy (paper: 2.3 % for a B1 DW input,
    12.4 % for a PW1 input); per second-pointwise input: the tensor's range over the median
    channel's (paper: 8.64x). Returns a list of (layer, kind, ratio, share or None)."""
    rows, seen = [], []
    hooks = [mod.register_forward_hook(lambda m, inp, out, n=name, k=kind: seen.append((n, k, inp[0])))
             for name, mod, kind in _mbconv_convs(model)]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    for name, kind, x in seen:
        ch = x.transpose(0, 1).flatten(1)
        if kind == "dw":
            amax = ch.abs().amax(1)
            share = float(torch.quantile(x.abs().flatten()[:1 << 22], 0.9) / x.abs().max())
            rows.append((name, "DW input", float(amax.max() / amax.min().clamp_min(1e-12)), share))
        else:
            width = ch.amax(1) - ch.amin(1)
            rows.append((name, "PW2 input", float((ch.max() - ch.min()) / width.median()), None))
    return rows


def _vit():
    from .deit import VIT_PROXY, DeiT

    return DeiT(VIT_PROXY)


def train(out, epochs=40, seed=0, log=print, stress=False, vit=False):
    """Train the proxy on the digits training split; saves to ``out`` (skipped for /dev/null).
    ``stress``: with the channel-statistics penalty of ``_Stress`` (the stress proxy). ``vit``:
    the ViT proxy of TSPTQ-ViT (``quant.deit.VIT_PROXY``) instead of the EfficientViT one."""
    torch.manual_seed(seed)
    (xt, yt), (xv, yv) = digits_split(seed=0)
    model = (_vit() if vit else build_model("proxy")).train()
    penalty = _Stress(model, seed) if stress else None
    lr = 1e-3 if vit else 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05 if vit else 0.01)
    steps = epochs * ((len(xt) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for ep in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            x = xt[idx]
            dx, dy = torch.randint(-4, 5, (2,), generator=g).tolist()  # small random translation
            x = torch.roll(x, (dx, dy), (2, 3))
            loss = F.cross_entropy(model(x), yt[idx])
            if penalty:
                loss = loss + penalty.loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if (ep + 1) % 10 == 0 or ep == epochs - 1:
            model.eval()
            acc, _ = evaluate(model, xv, yv)
            if penalty:
                penalty.seen.clear()
            model.train()
            log(f"epoch {ep + 1}/{epochs}: loss {loss.item():.3f}, test top-1 {acc:.2f}% "
                f"({time.time() - t0:.0f} s)")
    model.eval()
    if penalty:
        penalty.remove()
    if str(out) != "/dev/null":
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict()}, out)
        log(f"wrote {out}")
    return model


ROWS = [
    # label, method preset, overrides (Table V of the paper, then the observer baselines)
    ("Vanilla PTQ: uniform 8-bit everywhere incl. the divisor, MinMax, reconstruction", "vanilla", {}),
    ("Vanilla + log2-4 divisor (no migration, no shifting)", "vanilla", dict(divisor="log2-4")),
    ("  + CW migration", "vanilla", dict(divisor="log2-4", migration=True)),
    ("  + FW shifting", "vanilla", dict(divisor="log2-4", shift=True)),
    ("  + CW migration + FW shifting (Trio-ViT, MinMax init)", "vanilla",
     dict(divisor="log2-4", migration=True, shift=True)),
    ("Trio-ViT but uniform 8-bit divisor (`--divisor uniform8`)", "trio", dict(divisor="uniform8")),
    ("**Trio-ViT (default: OMSE init, reconstruction)**", "trio", {}),
    ("Trio-ViT `--no-migration`", "trio", dict(migration=False)),
    ("Trio-ViT `--no-shift`", "trio", dict(shift=False)),
    ("Trio-ViT without the log2-offset residual fold", "trio", dict(offset_residual=False)),
    ("Trio-ViT without reconstruction (OMSE)", "trio", dict(reconstruct=False)),
    ("Trio-ViT without reconstruction, MinMax", "trio", dict(observer="minmax", reconstruct=False)),
    ("Trio-ViT without reconstruction, Percentile 99.99", "trio",
     dict(observer="percentile", reconstruct=False)),
    ("Trio-ViT without reconstruction, EMA", "trio", dict(observer="ema", reconstruct=False)),
]


def _load(checkpoint, calib, seed):
    """A trained proxy, its seeded draw of ``calib`` calibration images from the training split,
    and the test split."""
    from .model import load_checkpoint

    model = load_checkpoint(build_model("proxy"), checkpoint)
    (xt, _), (xv, yv) = digits_split(seed=0)
    calib_x = xt[torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed))[:calib]]
    return model, calib_x, xv, yv


def table(checkpoint, calib=256, iters=200, seed=0, log=print):
    model, calib_x, xv, yv = _load(checkpoint, calib, seed)
    fp, fp_logits = evaluate(model, xv, yv)
    lines = ["| configuration | W8A8 top-1 (%) | logit error vs float | integer model top-1 (%) | "
             "agreement int vs fake (%) |",
             "|---|---|---|---|---|", f"| full precision | {fp:.2f} | | | |"]
    log(lines[-1])
    for label, preset, kw in ROWS:
        opts = QuantOptions.preset(preset, iters=iters, seed=seed, **kw)
        t0 = time.time()
        prog = quantize_model(model, calib_x, opts)
        acc, fq = evaluate(prog, xv, yv)
        acc_s = "NaN" if torch.isnan(fq).any() else f"{acc:.2f}"
        int_s = agree_s = "n/a (float-only ablation)"
        if opts.divisor == "log2-4":
            li = IntegerModel(freeze(prog)).logits(xv.numpy())
            int_acc = float((li.argmax(1) == yv).float().mean() * 100)
            agree = float((li.argmax(1) == fq.argmax(1)).float().mean() * 100)
            diff, peak = float((li - fq).abs().max()), float(fq.abs().max())
            int_s, agree_s = f"{int_acc:.2f}", f"{agree:.2f} (max logit diff {diff:.3g} of {peak:.3g})"
        err = float(((fq - fp_logits) ** 2).mean() / (fp_logits ** 2).mean())
        err_s = "NaN" if math.isnan(err) else f"{err:.2e}"
        lines.append(f"| {label} | {acc_s} | {err_s} | {int_s} | {agree_s} |")
        log(lines[-1] + f"  [{time.time() - t0:.0f} s]")
    return "\n".join(lines)


VIT_ROWS = [("baseline, MinMax: per-tensor uniform 8-bit at every MatMul input, W8 per channel", "baseline",
             "minmax"),
            ("baseline, Percentile 99.99", "baseline", "percentile"),
            ("baseline, OMSE (MSE-optimal clipping)", "baseline", "omse"),
            ("+ V-2SF on the Softmax and GELU outputs", "v2sf", "omse"),
            ("+ O-2SF on the LayerNorm outputs", "o2sf", "omse"),
            ("**TSPTQ-ViT: V-2SF + O-2SF**", "tsptq", "omse")]


def vit_table(checkpoint, calib=256, seed=0, outliers=4, factor=32.0, integer=200, log=print):
    """The TSPTQ-ViT table of the ViT proxy: float, the baseline and the two-scaled codes, on the
    trained proxy and on its stress variant (``quant.deit.add_ln_outliers``: ``outliers`` LayerNorm
    output channels ``factor`` times larger, the function unchanged); the integer model
    (``quant.vit_integer``) on the first ``integer`` test images of each."""
    from .deit import add_ln_outliers
    from .model import load_checkpoint
    from .tsptq import describe, logit_error, quantize_vit
    from .vit_integer import ViTIntegerModel

    plain = load_checkpoint(_vit(), checkpoint)
    stress = load_checkpoint(_vit(), checkpoint)
    picked = add_ln_outliers(stress, outliers, factor, seed)
    (xt, _), (xv, yv) = digits_split(seed=0)
    calib_x = xt[torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed))[:calib]]
    models = {"proxy": plain, "stress": stress}
    fp = {k: evaluate(m, xv, yv) for k, m in models.items()}
    lines = [f"ViT proxy ({checkpoint}); stress: LayerNorm output channels {picked} x{factor:g}, "
             f"the same function; {calib} calibration images, {len(yv)} test images", "",
             "| configuration | proxy top-1 (%) | logit error | stress top-1 (%) | logit error | "
             f"integer model: top-1 agreement with fake-quant, proxy / stress ({integer} images) | codes |",
             "|---|---|---|---|---|---|---|",
             f"| float | {fp['proxy'][0]:.2f} | | {fp['stress'][0]:.2f} | | | |"]
    log(lines[-1])
    for label, method, observer in VIT_ROWS:
        t0 = time.time()
        cells, codes, agree = [], "", []
        for k, m in models.items():
            q = quantize_vit(m, calib_x, method, seed, observer=observer)
            acc, logits = evaluate(q, xv, yv)
            cells += [f"{acc:.2f}", logit_error(logits, fp[k][1])]
            codes = describe(q) if k == "stress" else codes
            li = ViTIntegerModel(q).logits(xv[:integer].numpy())
            fq = logits[:integer].double().numpy()
            agree.append(f"{(li.argmax(1) == fq.argmax(1)).mean() * 100:.1f} % (max logit diff "
                         f"{abs(li - fq).max():.2g})")
        lines.append(f"| {label} | {' | '.join(cells)} | {' / '.join(agree)} | {codes} |")
        log(lines[-1] + f"  [{time.time() - t0:.0f} s]")
    return "\n".join(lines)


WIDE_BITS = 24  # the alternative dividend: wide enough that every division is a right shift


def divisor_study(prog, images, log=print):
    """The division step of every attention on ``images`` (integer model), against the exact
    quotient of the same integer numerator and divisor, in output codes. Variants: the contract
    (int16 dividend, e < 0 a left shift), without the log2-offset residual fold, and a 24-bit
    dividend scaled by 2**8 so that every division is a right shift by e + 8 >= 0.
    Returns {variant: (mean |error| all, mean |error| where e < 0)} and the share of e < 0."""
    import numpy as np

    from . import arith
    from .ptq import numerator_scale

    frozen = freeze(prog)
    ops = {op.name: op for op in prog.ops if op.kind == "attn"}
    err = {"contract (int16, left shifts for e < 0)": [], "contract without the offset residual fold": [],
           f"int{WIDE_BITS} dividend, right shifts only": []}
    neg = []

    def trace(r, ins, out, extra):
        if r["kind"] != "attn":
            return
        op, p = ops[r["name"]], prog.attn_params[r["name"]]
        so = float(prog.act(op.dst).step)
        for bi, s in enumerate(op.srcs):
            st = float(prog.act(s).step)
            num, den, e = extra[f"b{bi}_num"], extra[f"b{bi}_den"], extra[f"b{bi}_log2"]
            ok = np.broadcast_to(den[:, None, :] > 0, num.shape)
            exact = np.clip(num * p["s_vk"] / (np.maximum(den, 1)[:, None, :] * p["s_ks"] * so), -128, 127)
            ee = np.broadcast_to(e[:, None, :], num.shape)
            outs = []
            for fold in (True, False):
                x16 = arith.requantize(num, *arith.dyadic(numerator_scale(p, bi, st, so, fold)), out_bits=16)
                outs.append(arith.shift_divide(x16, ee))
            xw = arith.requantize(num, *arith.dyadic(numerator_scale(p, bi, st, so) * 2.0 ** 8),
                                  out_bits=WIDE_BITS, acc_bits=arith.ACC_BITS)
            outs.append(arith.saturate(arith.round_shift(xw, ee + 8), arith.ACT_BITS))
            for (_, lst), y in zip(err.items(), outs, strict=True):
                d = np.abs(y - exact)
                lst.append((d[ok], d[ok & (ee < 0)]))
            neg.append((int((ok & (ee < 0)).sum()), int(ok.sum())))

    model = IntegerModel(frozen)
    for img in images:
        model.run(np.asarray(img, np.float64), trace)
    result = {}
    for name, parts in err.items():
        allv = np.concatenate([a for a, _ in parts])
        negv = np.concatenate([b for _, b in parts])
        result[name] = (float(allv.mean()), float(negv.mean()) if negv.size else float("nan"))
    share = sum(n for n, _ in neg) / max(1, sum(t for _, t in neg))
    log("| division step | mean error, all outputs (codes) | mean error where e < 0 (codes) |")
    log("|---|---|---|")
    for name, (a, b) in result.items():
        log(f"| {name} | {a:.3f} | {b:.3f} |")
    log(f"e < 0 on {share * 100:.1f} % of the attention outputs ({len(images)} images)")
    return result, share


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m quant.proxy", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the proxy network on the digits")
    t.add_argument("--out", default="build/proxy/proxy.pt")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--stress", action="store_true",
                   help="the stress proxy: trained towards EfficientViT's channel statistics")
    vt = sub.add_parser("vit-train", help="train the ViT proxy (TSPTQ-ViT) on the digits")
    vt.add_argument("--out", default="build/proxy/vit.pt")
    vt.add_argument("--epochs", type=int, default=40)
    vt.add_argument("--seed", type=int, default=0)
    vb = sub.add_parser("vit-table",
                        help="TSPTQ-ViT: float vs the baseline vs V-2SF / O-2SF, proxy and stress")
    vb.add_argument("--checkpoint", default="build/proxy/vit.pt")
    vb.add_argument("--calib", type=int, default=256)
    vb.add_argument("--seed", type=int, default=0)
    vb.add_argument("--outliers", type=int, default=4,
                    help="LayerNorm outlier channels of the stress variant")
    vb.add_argument("--factor", type=float, default=32.0, help="their magnification")
    vb.add_argument("--integer", type=int, default=200, help="test images for the integer model")
    vb.add_argument("--out", default="build/proxy/vit-table.md")
    sp = sub.add_parser("spread", help="channel statistics of the DW and PW2 inputs (paper Fig. 3)")
    sp.add_argument("--checkpoint", default="build/proxy/proxy.pt")
    b = sub.add_parser("table", help="FP vs Trio-ViT vs vanilla PTQ and the ablations")
    b.add_argument("--checkpoint", default="build/proxy/proxy.pt")
    b.add_argument("--calib", type=int, default=256)
    b.add_argument("--iters", type=int, default=200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", default="build/proxy/table.md")
    d = sub.add_parser("divisor", help="error of the division step: contract, no residual fold, "
                                       "wide dividend")
    d.add_argument("--checkpoint", default="build/proxy/proxy.pt")
    d.add_argument("--calib", type=int, default=256)
    d.add_argument("--iters", type=int, default=200)
    d.add_argument("--images", type=int, default=100)
    d.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # float sums in one fixed order: the same numbers on any machine
    from .model import ModelError

    try:
        if a.cmd in ("train", "vit-train"):
            if a.epochs < 1:
                p.error("--epochs must be >= 1")
            train(a.out, a.epochs, a.seed, stress=getattr(a, "stress", False), vit=a.cmd == "vit-train")
        elif a.cmd == "vit-table":
            if a.calib < 1 or a.outliers < 0 or a.factor <= 0 or a.integer < 1:
                p.error("--calib and --integer must be >= 1, --outliers >= 0 and --factor > 0")
            text = vit_table(a.checkpoint, a.calib, a.seed, a.outliers, a.factor, a.integer)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(text + "\n")
            print(f"wrote {a.out}")
        elif a.cmd == "spread":
            from .model import load_checkpoint

            model = load_checkpoint(build_model("proxy"), a.checkpoint)
            _, (xv, _) = digits_split(seed=0)
            print("| layer | tensor | largest / smallest channel range (DW) or tensor / median channel range "
                  "(PW2) | share of the range holding 90 % of the values |")
            print("|---|---|---|---|")
            for name, kind, ratio, share in channel_spread(model, xv):
                cell = "" if share is None else f"{share * 100:.1f} %"
                print(f"| {name} | {kind} | {ratio:.1f} | {cell} |")
        elif a.cmd == "divisor":
            model, calib_x, xv, _ = _load(a.checkpoint, a.calib, a.seed)
            prog = quantize_model(model, calib_x, QuantOptions(iters=a.iters, seed=a.seed))
            divisor_study(prog, xv[:a.images].numpy())
        else:
            text = table(a.checkpoint, a.calib, a.iters, a.seed)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(text + "\n")
            print(f"wrote {a.out}")
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
