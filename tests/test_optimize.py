"""Fast inference paths give the same outputs: BN folding, channels_last, bf16, compile, CUDA graphs,
and their use by Detector, evaluate and the training loop."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from sirst.bench import network_batch, same_detections, synthetic_images
from sirst.detect import Detector
from sirst.detect.optimize import (
    OptimizedModel,
    count_batchnorms,
    fold_batchnorm,
    optimize_for_inference,
)
from sirst.models import create_model, list_models, unwrap

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def randomise_bn_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (fresh BNs fold to the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model.eval()


def last(out):
    return out[-1] if isinstance(out, (list, tuple)) else out


@pytest.mark.parametrize("name", list_models())
def test_folding_keeps_every_registered_model_equal(name):
    model = randomise_bn_(create_model(name))
    before = count_batchnorms(model)
    side = max(16, int(getattr(model, "size_divisor", 1)))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected = last(model(x))
        folded = fold_batchnorm(model)
        got = last(folded(x))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert count_batchnorms(folded) < before
    assert count_batchnorms(model) == before  # the original is untouched


def test_dnanet_folds_every_batchnorm_and_the_copy_is_frozen():
    model = randomise_bn_(create_model("dnanet", channel_size="one"))
    opt = optimize_for_inference(model)
    assert count_batchnorms(opt.net) == 0
    assert not any(p.requires_grad for p in opt.net.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert opt.size_divisor == 16 and opt.in_channels == 3
    with pytest.raises(RuntimeError, match="inference only"):
        opt.train()


@pytest.mark.parametrize("kwargs", [dict(), dict(channels_last=False), dict(fold_bn=False)])
def test_fp32_paths_agree_to_1e4(kwargs):
    model = randomise_bn_(create_model("dnanet", channel_size="one"))
    x = torch.randn(3, 3, 48, 32)
    with torch.no_grad():
        expected = model(x)
    got = optimize_for_inference(model, **kwargs)(x)
    assert got.dtype == torch.float32 and got.shape == (3, 1, 48, 32)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


class Bright(nn.Module):
    """A fixed detector with BN: logit = 40 * (normalised channel 0 - that of intensity (k + 0.5) / 255).

    8-bit inputs keep every logit at least 40 * 0.5 / 255 / 0.229 = 0.34 from 0, more than bf16's
    rounding, as a trained network's logits are decisive away from target borders.
    """

    size_divisor = 1

    def __init__(self, level: int = 150) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 1, 1)
        conv.weight.data.zero_()
        conv.weight.data[0, 0] = 1.0
        conv.bias.data.zero_()
        bn = nn.BatchNorm2d(1)
        bn.running_mean.fill_(((level + 0.5) / 255 - 0.485) / 0.229)
        bn.running_var.fill_(1 / 1600 - bn.eps)
        self.net = nn.Sequential(conv, bn)

    def forward(self, x):
        return self.net(x)


def test_bf16_gives_the_same_detections_on_synthesized_images():
    model = Bright().eval()
    x = network_batch(synthetic_images(8, 64, seed=3))
    with torch.no_grad():
        expected = model(x)[:, 0].numpy()
    got = optimize_for_inference(model, precision="bf16")(x)[:, 0].numpy()
    check = same_detections(expected, got)
    assert check.targets >= 8  # the check is not vacuous
    assert check.identical, check
    assert 0 < check.max_abs_logit_diff < 1.0  # bf16 did change the numbers


def test_bad_options_are_refused():
    model = Bright()
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(model, precision="int4")
    with pytest.raises(ValueError, match="CUDA"):
        optimize_for_inference(model, "cpu", cuda_graphs=True)


@pytest.mark.slow
def test_compiled_path_agrees_to_1e4():
    model = randomise_bn_(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                        nn.Conv2d(8, 1, 1)))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    got = optimize_for_inference(model, compile=True)(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_paths_and_graphs_agree(precision):
    model = randomise_bn_(create_model("dnanet", channel_size="one"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    plain = optimize_for_inference(model, "cuda", precision=precision)(x).cpu()
    graphed = optimize_for_inference(model, "cuda", precision=precision, cuda_graphs=True)
    first, second = graphed(x).cpu(), graphed(x * 1).cpu()  # capture, then replay
    tol = 1e-3 if precision == "fp32" else 5e-2 * float(expected.abs().max())
    torch.testing.assert_close(plain, expected, atol=tol, rtol=0)
    torch.testing.assert_close(first, plain, atol=tol, rtol=0)
    torch.testing.assert_close(second, first)


# -- users get it by default ------------------------------------------------------------------------


def test_detector_optimises_modules_by_default_and_agrees_with_the_plain_model():
    model = randomise_bn_(create_model("dnanet", channel_size="one"))
    images = [np.random.default_rng(1).random((40, 56)).astype(np.float32)]
    fast = Detector(model, tile=0)
    plain = Detector(model, tile=0, optimize=False)
    assert isinstance(fast.model, OptimizedModel) and not isinstance(plain.model, OptimizedModel)
    np.testing.assert_allclose(fast.predict_logits(images)[0], plain.predict_logits(images)[0], atol=1e-4)


def test_evaluate_optimised_equals_plain(tmp_path):
    from sirst.data import SirstDataset
    from sirst.evaluation import evaluate_dataset as evaluate
    from tests.test_engine import make_tiny_dataset

    root = make_tiny_dataset(tmp_path / "d", num=6, num_test=3, size=32)
    model = randomise_bn_(create_model("dnanet", channel_size="one"))
    ds = SirstDataset(root, subset="test", mode="eval")
    a = evaluate(model, ds, progress=False)
    b = evaluate(model, ds, progress=False, optimize=False)
    for key in ("iou", "niou", "pd", "fa"):
        assert a[key] == pytest.approx(b[key], nan_ok=True), key


def test_unwrap_sees_through_torch_compile():
    model = nn.Conv2d(1, 1, 1)
    assert unwrap(torch.compile(model)) is model  # lazy: nothing is compiled here


@pytest.mark.slow
def test_compiled_training_step_matches_eager():
    from sirst.engine.config import TrainConfig
    from sirst.engine.steps import SegmentationStep

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))

    cfg = TrainConfig(data=".", out=".", optimizer="sgd", lr=0.1)
    batch = {"image": torch.randn(2, 3, 16, 16), "mask": (torch.rand(2, 1, 16, 16) > 0.9).float()}
    losses = []
    for compiled in (False, True):
        net = make()
        step = SegmentationStep(cfg)
        opts = step.configure_optimizers(net, cfg)
        runner = torch.compile(net) if compiled else net
        losses.append([float(step.step(runner, batch, opts)["loss"]) for _ in range(3)])
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-4)


def test_cpu_micro_batches_give_the_whole_batch_result():
    model = create_model("dnanet", channel_size="one", backbone="resnet10").eval()
    x = torch.randn(5, 3, 32, 48)
    split = optimize_for_inference(model, "cpu")  # micro-batches of 1 on the CPU by default
    whole = optimize_for_inference(model, "cpu", micro_batch=0)
    pairs = optimize_for_inference(model, "cpu", micro_batch=2)
    assert split.micro_batch == 1 and whole.micro_batch == 0
    ref = whole(x)
    for out in (split(x), pairs(x)):
        assert out.shape == (5, 1, 32, 48)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="micro_batch"):
        optimize_for_inference(model, "cpu", micro_batch=-1)


def _packed_modules(net: nn.Module) -> int:
    from sirst.detect.optimize import PackedConv2d, PackedResCBAMBlock

    return sum(isinstance(m, (PackedConv2d, PackedResCBAMBlock)) for m in net.modules())


@pytest.mark.parametrize("name", ["dnanet", "dnanet_sum_attention", "dnanet_vgg10", "acm"])
def test_onednn_packing_is_the_cpu_fp32_default_and_agrees(name):
    import copy

    from sirst.detect.optimize import PackedResCBAMBlock, onednn_packing_available

    if not onednn_packing_available():
        pytest.skip("this PyTorch build lacks oneDNN's fused convolution ops")
    small = name.startswith("dnanet") and name != "dnanet_vgg10"
    kwargs = dict(channel_size="one", backbone="resnet10") if small else {}
    model = randomise_bn_(create_model(name, **kwargs))
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        expected = last(model(x))
    packed = optimize_for_inference(model, "cpu")
    plain = optimize_for_inference(model, "cpu", onednn=False)
    assert _packed_modules(packed.net) > 0 and _packed_modules(plain.net) == 0
    if name in ("dnanet", "dnanet_sum_attention"):  # the fused block only replaces CSAM blocks
        fused = any(isinstance(m, PackedResCBAMBlock) for m in packed.net.modules())
        assert fused == (name == "dnanet")
    for got in (packed(x), plain(x), copy.deepcopy(packed)(x)):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # Only fp32 channels_last on the CPU is packed; asking for it elsewhere is refused.
    assert _packed_modules(optimize_for_inference(model, "cpu", precision="bf16").net) == 0
    assert _packed_modules(optimize_for_inference(model, "cpu", channels_last=False).net) == 0
    with pytest.raises(ValueError, match="onednn"):
        optimize_for_inference(model, "cpu", channels_last=False, onednn=True)


def test_onednn_packing_failure_falls_back_to_plain_convolutions(monkeypatch):
    import sirst.detect.optimize as optimize

    def refuse(net):
        for m in net.modules():  # modify part of the net first, as a failure halfway would
            if isinstance(m, nn.Conv2d):
                m.weight.data.zero_()
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(optimize, "onednn_packing_available", lambda: True)
    monkeypatch.setattr(optimize, "pack_for_onednn", refuse)
    model = randomise_bn_(create_model("dnanet", channel_size="one", backbone="resnet10"))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    with pytest.warns(UserWarning, match="oneDNN prepacking failed"):
        opt = optimize.optimize_for_inference(model, "cpu")
    assert _packed_modules(opt.net) == 0
    torch.testing.assert_close(opt(x), expected, atol=1e-4, rtol=1e-4)
