"""The digits proxies: the stress proxy's channel statistics and the division-step study."""

import numpy as np
import torch

from quant.data import digits_split
from quant.proxy import channel_spread, divisor_study, train
from quant.ptq import QuantOptions, quantize_model


def _median_dw_ratio(model, x):
    return float(np.median([r for _, kind, r, _ in channel_spread(model, x) if kind == "DW input"]))


def test_stress_proxy_spreads_the_depthwise_inputs():
    """A few epochs with the stress penalty already give the depthwise inputs several times the
    plain proxy's inter-channel spread (the full 40-epoch run: 30-350x against 6-10x)."""
    torch.set_num_threads(1)
    _, (xv, _) = digits_split(seed=0)
    plain = train("/dev/null", epochs=6, seed=0, log=lambda *_: None)
    stress = train("/dev/null", epochs=6, seed=0, log=lambda *_: None, stress=True)
    rows = channel_spread(stress, xv[:64])
    assert {kind for _, kind, _, _ in rows} == {"DW input", "PW2 input"}
    assert _median_dw_ratio(stress, xv[:64]) > 3 * _median_dw_ratio(plain, xv[:64])


def test_divisor_study_variants():
    torch.set_num_threads(1)
    (xt, _), (xv, _) = digits_split(seed=0)
    model = train("/dev/null", epochs=3, seed=0, log=lambda *_: None)
    prog = quantize_model(model, xt[:64], QuantOptions(iters=0, seed=0))
    result, share = divisor_study(prog, xv[:4].numpy(), log=lambda *_: None)
    assert len(result) == 3 and 0 <= share <= 1
    assert all(np.isfinite(a) for a, _ in result.values())
