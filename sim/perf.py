"""Cycle-level performance model of the (N x M + T x S) x L accelerator on EfficientViT.

    python -m sim.perf --model b1 --resolution 224 --config 8x8+8x8x16 --freq 200 --dram-gbs 12.8
    python -m sim.perf --dataflow paper ...      # the paper's dataflow, the baseline
    python -m sim.perf --sweep --model b1 --resolution 224

The workload is the per-layer table of ``quant.model.layer_table`` (what ``python -m quant info``
prints). ``--dataflow ours`` (default) is the accelerator of docs/architecture.md, counted in
``sim/dataflow.py`` (per command) and ``sim/timeline.py`` (DMA and compute on one time line,
frames in flight for the head linears); the RTL is held to it. ``--dataflow paper`` is the
paper's dataflow as published, kept as the baseline; it is not buildable within the buffers'
ports (its weight reads are reported as a budget violation) and is counted as follows.
Per layer it picks a mapping and counts cycles from the engines' beat schedules
(the same ones the RTL is tested with, ``sim/schedule.py``):

- MAT engine (S lanes x T): a reduction of P rows x K inputs x O outputs takes
  ceil(O/S) * P * ceil(K/T) beats (output channels on lanes, input channels across a lane).
- R-MAC engine, down-forward mode: ceil(O/M) * P * ceil(K/N) beats; self-accumulation mode
  (depthwise k x k): ceil(C/N) * Ho * ceil(Wo/M) * k^2 beats (N channels on the R-MACs of a
  lane, M consecutive output pixels on the lanes, one kernel tap per beat; stride 2 in the
  "odd then even" column order costs the same k^2 taps).
- One beat per cycle; each op adds the engine's pipeline latency (fill/drain) once.
- Inter-layer pipeline (Fig. 9a/b): a depthwise conv on the R-MAC engine feeds the following
  pointwise conv on the MAT engine row by row; once the depthwise conv is done the R-MAC engine
  joins the pointwise conv. Intra-layer pipeline (Fig. 9c/d): per head, the R-MAC engine
  computes [v;1]-free v.k^T while the adder tree forms sum(ReLU(K)); the MAT engine computes the
  divisor and dividends (q.(v k^T) and q.sum(k), one reduction with dim+1 outputs) of the
  previous head; the shifter array divides on the fly. The R-MAC engine joins at the end.
- L cores: each op is split across cores by output channels, by pixels (rows), or by heads;
  the model evaluates the candidates and keeps the fastest (reported per layer).
- Memory: DRAM bytes per layer (weights and per-channel requant parameters always; input and
  output activations when they do not fit the global buffers; a fused pair keeps its
  intermediate on chip). A layer takes max(compute, DRAM bytes / bytes per cycle) and is
  reported memory-bound when the second is larger. Pipelined pairs are one row.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from gen.cli import DEVICE, check_fits, design_dsps, load_config
from hw.config import AcceleratorConfig, ConfigError
from sim import dataflow, timeline
from sim.dataflow import act_bytes, cdiv, mat_latency, rmac_latency, two_stage, weight_bytes

DDR4_GBS = 64 / 8 * 2133e6 / 1e9  # ZCU102 PS DDR4, 64-bit at 2133 MT/s: 17.064 GB/s peak
DRAM_GBS = 12.8  # measured PL -> PS DDR4 throughput, ~75 % of the peak (reference facts)
PAPER_FPS = {("b1", 288): 895, ("b2", 224): 494, ("b2", 256): 379}
# Real FPS the paper's GOPS imply at 2048 multipliers, 200 MHz, 2 ops per MAC (reference facts)
PAPER_REAL_FPS = {("b1", 288): 448, ("b2", 224): 247, ("b2", 256): 189}


# ---- engine beat counts (sim/schedule.py order) -------------------------------------------------

def mat_beats(p, k, o, cfg, groups=1):
    """MAT engine: a (grouped) reduction of p rows, k inputs, o outputs."""
    return groups * cdiv(o // groups, cfg.s) * p * cdiv(k // groups, cfg.t)


def rmac_df_beats(p, k, o, cfg, groups=1):
    """R-MAC engine, down-forward mode (lanes = output channels, R-MACs = input chunk)."""
    return groups * cdiv(o // groups, cfg.m) * p * cdiv(k // groups, cfg.n)


def rmac_dw_beats(c, ho, wo, k, cfg):
    """R-MAC engine, self-accumulation mode: a k x k depthwise conv."""
    return cdiv(c, cfg.n) * ho * cdiv(wo, cfg.m) * k * k


def both_beats(p, k, o, cfg, groups=1):
    """Both engines on one reduction, rows split between them to balance; (beats, rows on MAT)."""
    if p == 0:
        return 0, 0
    a = mat_beats(1, k, o, cfg, groups)
    b = rmac_df_beats(1, k, o, cfg, groups)
    guess = round(p * b / (a + b))
    best = None
    for p1 in {max(0, min(p, guess + d)) for d in (-1, 0, 1)} | {0, p}:
        t = max(p1 * a, (p - p1) * b)
        if best is None or t < best[0]:
            best = (t, p1)
    return best


# ---- per-layer mapping ---------------------------------------------------------------------------

@dataclass
class LayerResult:
    name: str
    op: str
    macs: int
    mapping: str
    compute: int  # cycles of compute (with fill)
    dram_bytes: int
    cycles: int = 0
    bound: str = "compute"
    util: float = 0.0


def _rows(r):
    return r["h_out"] * r["w_out"]


def _reduction_options(p, k, o, groups, cfg):
    """Candidate core splits of a reduction: (label, beats per core)."""
    L = cfg.cores
    opts = []
    # output channels (or whole groups) across cores
    if groups > 1:
        g_c = cdiv(groups, L)
        opts.append(("groups/cores", both_beats(p, k // groups * g_c, o // groups * g_c, cfg, g_c)[0]))
    else:
        opts.append(("cout/cores", both_beats(p, k, cdiv(o, L), cfg)[0]))
    # pixels (rows of the reduction) across cores
    opts.append(("pixels/cores", both_beats(cdiv(p, L), k, o, cfg, groups)[0]))
    return opts


def map_reduction(r, cfg):
    """conv / pw / gpw / linear on both engines (pixels split between them inside a core)."""
    p = _rows(r)
    k = r["cin"] * r["kernel"] * r["kernel"]
    opts = _reduction_options(p, k, r["cout"], r["groups"], cfg)
    label, beats = min(opts, key=lambda x: x[1])
    return label + ", MAT+R-MAC", beats + mat_latency(cfg)


def map_depthwise(r, cfg):
    """Depthwise conv alone (no following pointwise to pipeline with): R-MAC engine only."""
    c, ho, wo, k = r["cout"], r["h_out"], r["w_out"], r["kernel"]
    opts = [("channels/cores", rmac_dw_beats(cdiv(c, cfg.cores), ho, wo, k, cfg)),
            ("rows/cores", rmac_dw_beats(c, cdiv(ho, cfg.cores), wo, k, cfg))]
    label, beats = min(opts, key=lambda x: x[1])
    return label + ", R-MAC SA", beats + rmac_latency(cfg)


def map_dw_pw(dw, pw, cfg):
    """A depthwise conv and the (grouped) pointwise conv it feeds. Fused (Fig. 9a/b): output
    pixels split across cores in blocks of M; per block the R-MAC engine computes the
    depthwise taps of all channels and the MAT engine the pointwise conv of the previous block;
    the R-MAC engine joins once the depthwise conv is done. Compared with running them one after
    the other; returns (label, total cycles, fused?) of the faster."""
    c, ho, wo, k = dw["cout"], dw["h_out"], dw["w_out"], dw["kernel"]
    g, o = pw["groups"], pw["cout"]
    m = cfg.m
    blocks = cdiv(ho * cdiv(wo, m), cfg.cores)
    prod = rmac_dw_beats(c, 1, m, k, cfg)
    cons = mat_beats(m, c, o, cfg, g)
    cons_both = both_beats(m, c, o, cfg, g)[0]
    fused = two_stage(blocks, prod, cons, cons_both) + rmac_latency(cfg) + mat_latency(cfg)
    _, dw_seq = map_depthwise(dw, cfg)
    _, pw_seq = map_reduction(pw, cfg)
    if fused <= dw_seq + pw_seq:
        return "fused DW->PW (pixel blocks/cores)", fused, True
    return "sequential DW, PW", dw_seq + pw_seq, False


def map_attention(vk, vkq, cfg):
    """Intra-layer pipeline of one LiteMLA: heads across cores; per head v.k^T on the R-MAC engine
    (adder tree: sum of ReLU(K) alongside), then q.[v k^T | sum k] on the MAT engine."""
    heads, dim, hw = vk["heads"], vk["cin"], vk["h_in"]
    L = cfg.cores
    heads_c = cdiv(heads, L)
    cores_per_head = max(1, L // heads)
    hw_c = cdiv(hw, cores_per_head)  # dividends split by pixels when cores outnumber heads
    prod = rmac_df_beats(dim, hw, dim, cfg)  # v (dim rows) . k^T over the HW pixels
    cons = mat_beats(hw_c, dim, dim + 1, cfg)
    cons_both = both_beats(hw_c, dim, dim + 1, cfg)[0]
    total = two_stage(heads_c, prod, cons, cons_both) + rmac_latency(cfg) + mat_latency(cfg)
    return f"attention pipeline, heads/cores ({heads_c} per core)", total


# ---- memory ---------------------------------------------------------------------------------------

def layer_dram(r, cfg, on_chip_in, on_chip_out, batch=1):
    """DRAM bytes of one op per image: weights + per-channel parameters (fetched once per batch),
    plus spilled activations."""
    w_bytes = cdiv(weight_bytes(r), batch)
    in_b, out_b = act_bytes(r, "in"), act_bytes(r, "out")
    passes = 1
    if not on_chip_in and w_bytes > cfg.buffer_c_kib * 1024:
        passes = cdiv(w_bytes, cfg.buffer_c_kib * 1024)  # input re-read per weight tile
    return w_bytes + (0 if on_chip_in else in_b * passes) + (0 if on_chip_out else out_b)


# ---- the whole network ----------------------------------------------------------------------------

def _pair(a, b, label, total, dram):
    """Two pipelined ops are one row: their cycles cannot be told apart."""
    return [LayerResult(f"{a['name']} + {b['name'].split('.')[-1]}", f"{a['op']}+{b['op']}",
                        a["macs"] + b["macs"], label, total, dram[0] + dram[1])]


def paper_weight_bytes(cfg):
    """Distinct weight bytes per cycle the paper's dataflow reads: every engine of every core
    takes a fresh S x T (M x N) chunk each beat, output channels split over the cores."""
    return cfg.cores * (cfg.s * cfg.t + cfg.m * cfg.n)


def simulate(rows, cfg, dram_gbs=DRAM_GBS, fuse_mbconv=False, batch=1):
    """The paper's dataflow: per-layer results of one inference. ``fuse_mbconv`` (an earlier
    proposal): the expand conv's output stays on chip for the depthwise conv (pixel bands), so
    the expanded tensor never goes to DRAM. ``batch``: weights fetched once per batch."""
    bytes_per_cycle = dram_gbs * 1e9 / (cfg.freq_mhz * 1e6)
    buf_b = cfg.buffer_b_kib * 1024
    results = []
    i = 0
    def fits(r, which):
        if fuse_mbconv:
            prev = rows[r["index"] - 1] if r["index"] else None
            nxt = rows[r["index"] + 1] if r["index"] + 1 < len(rows) else None
            if which == "out" and r["op"] == "pw" and nxt is not None and nxt["op"] == "dw":
                return True
            if which == "in" and r["op"] == "dw" and prev is not None and prev["op"] == "pw":
                return True
        return act_bytes(r, which) <= buf_b

    while i < len(rows):
        r = rows[i]
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        if r["op"] == "dw" and nxt is not None and nxt["op"] in ("pw", "gpw"):
            label, total, fused = map_dw_pw(r, nxt, cfg)
            dram = (layer_dram(r, cfg, fits(r, "in"), fused or fits(r, "out"), batch),
                    layer_dram(nxt, cfg, fused or fits(nxt, "in"), fits(nxt, "out"), batch))
            results += _pair(r, nxt, label, total, dram)
            i += 2
            continue
        if r["op"] == "matmul_vk" and nxt is not None and nxt["op"] == "matmul_q":
            label, total = map_attention(r, nxt, cfg)
            results += _pair(r, nxt, label, total, (0, 0))  # q, k, v and the output stay on chip
            i += 2
            continue
        if r["op"] == "dw":
            label, t = map_depthwise(r, cfg)
        else:
            label, t = map_reduction(r, cfg)
        results.append(LayerResult(r["name"], r["op"], r["macs"], label, t,
                                   layer_dram(r, cfg, fits(r, "in"), fits(r, "out"), batch)))
        i += 1
    mults = cfg.multipliers
    for res in results:
        mem = math.ceil(res.dram_bytes / bytes_per_cycle)
        res.cycles = max(res.compute, mem)
        res.bound = "memory" if mem > res.compute else "compute"
        res.util = res.macs / (mults * res.cycles) if res.cycles else 0.0
    return results


def totals(results, cfg, cycles=None, latency=None):
    """Whole-frame figures; ``cycles`` is the period when it is not the sum of the rows (ours:
    frames in flight), ``latency`` a lone frame's cycles when it differs from the period."""
    cycles = cycles if cycles is not None else sum(r.cycles for r in results)
    latency = latency if latency is not None else cycles
    macs = sum(r.macs for r in results)
    sec = cycles / (cfg.freq_mhz * 1e6)
    return dict(cycles=cycles, macs=macs, latency_ms=latency / (cfg.freq_mhz * 1e3), fps=1 / sec,
                gmacs=macs / sec / 1e9, util=macs / (cfg.multipliers * cycles),
                dram_bytes=sum(r.dram_bytes for r in results),
                peak_gmacs=cfg.peak_gmacs, peak_fps=cfg.multipliers * cfg.freq_mhz * 1e6 / macs,
                memory_bound=sum(1 for r in results if r.bound == "memory"), bram36=cfg.bram36)


