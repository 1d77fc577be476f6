"""The accelerator configuration: one frozen object read by the generator, the performance model
and the testbenches alike. Validated in one place; round-trips to JSON; stamped by its hash."""

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, fields

from quant import arith

__all__ = ["AcceleratorConfig", "Buffer", "ConfigError", "DW_KERNELS", "PRESETS"]

_NAME = re.compile(r"^(\d+)x(\d+)\+(\d+)x(\d+)x(\d+)$")
DW_KERNELS = (3, 5)  # the depthwise kernel sizes the core runs (hw/core.py, sim/core_ops.py)
DW_TAPS_MAX = max(DW_KERNELS) ** 2  # the most taps one depthwise window sums


@dataclass(frozen=True)
class Buffer:
    """One on-chip buffer: ``copies`` instances (one per core for per-core buffers) of ``kib``
    KiB in ``banks`` BRAM36 columns; ``read_bytes`` per cycle per instance (8 per bank);
    ``need_bytes``: what the dataflow asks of it per cycle; ``bram36``: all instances."""

    name: str
    scope: str
    kib: int
    copies: int
    banks: int
    bram36: int
    read_bytes: int
    need_bytes: int


class ConfigError(ValueError):
    """A user-facing configuration mistake; the message is one line and names the bad value."""


