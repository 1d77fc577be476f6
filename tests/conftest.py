"""Shared fixtures: a quantized digits proxy (random weights: bit-exactness needs no training)."""

import subprocess
import sys

import pytest
import torch

from quant.model import build_model


def run(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def proxy_quantized(tmp_path_factory):
    """A random-weight proxy calibrated on 8 digits at 64x64 (python -m quant calibrate's q.pt)."""
    d = tmp_path_factory.mktemp("proxy")
    torch.manual_seed(0)
    torch.save({"state_dict": build_model("proxy").state_dict()}, d / "proxy.pt")
    rc, _, err = run("quant", "calibrate", "--model", "proxy", "--resolution", "64", "--checkpoint",
                     str(d / "proxy.pt"), "--data", "digits", "--calib", "8", "--iters", "0",
                     "--out", str(d / "q.pt"))
    assert rc == 0, err
    return d / "q.pt"