def simulate_ours(rows, cfg, dram_gbs=DRAM_GBS):
    """Our dataflow (docs/architecture.md): per-step results and the whole-frame totals."""
    steps = dataflow.build_steps(rows, cfg)
    alt = dataflow.build_steps(rows, cfg.replace(cores=cfg.cores - 1)) if cfg.cores > 1 else steps
    t = timeline.simulate(steps, alt, cfg, dram_gbs)
    results = []
    for i, st in enumerate(steps):
        cyc = round(t.cycles[i])
        bound = "head core" if st.background else ("memory" if t.stalls[i] > 0.5 else "compute")
        mapping = st.mapping + (f", spills {st.extra['spill']:,} B" if "spill" in st.extra else "")
        results.append(LayerResult(st.name, st.op, st.macs, mapping, st.compute,
                                   st.weights + st.dram_in + st.dram_out, cyc, bound,
                                   st.macs / (cfg.multipliers * cyc) if cyc else 0.0))
    tot = totals(results, cfg, t.period, t.latency)
    tot.update(window=t.window, dram_cycles=t.dram_cycles, fg_period=t.fg_period,
               bytes_per_cycle=t.bytes_per_cycle)
    return results, tot


def evaluate(rows, cfg, dram_gbs=DRAM_GBS, flow="ours", fuse_mbconv=False, batch=1):
    """(per-row results, totals) of one frame under ``flow`` ("ours" or "paper")."""
    if flow == "ours":
        if fuse_mbconv or batch > 1:
            raise ConfigError("--fuse-mbconv and --batch belong to --dataflow paper (ours fuses and "
                              "keeps frames in flight by itself)")
        return simulate_ours(rows, cfg, dram_gbs)
    results = simulate(rows, cfg, dram_gbs, fuse_mbconv, batch)
    return results, totals(results, cfg)


