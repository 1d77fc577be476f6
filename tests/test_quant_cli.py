"""`python -m quant` as a user runs it: info, the ImageNet-folder path end to end, one-line errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from quant.data import DataError, ImageFolder, preprocess
from quant.model import build_model


def run(*args):
    p = subprocess.run([sys.executable, "-m", "quant", *args], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def test_info_and_csv(tmp_path):
    rc, out, _ = run("info", "--model", "b1", "--resolution", "224", "--csv", str(tmp_path / "b1.csv"))
    assert rc == 0
    assert "9,102,024 parameters, 519,214,592 MACs" in out
    rows = list(csv.DictReader(open(tmp_path / "b1.csv")))
    assert sum(int(r["macs"]) for r in rows) == 519_214_592
    assert {r["op"] for r in rows} == {"conv", "dw", "pw", "gpw", "matmul_vk", "matmul_q", "linear"}


@pytest.mark.parametrize("args, message", [
    (["info", "--model", "b3"], "unknown model 'b3'"),
    (["info", "--resolution", "230"], "unsupported resolution 230"),
    (["calibrate", "--checkpoint", "/nonexistent.pt", "--data", "digits"], "not found"),
    (["calibrate", "--random-weights", "--data", "/nonexistent-folder"],
     "image folder /nonexistent-folder not found"),
    (["eval", "--model", "proxy", "--resolution", "64", "--random-weights", "--data", "digits",
      "--quantized", "/nonexistent.pt"], "quantized model /nonexistent.pt not found"),
    (["calibrate", "--model", "b1", "--random-weights", "--data", "digits"],
     "digits proxy runs at resolution 64"),
    pytest.param(["calibrate", "--model", "proxy", "--resolution", "64", "--random-weights",
                  "--data", "digits", "--device", "cuda"], "--device cuda: torch",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_one_line_errors(args, message):
    rc, out, err = run(*args)
    assert rc == 2, err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # warning line + error line


def test_corrupt_checkpoint_and_empty_folder(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    rc, _, err = run("calibrate", "--checkpoint", str(bad), "--data", "digits")
    assert rc == 2 and "cannot be read" in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolder(tmp_path / "empty", 64, 1.0, (0, 0, 0), (1, 1, 1))
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolder(tmp_path / "empty", 64, 1.0, (0, 0, 0), (1, 1, 1))


def test_preprocess_resize_crop_normalise():
    from PIL import Image

    img = Image.new("RGB", (100, 50), (255, 0, 51))
    x = preprocess(img, 32, 0.8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert np.allclose(x[:, 16, 16], [1.0, -1.0, -0.6], atol=1e-2)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for c in ("n01440764", "n01443537"):
        (root / c).mkdir()
        for i, (w, h) in enumerate([(80, 70), (50, 90), (96, 96)]):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / c / f"{i}.JPEG")
    return root


def test_imagefolder_calibrate_eval_export(tmp_path, image_folder):
    torch.manual_seed(0)
    ckpt = tmp_path / "proxy.pt"
    torch.save({"state_dict": build_model("proxy").state_dict()}, ckpt)
    common = ["--model", "proxy", "--resolution", "64", "--checkpoint", str(ckpt),
              "--data", str(image_folder)]
    q = tmp_path / "q.pt"
    rc, out, err = run("calibrate", *common, "--calib", "4", "--iters", "2", "--out", str(q),
                       "--device", "auto")
    assert rc == 0, err
    assert "calibrated" in err and "block 11/11 head" in err and "ETA" in err
    assert f"images on {'cuda' if torch.cuda.is_available() else 'cpu'}" in err
    rc, out, err = run("eval", *common, "--quantized", str(q), "--integer", "2",
                       "--json", str(tmp_path / "r.json"))
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 6 and report["integer_images"] == 2
    rc, out, err = run("export", "--quantized", str(q), "--data", str(image_folder),
                       "--out", str(tmp_path / "g"))
    assert rc == 0, err
    man = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert man["model"] == "proxy" and man["ops"][0]["kind"] == "input" and man["ops"][0]["host"]
    # the exported integers do not depend on --device (freeze and the integer model are numpy)
    rc, out, err = run("export", "--quantized", str(q), "--data", str(image_folder),
                       "--out", str(tmp_path / "g2"), "--device", "cpu")
    assert rc == 0, err
    for e in man["ops"]:
        a, b = np.load(tmp_path / "g" / e["file"]), np.load(tmp_path / "g2" / e["file"])
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_deit_tsptq_calibrate_and_eval_on_a_folder(tmp_path, image_folder):
    from quant.deit import DEIT_SPECS, DeiT

    torch.manual_seed(0)
    ckpt = tmp_path / "deit.pth"
    torch.save({"model": DeiT(DEIT_SPECS["deit-tiny"]).state_dict()}, ckpt)  # the DeiT releases' wrapper
    common = ["--model", "deit-tiny", "--checkpoint", str(ckpt), "--data", str(image_folder)]
    q = tmp_path / "q.pt"
    rc, out, err = run("calibrate", *common, "--method", "tsptq", "--calib", "2", "--out", str(q))
    assert rc == 0, err
    assert "v2sf: 24 sites" in err and "o2sf: 25 sites" in err and "uniform: 49 sites" in err
    rc, out, err = run("eval", *common, "--quantized", str(q), "--limit", "2",
                       "--json", str(tmp_path / "r.json"))
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 2 and "fakequant_top1" in report
    rc, out, err = run("eval", *common, "--quantized", str(q), "--limit", "2", "--integer", "1")
    assert rc == 0 and "top-1 agreement with fake-quant" in out, err
    rc, out, err = run("export", "--quantized", str(q), "--data", str(image_folder),
                       "--out", str(tmp_path / "g"))
    assert rc == 0, err
    man = json.loads((tmp_path / "g" / "manifest.json").read_text())
    kinds = [e["kind"] for e in man["ops"]]
    assert man["model"] == "deit-tiny" and kinds.count("two_scale_matmul") == 12 * 3 + 12 * 3 + 1
    # (per block: qkv, fc1, fc2 and the 3 heads' attention x v; the head)
    for args, message in [(["calibrate", *common, "--method", "trio"],
                           "--method trio does not apply to DeiT-Tiny"),
                          (["eval", "--model", "proxy", "--resolution", "64", "--random-weights",
                            "--data", "digits", "--quantized", str(q)],
                           "holds a TSPTQ-ViT deit-tiny, not an EfficientViT program")]:
        rc, _, err = run(*args)
        assert rc == 2 and message in err and "Traceback" not in err, err
