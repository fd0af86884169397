"""ONNX export: parity with PyTorch on several sizes, dynamic axes, the onnxruntime backend."""

import numpy as np
import pytest
import torch

from sirst.checkpoint import save_checkpoint
from sirst.cli import main
from sirst.detect import Detector
from sirst.detect.export import OnnxRunner
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


def _input_dims(path):
    import onnx

    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def test_dynamic_axes_are_symbolic(exported):
    _, path = exported
    dims = _input_dims(path)
    assert dims[1] == 3
    assert all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))
    # One file serves a size it was not traced at (the trace used 64x64).
    assert OnnxRunner(path)(torch.zeros(3, 3, 16, 80)).shape == (3, 1, 16, 80)


def test_static_export_has_fixed_shape(tmp_path):
    torch.manual_seed(0)
    model = create_model("dnanet", channel_size="one", backbone="resnet10").eval()
    kwargs = {"channel_size": "one", "backbone": "resnet10"}
    ckpt = {"model_name": "dnanet", "model_kwargs": kwargs, "state_dict": model.state_dict()}
    save_checkpoint(ckpt, tmp_path / "w.pt")
    assert main(["export", "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "s.onnx"), "--no-dynamic"]) == 0
    assert _input_dims(tmp_path / "s.onnx") == [1, 3, 64, 64]
    with pytest.raises(Exception, match="Got: 32 Expected: 64"):  # static graph refuses other sizes
        OnnxRunner(tmp_path / "s.onnx")(torch.zeros(1, 3, 32, 32))


def test_detect_cli_with_onnxruntime_backend(exported, tmp_path):
    _, path = exported
    from PIL import Image

    Image.fromarray(np.full((40, 56), 60, np.uint8)).save(tmp_path / "x.png")
    out = tmp_path / "o"
    assert main(["detect", str(tmp_path / "x.png"), "--backend", "onnxruntime", "--weights", str(path),
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "masks" / "x.png").is_file() and (out / "detections.csv").is_file()


def test_backend_and_precision_that_do_not_go_together_are_refused_before_any_work(tmp_path, capsys):
    assert main(["detect", str(tmp_path), "--backend", "onnxruntime", "--precision", "bf16",
                 "--out", str(tmp_path / "o")]) == 2
    assert "the onnxruntime backend runs fp32, int8, not 'bf16'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "detections.csv").exists()


def test_onnx_weights_with_the_torch_backend_are_refused(exported, tmp_path, capsys):
    _, path = exported
    assert main(["detect", str(tmp_path), "--backend", "torch", "--weights", str(path), "--out",
                 str(tmp_path / "o")]) == 2
    assert "an ONNX model runs with --backend onnxruntime or openvino" in capsys.readouterr().err


def test_export_writes_a_valid_model_with_its_metadata(tmp_path):
    import onnx

    from sirst.detect.export import export_onnx

    torch.manual_seed(0)
    model = create_model("dnanet", channel_size="one", backbone="resnet10", in_channels=1).eval()
    path = export_onnx(model, tmp_path / "m.onnx", in_channels=1)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {p.key: p.value for p in proto.metadata_props} == {"size_divisor": "16", "in_channels": "1"}
