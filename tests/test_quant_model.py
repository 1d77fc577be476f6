"""EfficientViT definitions: exact facts, checkpoint loading in both layouts, clear errors."""

import re

import pytest
import torch

from quant.model import ModelError, build_model, layer_table, load_checkpoint, param_count, total_macs

FACTS = {
    "b1": (9_102_024, {224: 519_214_592, 256: 676_915_712, 288: 855_643_648}),
    "b2": (24_330_712, {224: 1_584_937_984, 256: 2_067_533_824, 288: 2_614_475_776}),
}


@pytest.mark.parametrize("name", FACTS)
def test_params_and_macs(name):
    model = build_model(name)
    params, macs = FACTS[name]
    assert param_count(model) == params
    for res, expected in macs.items():
        assert total_macs(layer_table(model, res)) == expected


def test_mac_census_b1():
    rows = layer_table(build_model("b1"), 224)
    total = total_macs(rows)
    share = lambda op: round(sum(r["macs"] for r in rows if r["op"] == op) / total * 100, 2)  # noqa: E731
    # reference-facts.md: dense 1x1 90.30, grouped 1x1 1.16, stem 1.04, each matmul 0.82, head linears 0.78
    ops = ("pw", "gpw", "conv", "matmul_vk", "matmul_q", "linear")
    assert tuple(share(op) for op in ops) == (90.30, 1.16, 1.04, 0.82, 0.82, 0.78)
    assert [r["index"] for r in rows] == list(range(len(rows)))


def _timm_keys(state):
    out = {}
    for k, v in state.items():
        k = k.removeprefix("backbone.")
        k = re.sub(r"^input_stem\.op_list\.0\.", "stem.in_conv.", k)
        k = re.sub(r"^input_stem\.op_list\.(\d+)\.", lambda m: f"stem.res{int(m.group(1)) - 1}.", k)
        k = re.sub(r"^stages\.(\d+)\.op_list\.(\d+)\.", r"stages.\1.blocks.\2.", k)
        k = k.replace("head.op_list.0.", "head.in_conv.")
        k = k.replace("head.op_list.2.linear.", "head.classifier.0.")
        k = k.replace("head.op_list.2.norm.", "head.classifier.1.").replace("head.op_list.3.linear.",
                                                                            "head.classifier.4.")
        out[k] = v
    return out


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(1)
    m = build_model("proxy")
    for p in m.state_dict().values():
        if p.dtype.is_floating_point:
            p.copy_(torch.rand_like(p) * 0.5 + 0.5 if p.dim() == 1 else torch.randn_like(p) * 0.1)
    return m


@pytest.mark.parametrize("layout", ["plain", "wrapped", "timm"])
def test_checkpoint_layouts(tmp_path, random_model, layout):
    state = random_model.state_dict()
    if layout == "timm":
        state = _timm_keys(state)
        assert any(k.startswith("stem.res0.") for k in state)
    obj = {"state_dict": state} if layout == "wrapped" else state
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    fresh = load_checkpoint(build_model("proxy"), path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(x), random_model(x))


def test_checkpoint_errors(tmp_path, random_model):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(build_model("proxy"), tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read"):
        load_checkpoint(build_model("proxy"), bad)
    state = dict(random_model.state_dict())
    state["backbone.extra.weight"] = torch.zeros(1)
    del state["head.op_list.3.linear.bias"]
    torch.save(state, bad)
    with pytest.raises(ModelError, match=r"1 missing \(first: head.op_list.3.linear.bias\).*1 unexpected"):
        load_checkpoint(build_model("proxy"), bad)
    # a B1 checkpoint does not fit B2: shapes differ, keys differ
    torch.save(build_model("b1").state_dict(), bad)
    with pytest.raises(ModelError, match="does not fit model b2"):
        load_checkpoint(build_model("b2"), bad)