def loss_breakdown(results, cfg):
    """Where the cycles above the ideal MACs / multipliers go, per op type and bound."""
    total = sum(r.cycles for r in results if r.bound != "head core")
    ideal = sum(r.macs for r in results if r.bound != "head core") / cfg.multipliers
    lines = [f"cycles above ideal: {total - ideal:,.0f} ({(total - ideal) / total * 100:.1f}% of all)"]
    groups = {}
    for r in results:
        if r.bound == "head core":
            continue
        key = (r.op, r.bound)
        g = groups.setdefault(key, [0, 0.0])
        g[0] += r.cycles
        g[1] += r.cycles - r.macs / cfg.multipliers
    for (op, bound), (cyc, lost) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"  {op:9} {bound:7} {cyc:>9,} cycles, {lost:>9,.0f} lost "
                     f"({lost / total * 100:4.1f}% of all cycles)")
    return "\n".join(lines)


LAYER_TABLES = Path(__file__).with_name("layer_tables.json")  # the paper's points, without torch


def workload(model, resolution):
    """The layer table (``quant.model.layer_table``) of EfficientViT-``model`` at ``resolution``:
    stored in ``LAYER_TABLES`` for the paper's points (so that ``python -m gen`` reports them
    without torch; a test checks them against the models), else traced from the model."""
    stored = json.loads(LAYER_TABLES.read_text()).get(f"{model}-r{resolution}")
    if stored is not None:
        return stored
    from quant.model import build_model, check_resolution, get_spec, layer_table

    check_resolution(get_spec(model), resolution)
    return layer_table(build_model(model), resolution)


