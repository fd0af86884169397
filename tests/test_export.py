"""ONNX export: parity with PyTorch on several sizes, dynamic axes, the onnxruntime backend."""

import numpy as np
import pytest
import torch

from sirst.checkpoint import save_checkpoint
from sirst.cli import main
from sirst.export import OnnxRunner
from sirst.inference import Detector
from sirst.models import create_model

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = create_model("dnanet", channel_size="one", backbone="resnet10").eval()
    kwargs = {"channel_size": "one", "backbone": "resnet10"}
    save_checkpoint({"model_name": "dnanet", "model_kwargs": kwargs, "state_dict": model.state_dict()}, tmp / "w.pt")
    assert main(["export", "--weights", str(tmp / "w.pt"), "--out", str(tmp / "m.onnx")]) == 0
    return model, tmp / "m.onnx"


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 64, 48)])
def test_onnxruntime_matches_pytorch(exported, shape):
    model, path = exported
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = model(x)
    got = OnnxRunner(path)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_runner_metadata_and_detector_backend(exported):
    model, path = exported
    runner = OnnxRunner(path)
    assert runner.size_divisor == 16 and runner.in_channels == 3
    img = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    a = Detector(runner, tile=0).predict_scores([img])[0]
    b = Detector(model, tile=0).predict_scores([img])[0]
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_bad_onnx_file_is_named(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"x\.onnx: cannot load ONNX model"):
        OnnxRunner(bad)