@dataclass(frozen=True)
class AcceleratorConfig:
    """(N x M + T x S) x L accelerator of the Trio-ViT paper (section V-B, Fig. 8).

    n, m: R-MACs per PE lane and PE lanes of the R-MAC engine.
    t, s: multipliers per PE lane and PE lanes of the MAT engine.
    cores: computing cores L.
    The widths are those of the arithmetic contract (docs/arithmetic.md); buffers are in KiB.
    """

    n: int = 8
    m: int = 8
    t: int = 8
    s: int = 8
    cores: int = 16
    act_bits: int = arith.ACT_BITS
    weight_bits: int = arith.WEIGHT_BITS
    acc_bits: int = arith.ACC_BITS
    mult_bits: int = arith.MULT_BITS
    shift_bits: int = arith.SHIFT_BITS
    log2_min: int = arith.LOG2_MIN
    log2_max: int = arith.LOG2_MAX
    offset_bits: int = arith.OFFSET_BITS
    dividend_bits: int = arith.DIVIDEND_BITS
    # On-chip buffers (KiB), sized in docs/architecture.md: global activations B (every live
    # tensor of B1/B2 at R224 on chip), global weight ring C, DMA output staging; per core:
    # input staging A, auxiliary (DW -> PW) and divisor buffers. 832 BRAM36 of the ZCU102's 912.
    buffer_b_kib: int = 2048
    buffer_c_kib: int = 512
    output_kib: int = 64
    buffer_a_kib: int = 32
    aux_kib: int = 8
    divisor_kib: int = 4
    # Weight reuse: an engine holds one weight chunk for a block of block_min..block_max pixels
    # (block_max psum registers per lane), so it reads S*T/block_min weight bytes per cycle.
    block_min: int = 8
    block_max: int = 16
    # DRAM side: AXI4 master ports (to the PS's S_AXI_HP ports) and their data width in bits.
    axi_ports: int = 4
    axi_bits: int = 128
    freq_mhz: float = 200.0
    dsp_packing: bool = True

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type is int and type(v) is not int:
                raise ConfigError(f"{f.name} must be an integer, not {v!r}")
            if f.type is bool and type(v) is not bool:
                raise ConfigError(f"{f.name} must be true or false, not {v!r}")
        for name in ("n", "m", "t", "s", "cores"):
            v = getattr(self, name)
            if not 1 <= v <= 256:
                raise ConfigError(f"{name} must be between 1 and 256, not {v}")
        for name, lo, hi in (("act_bits", 2, 16), ("weight_bits", 2, 16), ("acc_bits", 16, 48),
                             ("mult_bits", 2, 24), ("shift_bits", 1, 6), ("offset_bits", 2, 16),
                             ("dividend_bits", 2, 32)):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ConfigError(f"{name} must be between {lo} and {hi}, not {v}")
        if not self.log2_min < self.log2_max:
            raise ConfigError(f"log2_min ({self.log2_min}) must be below log2_max ({self.log2_max})")
        if max(-self.log2_min, self.log2_max) > 31:
            raise ConfigError(f"log2 clip range [{self.log2_min}, {self.log2_max}] exceeds +-31")
        for name in ("buffer_b_kib", "buffer_c_kib", "output_kib", "buffer_a_kib", "aux_kib",
                     "divisor_kib"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 1 <= self.block_min <= self.block_max <= 64:
            raise ConfigError(f"pixel blocks need 1 <= block_min <= block_max <= 64, not "
                              f"{self.block_min}..{self.block_max}")
        if not 1 <= self.axi_ports <= 4:
            raise ConfigError(f"axi_ports must be between 1 and 4 (the PS has four S_AXI_HP ports), "
                              f"not {self.axi_ports}")
        if self.axi_bits not in (32, 64, 128):
            raise ConfigError(f"axi_bits must be 32, 64 or 128 (S_AXI_HP widths), not {self.axi_bits}")
        if not (isinstance(self.freq_mhz, (int, float)) and 1 <= self.freq_mhz <= 1000):
            raise ConfigError(f"freq_mhz must be between 1 and 1000, not {self.freq_mhz!r}")

    # -- derived quantities -----------------------------------------------------------------
    @property
    def name(self):
        """The paper's notation, e.g. ``8x8+8x8x16``."""
        return f"{self.n}x{self.m}+{self.t}x{self.s}x{self.cores}"

    @property
    def multipliers(self):
        """int8 multipliers in the whole accelerator: L * (N*M + T*S)."""
        return self.cores * (self.n * self.m + self.t * self.s)

    @property
    def dsps(self):
        """DSP48E2 slices for the multipliers: the MAT engine's two packed products per DSP when
        packing is on, the R-MAC engine's one per R-MAC (a multiply-accumulate slice that keeps
        the self-accumulation's running sum, ``hw.dsp_mac.DspMac``)."""
        mat = self.t * (-(-self.s // 2) if self.dsp_packing else self.s)
        return self.cores * (mat + self.n * self.m)

    @property
    def peak_gmacs(self):
        """Physical limit: multipliers x clock, in GMAC/s."""
        return self.multipliers * self.freq_mhz / 1e3

    @property
    def axi_gbs(self):
        """Peak bandwidth of the AXI4 masters on the PL side: ports x width x clock, GB/s."""
        return self.axi_ports * self.axi_bits / 8 * self.freq_mhz * 1e6 / 1e9

    def buffers(self):
        """Geometry of every on-chip buffer (docs/architecture.md): a list of ``Buffer``.

        A buffer is ``banks`` columns of BRAM36 used as simple dual port, 64 data bits (8 bytes)
        per port: one read and one write of 8 bytes per bank and cycle. The bank count is what
        the dataflow needs (below), capped by the BRAM36 the capacity takes; a buffer too small
        for its banks has fewer ports, and the performance model refuses mappings that need more.
        """
        L = self.cores
        w_eng = -(-self.s * self.t // self.block_min) + -(-self.m * self.n // self.block_min)
        need = {  # read bytes per cycle the dataflow asks of each buffer
            "B": L * (2 * max(self.t, self.n) + self.m * self.n // 4),  # every core's A fills at once
            "C": L * w_eng,  # every core's two engines, a fresh weight chunk per block_min beats
            "output": L * 8,
            "A": 2 * max(self.t, self.n) + self.m * self.n // 4,  # two engines + DW window loads
            "aux": 2 * self.n,
            "divisor": 8,
        }
        specs = [("B", "global", self.buffer_b_kib, 1), ("C", "global", self.buffer_c_kib, 1),
                 ("output", "global", self.output_kib, 1), ("A", "per core", self.buffer_a_kib, L),
                 ("aux", "per core", self.aux_kib, L), ("divisor", "per core", self.divisor_kib, L)]
        out = []
        for name, scope, kib, copies in specs:
            brams = -(-kib // 4)
            banks = max(1, min(brams, -(-need[name] // 8)))
            brams = -(-brams // banks) * banks  # whole columns
            out.append(Buffer(name, scope, kib, copies, banks, brams * copies, banks * 8, need[name]))
        return out

    @property
    def dw_ports(self):
        """Buffer words per cycle a core's depthwise window fill reads: the two ports of the half
        of buffer B its input lies in (docs/architecture.md §3; the compiler places its output
        in the other half)."""
        return 2

    @property
    def bram36(self):
        """BRAM36 blocks of all buffers together."""
        return sum(b.bram36 for b in self.buffers())

    @property
    def attention_tokens(self):
        """Most tokens of an attention head a core runs: one int32 divisor per token in the
        divisor buffer."""
        return self.divisor_kib * 1024 // 4

    @property
    def sa_bits(self):
        """Width of the R-MAC engine's self-accumulation psums: the largest running sum the
        core's self-accumulating commands reach, exactly — a depthwise window (5 x 5 taps of
        int8 x int8, bias added later) or a head's vk (``attention_tokens`` of int8 x ReLU(int8)).
        The engine's last R-MAC per lane keeps ``acc_bits`` for the down-forward sums. The core
        passes it to its R-MAC engine (whose self-accumulations start from 0: the bias is added
        after); the engine on its own (``unit_params``), which takes a bias on the first beat,
        keeps ``acc_bits``."""
        lo, hi = -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
        dw = DW_TAPS_MAX * lo * lo
        vk = self.attention_tokens * lo * hi
        return min(self.acc_bits, max(arith.signed_bits(-dw, dw), arith.signed_bits(vk, -vk)))

    @property
    def log2_bits(self):
        """Signed width holding the log2 clip range."""
        return arith.signed_bits(self.log2_min, self.log2_max)

    def unit_params(self):
        """Constructor arguments of each unit of one computing core emitted so far."""
        return {
            "log2_quantizer": dict(width=self.acc_bits, offset_bits=self.offset_bits,
                                   lo=self.log2_min, hi=self.log2_max),
            "requantizer": dict(lanes=self.s, acc_bits=self.acc_bits, mult_bits=self.mult_bits,
                                shift_bits=self.shift_bits, out_bits=self.act_bits),
            "adder_tree": dict(inputs=self.t, width=self.act_bits, signed=False),
            "shifter_array": dict(lanes=self.s, in_bits=self.dividend_bits,
                                  shift_bits=self.log2_bits, out_bits=self.act_bits),
            "hardswish": dict(lanes=self.s, acc_bits=self.acc_bits, mult_bits=self.mult_bits,
                              shift_bits=self.shift_bits, out_bits=self.act_bits,
                              hswish_bits=arith.HSWISH_BITS, offset_bits=arith.SHIFT_OFFSET_BITS),
            "residual_adder": dict(lanes=self.s, in_bits=self.act_bits, mult_bits=self.mult_bits,
                                   shift_bits=self.shift_bits, out_bits=self.act_bits),
            # pool sums of int8 outputs; the same unit sums the adder tree's row sums (Σk)
            "accumulator": dict(lanes=self.s, in_bits=self.act_bits, signed=True, acc_bits=self.acc_bits),
            "attention_output": dict(lanes=self.s, acc_bits=self.acc_bits, mult_bits=self.mult_bits,
                                     shift_bits=self.shift_bits, dividend_bits=self.dividend_bits,
                                     offset_bits=self.offset_bits, lo=self.log2_min, hi=self.log2_max,
                                     out_bits=self.act_bits),
            # one per engine in the core: the requantizer, Hardswish and attention output in one
            "post_processor": dict(lanes=self.s, acc_bits=self.acc_bits, mult_bits=self.mult_bits,
                                   shift_bits=self.shift_bits, out_bits=self.act_bits,
                                   hswish_bits=arith.HSWISH_BITS, offset_bits=arith.SHIFT_OFFSET_BITS,
                                   dividend_bits=self.dividend_bits, log2_offset_bits=self.offset_bits,
                                   lo=self.log2_min, hi=self.log2_max),
            "mat_engine": dict(lanes=self.s, width=self.t, packing=self.dsp_packing,
                               requantize=True, acc_bits=self.acc_bits, mult_bits=self.mult_bits,
                               shift_bits=self.shift_bits, out_bits=self.act_bits),
            "rmac_engine": dict(lanes=self.m, rmacs=self.n, packing=self.dsp_packing,
                                requantize=True, acc_bits=self.acc_bits, mult_bits=self.mult_bits,
                                shift_bits=self.shift_bits, out_bits=self.act_bits),
        }

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ConfigError(f"a configuration must be a JSON object, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"configuration is not valid JSON: {e}") from None
        return cls.from_dict(d)

    @property
    def hash(self):
        """First 16 hex digits of the SHA-256 of the canonical JSON: stamps every artifact."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse(cls, text):
        """A preset name (``paper``, ``tiny``) or the notation ``NxM+TxSxL`` (e.g. ``8x8+8x8x16``)."""
        if text in PRESETS:
            return PRESETS[text]
        match = _NAME.match(text)
        if not match:
            raise ConfigError(f"unknown configuration {text!r}: expected a preset "
                              f"({', '.join(PRESETS)}) or NxM+TxSxL such as 8x8+8x8x16")
        n, m, t, s, cores = (int(g) for g in match.groups())
        return cls(n=n, m=m, t=t, s=s, cores=cores)


PRESETS = {
    "paper": AcceleratorConfig(),  # (8x8+8x8)x16: 2048 multipliers on 1024 DSPs at 200 MHz
    # for fast simulation: small buffers too
    "tiny": AcceleratorConfig(n=2, m=2, t=2, s=2, cores=1, buffer_b_kib=64, buffer_c_kib=16, output_kib=4,
                              buffer_a_kib=16, aux_kib=1, divisor_kib=1, block_min=2, block_max=4,
                              axi_ports=1, axi_bits=64),
    # the same cores, two of them in lockstep (buffer B: 64 KiB per core's pixel group), two AXI ports
    "tiny2": AcceleratorConfig(n=2, m=2, t=2, s=2, cores=2, buffer_b_kib=128, buffer_c_kib=16, output_kib=4,
                               buffer_a_kib=16, aux_kib=1, divisor_kib=1, block_min=2, block_max=4,
                               axi_ports=2, axi_bits=64),
}