def write_csv(results, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "op", "mapping", "macs", "compute_cycles", "dram_bytes", "cycles", "bound",
                    "utilization"])
        for r in results:
            w.writerow([r.name, r.op, r.mapping, r.macs, r.compute, r.dram_bytes, r.cycles, r.bound,
                        f"{r.util:.4f}"])


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = sum(r.cycles for r in results if r.bound != "head core")  # the head core overlaps
    x = range(len(results))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    colors = [{"memory": "tab:red", "head core": "tab:gray"}.get(r.bound, "tab:blue") for r in results]
    a1.bar(x, [r.util * 100 for r in results], color=colors)
    a1.set_ylabel("MAC utilization (%)")
    a1.set_title(title + "  (red: memory-bound; grey: head core, overlapped)")
    a2.bar(x, [r.cycles / total * 100 for r in results], color=colors)
    a2.set_ylabel("cycles, % of the frame")
    a2.set_xticks(list(x), [f"{r.op}" for r in results], rotation=90, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_config(text, freq, cores=None):
    cfg = load_config(text) if text else AcceleratorConfig()
    changes = {}
    if freq is not None:
        changes["freq_mhz"] = freq
    if cores is not None:
        changes["cores"] = cores
    return cfg.replace(**changes) if changes else cfg


def budget_lines(cfg, flow):
    """The buffer budget: BRAM36 of every buffer, and the ports the dataflow asks for."""
    lines = [f"buffers: {cfg.bram36} BRAM36 of the {DEVICE['board']}'s {DEVICE['bram36']} ("
             + ", ".join(f"{b.name} {b.kib} KiB{' x' + str(b.copies) if b.copies > 1 else ''}: "
                         f"{b.bram36}" for b in cfg.buffers()) + ")"]
    c = dataflow.buffers(cfg)["C"]
    if flow == "paper" and paper_weight_bytes(cfg) > c.read_bytes:
        lines.append(f"BUDGET EXCEEDED: the paper's dataflow reads {paper_weight_bytes(cfg):,} weight "
                     f"bytes per cycle from buffer C, whose {c.banks} banks give {c.read_bytes}: "
                     f"not buildable with these buffers (kept as the baseline)")
    return lines


def run_one(model, resolution, cfg, dram_gbs, out_dir=None, quiet=False, fuse_mbconv=False, batch=1,
            flow="ours"):
    rows = workload(model, resolution)
    results, tot = evaluate(rows, cfg, dram_gbs, flow, fuse_mbconv, batch)
    if not quiet:
        nw = max(len(r.name) for r in results)
        print(f"{'#':>3} {'op':18} {'name':{nw}} {'MACs':>11} {'cycles':>9} {'util':>6} {'bound':9} mapping")
        for i, r in enumerate(results):
            print(f"{i:>3} {r.op:18} {r.name:{nw}} {r.macs:>11,} {r.cycles:>9,} {r.util * 100:5.1f}% "
                  f"{r.bound:9} {r.mapping}")
    bw = timeline.bytes_per_cycle(cfg, dram_gbs) * cfg.freq_mhz * 1e6 / 1e9
    print(f"EfficientViT-{model.upper()} R{resolution} on {cfg.name} at {cfg.freq_mhz:g} MHz, "
          f"DRAM {dram_gbs:.3f} GB/s: {round(tot['cycles']):,} cycles, {tot['latency_ms']:.3f} ms, "
          f"{tot['fps']:.1f} FPS, {tot['gmacs']:.1f} GMAC/s of {tot['peak_gmacs']:.1f} peak, "
          f"MAC utilization {tot['util'] * 100:.1f}%, DRAM {tot['dram_bytes'] / 1e6:.2f} MB, "
          f"{tot['memory_bound']} memory-bound layers [{flow} dataflow]"
          + (" [fused MBConv]" if fuse_mbconv else "") + (f" [batch {batch}]" if batch > 1 else ""))
    if flow == "ours":
        print(f"frames in flight: period {round(tot['cycles']):,} cycles (foreground "
              f"{round(tot['fg_period']):,}, DRAM {round(tot['dram_cycles']):,} at {bw:.2f} GB/s = "
              f"min(AXI {cfg.axi_ports} x {cfg.axi_bits} bit x {cfg.freq_mhz:g} MHz = {cfg.axi_gbs:.2f}, "
              f"DRAM {dram_gbs:.2f})); head core away {round(tot['window']):,} cycles; a lone frame's "
              f"latency {tot['latency_ms']:.3f} ms plus the host's LayerNorm")
    for line in budget_lines(cfg, flow):
        print(line)
    print(loss_breakdown(results, cfg))
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{model}-r{resolution}-{cfg.name.replace('+', 'p')}-{flow}" + (
            "-fused" if fuse_mbconv else "") + (f"-b{batch}" if batch > 1 else "")
        write_csv(results, out / f"{stem}.csv")
        plot(results, out / f"{stem}.png", f"EfficientViT-{model.upper()} R{resolution}, {cfg.name}, {flow}")
        print(f"wrote {out / stem}.csv and .png")
    return results, tot


