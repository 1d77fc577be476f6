"""DeiT-Tiny/Small/Base (quant/deit.py): parameter counts, the timm/DeiT key names, checkpoints with
and without the releases' {"model": ...} wrapper, the per-layer MACs of `python -m quant info`
against an independent count, one-line errors."""

import subprocess
import sys

import pytest
import torch

from quant.model import ModelError, build_model, layer_table, load_checkpoint, param_count, total_macs

PARAMS = {"deit-tiny": 5_717_416, "deit-small": 22_050_664, "deit-base": 86_567_656}
DIMS = {"deit-tiny": (192, 3), "deit-small": (384, 6), "deit-base": (768, 12)}


@pytest.mark.parametrize("name", PARAMS)
def test_parameter_counts_and_macs(name):
    model = build_model(name)
    assert param_count(model) == PARAMS[name]
    d, h = DIMS[name]
    n = 197  # 14 x 14 patches + the class token
    block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * 4 * d  # qkv, qk, av, proj, fc1+fc2
    expected = 196 * d * 3 * 16 * 16 + 12 * block + d * 1000
    rows = layer_table(model, 224)
    assert total_macs(rows) == expected
    ops = [r["op"] for r in rows]
    assert ops[:7] == ["conv", "linear", "matmul_qk", "matmul_av", "linear", "linear", "linear"]
    assert sum(r["heads"] == h for r in rows if r["op"] == "matmul_qk") == 12


def test_timm_key_names():
    keys = set(build_model("deit-tiny").state_dict())
    for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed",
              "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias",
              "blocks.11.norm2.bias", "blocks.11.mlp.fc1.weight", "blocks.11.mlp.fc2.bias", "norm.weight",
              "head.weight", "head.bias"):
        assert k in keys, k
    assert len(keys) == 4 + 12 * 12 + 4


@pytest.mark.parametrize("wrapped", [True, False])
def test_checkpoints_load_strictly_with_or_without_the_wrapper(tmp_path, wrapped):
    torch.manual_seed(1)
    src = build_model("deit-tiny")
    state = src.state_dict()
    torch.save({"model": state} if wrapped else state, tmp_path / "c.pth")
    dst = load_checkpoint(build_model("deit-tiny"), tmp_path / "c.pth")
    x = torch.randn(1, 3, 224, 224)
    assert torch.equal(src(x), dst(x))
    state = dict(state, extra=torch.zeros(1))
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="keys 1 unexpected"):
        load_checkpoint(build_model("deit-tiny"), tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="shape"):
        load_checkpoint(build_model("deit-small"), tmp_path / "c.pth")


def _quant(*args):
    return subprocess.run([sys.executable, "-m", "quant", *args], capture_output=True, text=True)


def test_info_cli_prints_the_facts():
    proc = _quant("info", "--model", "deit-tiny", "--resolution", "224")
    assert proc.returncode == 0, proc.stderr
    facts = "DeiT-Tiny at 224x224: 5,717,416 parameters, 1,253,683,200 MACs (batch 1), 74 MAC layers"
    assert facts in proc.stdout
    assert "blocks.11.attn.qk" in proc.stdout


@pytest.mark.parametrize("args,msg", [
    (["info", "--model", "deit-small", "--resolution", "256"], "DeiT-Small runs at 224"),
    (["calibrate", "--model", "deit-tiny", "--random-weights", "--resolution", "224", "--data", "digits",
      "--method", "vanilla"], "--method vanilla does not apply to DeiT-Tiny: use --method tsptq"),
    (["calibrate", "--model", "b1", "--random-weights", "--data", "digits", "--method", "tsptq"],
     "--method tsptq does not apply to EfficientViT-B1"),
])
def test_errors_are_one_line(args, msg):
    proc = _quant(*args)
    assert proc.returncode == 2 and msg in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
