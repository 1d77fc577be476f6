import json

import pytest

from hw.config import PRESETS, AcceleratorConfig, ConfigError


def test_paper_preset():
    cfg = PRESETS["paper"]
    assert cfg.name == "8x8+8x8x16"
    assert cfg.multipliers == 2048
    assert cfg.dsps == 1536  # MAT engines packed (512), one multiply-accumulate slice per R-MAC (1,024)
    assert cfg.peak_gmacs == pytest.approx(409.6)
    assert cfg.replace(dsp_packing=False).dsps == 2048
    assert AcceleratorConfig.parse("8x8+8x8x16") == cfg


def test_json_round_trip_and_hash():
    cfg = AcceleratorConfig.parse("4x2+8x3x5").replace(freq_mhz=150.0, dsp_packing=False)
    again = AcceleratorConfig.from_json(cfg.to_json())
    assert again == cfg and again.hash == cfg.hash
    assert len(cfg.hash) == 16 and cfg.hash != PRESETS["paper"].hash
    assert json.loads(cfg.to_json())["cores"] == 5


@pytest.mark.parametrize("kwargs,msg", [
    (dict(cores=0), "cores must be between 1 and 256, not 0"),
    (dict(n=True), "n must be an integer, not True"),
    (dict(t=2.0), "t must be an integer, not 2.0"),
    (dict(acc_bits=8), "acc_bits must be between 16 and 48, not 8"),
    (dict(log2_min=3, log2_max=3), "log2_min (3) must be below log2_max (3)"),
    (dict(freq_mhz=0), "freq_mhz must be between 1 and 1000, not 0"),
    (dict(dsp_packing="yes"), "dsp_packing must be true or false, not 'yes'"),
    (dict(aux_kib=0), "aux_kib must be at least 1, not 0"),
])
def test_validation_messages(kwargs, msg):
    with pytest.raises(ConfigError) as e:
        AcceleratorConfig(**kwargs)
    assert str(e.value) == msg


def test_parse_and_json_errors():
    with pytest.raises(ConfigError, match="unknown configuration 'big'"):
        AcceleratorConfig.parse("big")
    with pytest.raises(ConfigError, match="not valid JSON"):
        AcceleratorConfig.from_json("{")
    with pytest.raises(ConfigError, match="unknown configuration keys: lanes"):
        AcceleratorConfig.from_json('{"lanes": 3}')
    with pytest.raises(ConfigError, match="must be a JSON object"):
        AcceleratorConfig.from_json("[1]")


def test_unit_params_follow_the_configuration():
    p = AcceleratorConfig.parse("2x2+4x3x1").unit_params()
    assert p["requantizer"]["lanes"] == 3 and p["shifter_array"]["lanes"] == 3
    assert p["adder_tree"]["inputs"] == 4
    assert p["shifter_array"]["shift_bits"] == 4  # [-8, 7]
    assert p["log2_quantizer"] == dict(width=32, offset_bits=6, lo=-8, hi=7)


def test_self_accumulation_width_holds_every_sum_the_core_makes():
    """The R-MAC engine's self-accumulation psums hold a 5x5 depthwise window and a head's vk over
    the divisor buffer's tokens at the int8 extremes, and not one bit more."""
    cfg = PRESETS["paper"]
    assert cfg.attention_tokens == 1024 and cfg.sa_bits == 25
    vk = cfg.attention_tokens * -128 * 127  # every token's v at -128, ReLU(k) at 127
    assert -(1 << (cfg.sa_bits - 1)) <= vk < -(1 << (cfg.sa_bits - 2))
    assert 25 * 128 * 128 < 1 << (cfg.sa_bits - 1)  # a 5x5 window of -128 x -128
    assert cfg.replace(divisor_kib=1).sa_bits == 23 and cfg.replace(divisor_kib=64).sa_bits == 29