def sweep(model, resolution, base, dram_gbs, fuse_mbconv=False, batch=1, flow="ours"):
    print(f"{'config':>16} {'mults':>6} {'DSP48E2':>7} {'BRAM36':>6} {'FPS':>8} {'util':>6} {'GMAC/s':>8}")
    out = []
    rows = workload(model, resolution)
    for n, m, t, s in ((4, 4, 4, 4), (8, 8, 8, 8), (16, 8, 16, 8), (8, 16, 8, 16), (16, 16, 16, 16)):
        for cores in (4, 8, 16, 32):
            try:
                cfg = check_fits(base.replace(n=n, m=m, t=t, s=s, cores=cores))
                tot = evaluate(rows, cfg, dram_gbs, flow, fuse_mbconv, batch)[1]
            except ConfigError as e:
                print(f"{n}x{m}+{t}x{s}x{cores:<3} refused: {e}")
                continue
            out.append((cfg, tot))
            dsps = sum(design_dsps(cfg).values())
            print(f"{cfg.name:>16} {cfg.multipliers:>6} {dsps:>7} {cfg.bram36:>6} {tot['fps']:8.1f} "
                  f"{tot['util'] * 100:5.1f}% {tot['gmacs']:8.1f}")
    return out


BENCH_GBS = (DRAM_GBS, DDR4_GBS)


