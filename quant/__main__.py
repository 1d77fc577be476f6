"""python -m quant {info,calibrate,eval,export}: EfficientViT facts, Trio-ViT PTQ, evaluation and
golden integer tensors. User mistakes end in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from .model import LAYER_FIELDS, ModelError


def _progress(label):
    """A tqdm bar when stderr is a terminal, otherwise a few plain lines."""
    state = {"bar": None, "next": 0.0, "t0": time.time()}
    from tqdm import tqdm

    def update(done, total):
        if sys.stderr.isatty():
            if state["bar"] is None:
                state["bar"] = tqdm(total=total, desc=label, unit="img")
            state["bar"].update(done - state["bar"].n)
            if done >= total:
                state["bar"].close()
        elif done >= total or time.time() >= state["next"]:
            el = time.time() - state["t0"]
            eta = f", ETA {el * (total - done) / done:.0f} s" if 0 < done < total else ""
            print(f"{label}: {done}/{total} ({el:.0f} s{eta})", file=sys.stderr, flush=True)
            state["next"] = time.time() + 10
    return update


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _model(a):
    from .model import build_model, check_resolution, get_spec, load_checkpoint

    spec = get_spec(a.model)
    method = getattr(a, "method", None)
    if method is not None and (spec.family == "DeiT") != (method == "tsptq"):
        raise ModelError(f"--method {method} does not apply to {spec.title}: use "
                         f"{'--method tsptq' if spec.family == 'DeiT' else '--method trio or vanilla'}")
    check_resolution(spec, a.resolution)
    model = build_model(a.model)
    if getattr(a, "checkpoint", None):
        load_checkpoint(model, a.checkpoint)
    elif getattr(a, "random_weights", False):
        _log("warning: no --checkpoint: random weights (numbers are meaningless)")
    else:
        raise ModelError("--checkpoint is required (or --random-weights for a plumbing run)")
    return spec, model


def _device(a):
    """--device auto|cpu|cuda -> a torch device name; cuda without a GPU is a one-line error."""
    import torch

    want = getattr(a, "device", "cpu")
    has_cuda = torch.cuda.is_available()
    if want == "cuda" and not has_cuda:
        raise ModelError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU "
                         f"(use --device cpu or auto)")
    return "cuda" if want == "cuda" or (want == "auto" and has_cuda) else "cpu"


def _images(a, spec, limit, split="test"):
    from .data import load_images

    return load_images(a.data, spec, a.resolution, limit=limit, seed=a.seed, split=split)


def cmd_info(a):
    from .model import build_model, check_resolution, get_spec, layer_table, param_count, total_macs

    spec = get_spec(a.model)
    check_resolution(spec, a.resolution)
    model = build_model(a.model)
    rows = layer_table(model, a.resolution)
    print(f"{spec.title} at {a.resolution}x{a.resolution}: "
          f"{param_count(model):,} parameters, {total_macs(rows):,} MACs (batch 1), {len(rows)} MAC layers")
    by_op = {}
    for r in rows:
        by_op[r["op"]] = by_op.get(r["op"], 0) + r["macs"]
    total = total_macs(rows)
    shares = sorted(by_op.items(), key=lambda kv: -kv[1])
    print("  " + ", ".join(f"{k} {v / total * 100:.2f}%" for k, v in shares))
    if not a.quiet:
        nw = max(len(r["name"]) for r in rows)
        print(f"{'#':>3} {'op':9} {'name':{nw}} {'in':>15} {'out':>15} {'k/s/g':>9} {'MACs':>12}")
        for r in rows:
            shp_in = f"{r['cin']}x{r['h_in']}x{r['w_in']}"
            shp_out = f"{r['cout']}x{r['h_out']}x{r['w_out']}"
            print(f"{r['index']:>3} {r['op']:9} {r['name']:{nw}} {shp_in:>15} {shp_out:>15} "
                  f"{r['kernel']}/{r['stride']}/{r['groups']:<5} {r['macs']:>12,}")
    if a.csv:
        Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LAYER_FIELDS)
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {a.csv}")


def _options(a):
    from .ptq import QuantOptions

    kw = dict(iters=a.iters, seed=a.seed, batch=a.batch)
    if a.observer:
        kw["observer"] = a.observer
    if a.no_migration:
        kw["migration"] = False
    if a.no_shift:
        kw["shift"] = False
    if a.divisor:
        kw["divisor"] = a.divisor
    if a.no_reconstruct:
        kw["reconstruct"] = False
    return QuantOptions.preset(a.method or "trio", **kw)


def _vit_calibrate(a, spec, model):
    """TSPTQ-ViT on a DeiT: the calibrated codes and the W8 weights in the output file."""
    import torch

    from .tsptq import describe, quantize_vit

    a.two_scale = a.two_scale or "both"
    method = {"both": "tsptq", "v2sf": "v2sf", "o2sf": "o2sf", "none": "baseline"}[a.two_scale]
    images, _ = _images(a, spec, a.calib, split="train")
    _log(f"calibrating {spec.title} on {len(images)} images: TSPTQ-ViT, two-scaled codes {a.two_scale}")
    t0 = time.time()
    q = quantize_vit(model, images, method, a.seed)
    _log(describe(q))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(program=None, vit=dict(params=q.params, state_dict=q.model.state_dict(), method=method),
                    model=a.model, resolution=a.resolution, checkpoint=str(a.checkpoint),
                    options=dict(method="tsptq", two_scale=a.two_scale, calib=len(images))), a.out)
    print(f"wrote {a.out} ({time.time() - t0:.0f} s)")


def cmd_calibrate(a):
    import torch

    from .ptq import quantize_model

    device = _device(a)
    spec, model = _model(a)
    if spec.family == "DeiT":
        return _vit_calibrate(a, spec, model)
    if a.two_scale:
        raise ModelError(f"--two-scale is a TSPTQ-ViT option (DeiT), not one of {spec.title}")
    opts = _options(a)
    images, _ = _images(a, spec, a.calib, split="train")
    _log(f"calibrating on {len(images)} images on {device}: {opts}")
    t0 = time.time()
    prog = quantize_model(model, images, opts, progress=_log, device=device)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(program=prog, model=a.model, resolution=a.resolution,
                    checkpoint=str(a.checkpoint), options=vars(opts)), a.out)
    print(f"wrote {a.out} ({time.time() - t0:.0f} s)")


def _load_quantized(path, want_vit=False):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)  # our own file: a pickled Program
        if obj.get("program") is None and not want_vit:
            raise ModelError(f"{path} holds a TSPTQ-ViT {obj.get('model')}, not an EfficientViT program "
                             f"(the accelerator and the EfficientViT tools take the latter)")
        return obj["program"], obj
    except ModelError:
        raise
    except FileNotFoundError:
        raise ModelError(f"quantized model {path} not found (make one with `python -m quant calibrate`)") \
            from None
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path} is not a quantized model written by `python -m quant calibrate` "
                         f"({type(e).__name__})") from None


def cmd_eval(a):
    import torch

    from .integer import IntegerModel, freeze
    from .ptq import evaluate

    device = _device(a)
    spec, model = _model(a)
    model = model.to(device)
    if spec.family == "DeiT":
        return _vit_eval(a, spec, model, device)
    prog = _load_quantized(a.quantized)[0] if a.quantized else None
    images, labels = _images(a, spec, a.limit)
    report = {"images": len(images)}
    fp, fp_logits = evaluate(model, images, labels, progress=_progress("float"))
    report["float_top1"] = fp
    print(f"float      top-1 {fp:6.2f}%  ({len(images)} images)")
    if prog is not None:
        acc, fq = evaluate(prog.to_device(device), images, labels, progress=_progress("fake-quant"))
        prog.to_device("cpu")  # freeze reads it on the CPU
        nan = bool(torch.isnan(fq).any())
        report["fakequant_top1"] = None if nan else acc
        print(f"fake-quant top-1 {'NaN' if nan else f'{acc:6.2f}%'}")
        if a.integer and prog.options.divisor == "log2-4":
            n = min(a.integer, len(images))
            li = IntegerModel(freeze(prog)).logits(images[:n].numpy(), progress=_progress("integer"))
            _integer_report(report, li, fq[:n], labels[:n])
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


def _integer_report(report, li, fq, labels, note=""):
    """The integer model's logits ``li`` against the fake-quant ``fq`` and the labels: printed
    and added to ``report``."""
    import numpy as np

    li, fq, labels = np.asarray(li), np.asarray(fq, np.float64), np.asarray(labels)
    n = len(li)
    top = float((li.argmax(1) == labels).mean() * 100)
    agree = float((li.argmax(1) == fq.argmax(1)).mean() * 100)
    diff = float(np.abs(li - fq).max())
    report.update(integer_top1=top, integer_images=n, agreement=agree, max_logit_diff=diff)
    print(f"integer    top-1 {top:6.2f}% on {n} images; top-1 agreement with fake-quant {agree:.2f}%, "
          f"max |logit difference| {diff:.4g}{note}")


def _vit_eval(a, spec, model, device):
    from .ptq import evaluate
    from .tsptq import QuantizedViT

    if a.integer and not a.quantized:
        raise ModelError("--integer needs --quantized")
    images, labels = _images(a, spec, a.limit)
    fp, _ = evaluate(model, images, labels, progress=_progress("float"))
    report = {"images": len(images), "float_top1": fp}
    print(f"float      top-1 {fp:6.2f}%  ({len(images)} images)")
    if a.quantized:
        _, meta = _load_quantized(a.quantized, want_vit=True)
        if meta.get("model") != a.model or "vit" not in meta:
            raise ModelError(f"{a.quantized} was calibrated for {meta.get('model')}, not {a.model}")
        qm = type(model)(model.spec)
        qm.load_state_dict(meta["vit"]["state_dict"])
        qvit = QuantizedViT(qm, meta["vit"]["params"]).eval()
        acc, fq = evaluate(qvit.to(device), images, labels, progress=_progress("fake-quant"))
        report["fakequant_top1"] = acc
        print(f"fake-quant top-1 {acc:6.2f}%  (TSPTQ-ViT, {meta['options']['two_scale']})")
        if a.integer:
            from .vit_integer import ViTIntegerModel

            n = min(a.integer, len(images))
            li = ViTIntegerModel(qvit.to("cpu")).logits(images[:n].numpy())
            _integer_report(report, li, fq[:n], labels[:n], " (MatMuls, LayerNorm, Softmax, GELU: integers)")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


def cmd_export(a):
    from .integer import export, freeze

    _device(a)  # checked like the others; freezing and the integer model run on the CPU in
    # float64/int64 whatever the device, so the exported integers never depend on it
    prog, meta = _load_quantized(a.quantized, want_vit=True)
    from .data import load_images
    from .model import get_spec

    spec = get_spec(meta["model"])
    images, labels = load_images(a.data, spec, meta["resolution"], limit=1, seed=a.seed)
    if prog is None:  # a TSPTQ-ViT DeiT
        from .deit import DeiT
        from .tsptq import QuantizedViT
        from .vit_integer import export_vit

        qm = DeiT(spec)
        qm.load_state_dict(meta["vit"]["state_dict"])
        man = export_vit(QuantizedViT(qm, meta["vit"]["params"]).eval(), images[0].numpy(), a.out,
                         dict(model=meta["model"], resolution=meta["resolution"], label=int(labels[0]),
                              options=meta["options"]))
        print(f"wrote {len(man['ops'])} op files and manifest.json to {a.out}")
        return
    man = export(freeze(prog), images[0].numpy(), a.out,
                 dict(model=meta["model"], resolution=meta["resolution"], label=int(labels[0]),
                      options=meta["options"]))
    print(f"wrote {len(man['ops'])} op files and manifest.json to {a.out}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m quant", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, data=True, ckpt=True):
        sp.add_argument("--model", default="b1",
                        help="b1, b2, proxy (default b1), deit-tiny, deit-small or deit-base")
        sp.add_argument("--resolution", type=int, default=224)
        if ckpt:
            sp.add_argument("--checkpoint", help="official or timm EfficientViT, or timm/DeiT checkpoint")
            sp.add_argument("--random-weights", action="store_true", help="no checkpoint: plumbing runs only")
        if data:
            sp.add_argument("--data", help="ImageNet-style folder root/<class>/<image>, or 'digits'")
        sp.add_argument("--seed", type=int, default=0)

    def device(sp, what):
        sp.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help=f"where {what} runs (auto: cuda when torch sees a GPU)")

    i = sub.add_parser("info", help="parameters, MACs and the per-layer table")
    common(i, data=False, ckpt=False)
    i.add_argument("--csv", help="also write the per-layer table as CSV")
    i.add_argument("--quiet", action="store_true", help="totals only")

    c = sub.add_parser("calibrate", help="post-training quantization")
    common(c)
    c.add_argument("--method", choices=("trio", "vanilla", "tsptq"),
                   help="trio or vanilla (EfficientViT, default trio); tsptq (DeiT, the default there)")
    c.add_argument("--two-scale", choices=("both", "v2sf", "o2sf", "none"),
                   help="TSPTQ-ViT: which two-scaled codes (default both; none: per-tensor uniform)")
    c.add_argument("--observer", choices=("minmax", "percentile", "omse", "ema"))
    c.add_argument("--no-migration", action="store_true")
    c.add_argument("--no-shift", action="store_true")
    c.add_argument("--no-reconstruct", action="store_true")
    c.add_argument("--divisor", choices=("uniform8", "log2-4"))
    c.add_argument("--calib", type=int, default=256, help="calibration images (paper: 1024)")
    c.add_argument("--iters", type=int, default=200, help="reconstruction iterations per block")
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--out", default="build/quant/quantized.pt")
    device(c, "calibration and reconstruction")

    e = sub.add_parser("eval", help="top-1 of the float, fake-quant and integer models")
    common(e)
    e.add_argument("--quantized", help="file from `calibrate`")
    e.add_argument("--limit", type=int, help="evaluate at most this many images (seeded draw)")
    e.add_argument("--integer", type=int, default=0, help="also run the integer model on this many images")
    e.add_argument("--json", help="write the numbers as JSON")
    device(e, "the float and fake-quant models (the integer model is numpy)")

    x = sub.add_parser("export", help="golden integer tensors of one image, per op")
    x.add_argument("--quantized", required=True)
    x.add_argument("--data", required=True)
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--out", default="build/golden")
    device(x, "nothing: export is numpy on the CPU, device-independent; accepted for scripts")

    a = p.parse_args(argv)
    for name in ("calib", "iters", "limit", "batch", "integer"):
        v = getattr(a, name, None)
        if v is not None and v < (0 if name in ("iters", "integer") else 1):
            p.error(f"--{name} must be {'>= 0' if name in ('iters', 'integer') else '>= 1'}")
    if a.cmd in ("calibrate", "eval") and not a.data:
        p.error("--data is required")
    from .data import DataError
    from .integer import FreezeError

    try:
        {"info": cmd_info, "calibrate": cmd_calibrate, "eval": cmd_eval, "export": cmd_export}[a.cmd](a)
    except (ModelError, DataError, FreezeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