def bench(cfg, out_dir):
    """B1/B2 at R224/256/288, both dataflows at 12.8 and 17.06 GB/s, next to Table VII and the
    physical limit."""
    head = " | ".join(f"{flow} {g:.1f} GB/s: FPS (util.)" for flow in ("paper", "ours") for g in BENCH_GBS)
    lines = [f"Configuration {cfg.name} at {cfg.freq_mhz:g} MHz: {cfg.multipliers} multipliers, "
             f"physical limit {cfg.peak_gmacs:.1f} GMAC/s; buffers {cfg.bram36} BRAM36 of "
             f"{DEVICE['bram36']}; AXI {cfg.axi_ports} x {cfg.axi_bits} bit = {cfg.axi_gbs:.1f} GB/s. "
             f"Batch 1 (ours: frames in flight, latency of a lone frame at {DRAM_GBS} GB/s).", "",
             "| model | GMACs | limit FPS (100%) | Table VII FPS | Table VII at 2048 mults | " + head
             + " | ours latency ms | ours DRAM MB/frame |",
             "|---|---|---|---|---|" + "---|" * (2 * len(BENCH_GBS)) + "---|---|"]
    for model in ("b1", "b2"):
        for res in (224, 256, 288):
            rows = workload(model, res)
            cells, ours = [], None
            for flow in ("paper", "ours"):
                for g in BENCH_GBS:
                    tot = evaluate(rows, cfg, g, flow)[1]
                    cells.append(f"{tot['fps']:.0f} ({tot['util'] * 100:.1f}%)")
                    if flow == "ours" and g == DRAM_GBS:
                        ours = tot
            paper, real = PAPER_FPS.get((model, res)), PAPER_REAL_FPS.get((model, res))
            lines.append(f"| {model.upper()}-R{res} | {ours['macs'] / 1e9:.3f} | {ours['peak_fps']:.0f} | "
                         f"{paper or '-'} | {real or '-'} | " + " | ".join(cells)
                         + f" | {ours['latency_ms']:.2f} | {ours['dram_bytes'] / 1e6:.1f} |")
            print(lines[-1], flush=True)
    lines += ["", *budget_lines(cfg, "paper")]
    text = "\n".join(lines) + "\n"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(text)
    print(f"wrote {out / 'bench.md'}")
    return text


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.perf", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="b1")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--config", default="8x8+8x8x16",
                   help="NxM+TxSxL, a preset or a config.json (default 8x8+8x8x16)")
    p.add_argument("--freq", type=float, help="clock in MHz (default: the configuration's, 200)")
    p.add_argument("--dataflow", choices=("ours", "paper"), default="ours",
                   help="ours: docs/architecture.md (default); paper: the paper's dataflow, the baseline")
    p.add_argument("--dram-gbs", type=float, default=DRAM_GBS,
                   help=f"effective DRAM bandwidth, GB/s (default {DRAM_GBS}: measured ZCU102 PL->DDR4; "
                        f"peak {DDR4_GBS:.2f}); the AXI ports' bandwidth caps it")
    p.add_argument("--out", default="build/perf", help="CSV and PNG go here")
    p.add_argument("--quiet", action="store_true", help="totals only")
    p.add_argument("--sweep", action="store_true", help="FPS and utilization over N, M, T, S, L")
    p.add_argument("--fuse-mbconv", action="store_true",
                   help="paper dataflow only: keep each MBConv's expanded tensor on chip")
    p.add_argument("--batch", type=int, default=1, help="paper dataflow only: images per weight fetch")
    p.add_argument("--bench", action="store_true",
                   help="B1/B2 at R224/256/288, both dataflows at 12.8 and 17.06 GB/s (make bench)")
    a = p.parse_args(argv)
    from quant.model import ModelError

    try:
        if a.dram_gbs <= 0:
            raise ConfigError("--dram-gbs must be positive")
        if a.batch < 1:
            raise ConfigError("--batch must be >= 1")
        cfg = check_fits(parse_config(a.config, a.freq))
        if a.bench:
            bench(cfg, a.out)
        elif a.sweep:
            sweep(a.model, a.resolution, cfg, a.dram_gbs, a.fuse_mbconv, a.batch, a.dataflow)
        else:
            run_one(a.model, a.resolution, cfg, a.dram_gbs, a.out, a.quiet, a.fuse_mbconv, a.batch,
                    a.dataflow)
    except (ConfigError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
