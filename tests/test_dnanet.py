"""DNANet: exact sizes, forward contract, ablations, reference-checkpoint mapping."""

import pytest
import torch

from sirst.layers import ChannelAttention, ResCBAMBlock, SpatialAttention, VGGBlock
from sirst.models import create_model, pad_to_multiple
from sirst.models.dnanet import (
    BACKBONES,
    DNIM_MODES,
    DNANet,
    load_reference_state_dict,
    reference_key_map,
    to_reference_state_dict,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "backbone,expected", [("resnet18", 4_696_888), ("resnet10", 2_612_196), ("resnet34", 8_792_702)]
)
def test_parameter_counts_match_reference(backbone, expected):
    assert n_params(create_model("dnanet", backbone=backbone)) == expected


def test_one_input_channel_changes_only_the_first_conv():
    # 3 -> 1 input channels removes 2 * 9 * 16 weights of conv0_0.conv1 and 2 * 16 of its 1x1 shortcut.
    assert n_params(create_model("dnanet", in_channels=1)) == 4_696_888 - 2 * 9 * 16 - 2 * 16


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_output_shapes_for_every_backbone(backbone):
    model = create_model("dnanet", backbone=backbone, channel_size="one")
    x = torch.randn(2, 3, 32, 48)
    model.train()
    outs = model(x)
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == (2, 1, 32, 48) for o in outs)
    model.eval()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 32, 48)


def test_without_deep_supervision_returns_a_tensor_in_both_modes():
    model = create_model("dnanet", channel_size="one", deep_supervision=False)
    x = torch.randn(1, 3, 32, 32)
    assert model.train()(x).shape == (1, 1, 32, 32)
    assert model.eval()(x).shape == (1, 1, 32, 32)


def test_deep_supervision_fused_head_is_last_and_equals_eval_output():
    model = create_model("dnanet", channel_size="one")
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    # In eval mode BN uses running stats; compare the train-mode list under eval BN behaviour.
    eval_out = model(x)
    model.training = True  # only the top-level flag: the heads list, with eval-mode BN below
    outs = model(x)
    torch.testing.assert_close(outs[-1], eval_out)
    assert not torch.allclose(outs[0], outs[-1])


@pytest.mark.parametrize("dnim", DNIM_MODES)
@pytest.mark.parametrize("attention", ["csam", "none", "sum", "channel_only", "spatial_only"])
def test_ablation_variants_forward(dnim, attention):
    model = DNANet(channel_size="one", dnim=dnim, attention=attention, backbone="resnet10")
    x = torch.randn(1, 3, 32, 32)
    outs = model.train()(x)
    assert outs[-1].shape == (1, 1, 32, 32)
    assert len(outs) == (1 if dnim == "none" else 4)
    assert model.eval()(x).shape == (1, 1, 32, 32)


def test_ablation_variants_really_differ():
    counts = {name: n_params(create_model(name)) for name in (
        "dnanet", "dnanet_wo_dnim", "dnanet_top_to_bottom", "dnanet_left_to_right",
        "dnanet_wo_csam", "dnanet_channel_only", "dnanet_spatial_only")}
    assert len(set(counts.values())) == len(counts)
    # The widened w/o-CSAM variant stays within 0.1% of the paper's size; every CSAM ablation
    # variant is in the paper's 4.70-4.73M (to two decimals).
    assert abs(counts["dnanet_wo_csam"] - 4_696_888) / 4_696_888 < 1e-3
    for name in ("dnanet_wo_csam", "dnanet_channel_only", "dnanet_spatial_only"):
        assert 4.695e6 <= counts[name] < 4.735e6, (name, counts[name])
    # sum and sequential attention have the same parameters but different outputs
    torch.manual_seed(1)
    a = create_model("dnanet", channel_size="one").eval()
    b = create_model("dnanet_sum_attention", channel_size="one").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(a(x), b(x))


def test_vgg10_is_not_resnet10():
    vgg = create_model("dnanet", backbone="vgg10")
    res = create_model("dnanet", backbone="resnet10")
    assert n_params(vgg) != n_params(res)
    assert not any(isinstance(m, (ChannelAttention, SpatialAttention, ResCBAMBlock)) for m in vgg.modules())
    assert any(isinstance(m, VGGBlock) for m in vgg.modules())


def test_gradient_reaches_every_parameter():
    model = create_model("dnanet", channel_size="one", backbone="resnet10").train()
    outs = model(torch.randn(2, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.count_nonzero(p.grad) > 0, name


def test_bad_size_error_says_how_to_pad():
    model = create_model("dnanet", channel_size="one").eval()
    with pytest.raises(ValueError, match=r"divisible by 16, got 30x32.*pad_to_multiple"):
        model(torch.randn(1, 3, 30, 32))


def test_pad_to_multiple():
    x = torch.ones(1, 1, 30, 33)
    padded, size = pad_to_multiple(x, 16)
    assert padded.shape == (1, 1, 32, 48) and size == (30, 33)
    assert padded[..., :30, :33].sum() == 30 * 33 and padded.sum() == 30 * 33


def test_eval_is_deterministic():
    model = create_model("dnanet", channel_size="one").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))


def test_conv_weights_are_xavier_normal():
    model = create_model("dnanet")
    w = model.nodes["0_4"][0].conv1.weight  # fan_in = fan_out ~ 9 * 80, 9 * 16
    fan_in, fan_out = w.shape[1] * 9, w.shape[0] * 9
    expected_std = (2.0 / (fan_in + fan_out)) ** 0.5
    assert abs(w.std().item() - expected_std) / expected_std < 0.05


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_reference_checkpoint_round_trip(deep_supervision):
    source = create_model("dnanet", channel_size="one", deep_supervision=deep_supervision).eval()
    # Perturb BN statistics so the running buffers are part of what must transfer.
    for m in source.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ref = to_reference_state_dict(source)
    assert "conv0_4_final.0.conv1.weight" in ref and "conv1_0.0.ca.fc1.weight" in ref
    assert "conv0_4_1x1.weight" in ref and "conv0_1_1x1.bias" in ref
    assert ("final4.weight" in ref) == deep_supervision and ("final.weight" in ref) != deep_supervision
    checkpoint = {"state_dict": {f"module.{k}": v for k, v in ref.items()}, "epoch": 3}
    target = create_model("dnanet", channel_size="one", deep_supervision=deep_supervision).eval()
    load_reference_state_dict(target, checkpoint)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(target(x), source(x), atol=1e-5, rtol=0)


def test_reference_key_map_is_one_to_one_and_lateral_order():
    model = create_model("dnanet", channel_size="one")
    mapping = reference_key_map(model)
    assert len(set(mapping.values())) == len(mapping)
    assert mapping["lateral.0.weight"] == "conv0_4_1x1.weight"  # from x4_0
    assert model.state_dict()["lateral.0.weight"].shape[1] == model.widths[4]


def test_reference_checkpoint_mismatch_is_reported():
    model = create_model("dnanet", channel_size="one")
    ref = to_reference_state_dict(model)
    ref.pop("final1.weight")
    ref["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing 1: \['final1.weight'\].*unexpected 1"):
        load_reference_state_dict(create_model("dnanet", channel_size="one"), ref)


def test_forward_equals_the_reference_forward_written_out_node_by_node():
    """The public code's forward, spelled out node by node with its concatenation order, run on our
    weights under its names: it must give our outputs (the round trip above cannot see a wrong order)."""
    import torch.nn.functional as F

    torch.manual_seed(3)
    model = create_model("dnanet", channel_size="one", backbone="resnet10").eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ref = to_reference_state_dict(model)
    w0, w1, w2, w3, w4 = model.widths
    n1, n2, n3, n4 = BACKBONES["resnet10"]

    def sub(name):
        return {k[len(name) + 1 :]: v for k, v in ref.items() if k.startswith(name + ".")}

    def layer(name, cin, cout, n=1):
        seq = torch.nn.Sequential(ResCBAMBlock(cin, cout), *[ResCBAMBlock(cout, cout) for _ in range(n - 1)])
        seq.load_state_dict(sub(name))
        return seq.eval()

    def conv1x1(name, cin, cout):
        conv = torch.nn.Conv2d(cin, cout, 1)
        conv.load_state_dict(sub(name))
        return conv

    c = {
        "0_0": layer("conv0_0", 3, w0), "1_0": layer("conv1_0", w0, w1, n1), "2_0": layer("conv2_0", w1, w2, n2),
        "3_0": layer("conv3_0", w2, w3, n3), "4_0": layer("conv4_0", w3, w4, n4),
        "0_1": layer("conv0_1", w0 + w1, w0), "1_1": layer("conv1_1", w1 + w2 + w0, w1, n1),
        "2_1": layer("conv2_1", w2 + w3 + w1, w2, n2), "3_1": layer("conv3_1", w3 + w4 + w2, w3, n3),
        "0_2": layer("conv0_2", 2 * w0 + w1, w0), "1_2": layer("conv1_2", 2 * w1 + w2 + w0, w1, n1),
        "2_2": layer("conv2_2", 2 * w2 + w3 + w1, w2, n2),
        "0_3": layer("conv0_3", 3 * w0 + w1, w0), "1_3": layer("conv1_3", 3 * w1 + w2 + w0, w1, n1),
        "0_4": layer("conv0_4", 4 * w0 + w1, w0), "final": layer("conv0_4_final", 5 * w0, w0),
    }
    p4, p3 = conv1x1("conv0_4_1x1", w4, w0), conv1x1("conv0_3_1x1", w3, w0)
    p2, p1 = conv1x1("conv0_2_1x1", w2, w0), conv1x1("conv0_1_1x1", w1, w0)
    heads = [conv1x1(f"final{k}", w0, 1) for k in (1, 2, 3, 4)]

    def up(t, s=2):
        return F.interpolate(t, scale_factor=s, mode="bilinear", align_corners=True)

    def down(t):
        return F.interpolate(t, scale_factor=0.5, mode="bilinear", align_corners=True)

    pool, cat = torch.nn.MaxPool2d(2, 2), (lambda *ts: torch.cat(ts, 1))
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        x0_0 = c["0_0"](x)
        x1_0 = c["1_0"](pool(x0_0))
        x0_1 = c["0_1"](cat(x0_0, up(x1_0)))
        x2_0 = c["2_0"](pool(x1_0))
        x1_1 = c["1_1"](cat(x1_0, up(x2_0), down(x0_1)))
        x0_2 = c["0_2"](cat(x0_0, x0_1, up(x1_1)))
        x3_0 = c["3_0"](pool(x2_0))
        x2_1 = c["2_1"](cat(x2_0, up(x3_0), down(x1_1)))
        x1_2 = c["1_2"](cat(x1_0, x1_1, up(x2_1), down(x0_2)))
        x0_3 = c["0_3"](cat(x0_0, x0_1, x0_2, up(x1_2)))
        x4_0 = c["4_0"](pool(x3_0))
        x3_1 = c["3_1"](cat(x3_0, up(x4_0), down(x2_1)))
        x2_2 = c["2_2"](cat(x2_0, x2_1, up(x3_1), down(x1_2)))
        x1_3 = c["1_3"](cat(x1_0, x1_1, x1_2, up(x2_2), down(x0_3)))
        x0_4 = c["0_4"](cat(x0_0, x0_1, x0_2, x0_3, up(x1_3)))
        fused = c["final"](cat(up(p4(x4_0), 16), up(p3(x3_1), 8), up(p2(x2_2), 4), up(p1(x1_3)), x0_4))
        expected = [heads[0](x0_1), heads[1](x0_2), heads[2](x0_3), heads[3](fused)]
        torch.testing.assert_close(model(x), expected[-1], atol=1e-5, rtol=0)
        model.training = True  # the list of heads, BN still in eval mode
        for got, want in zip(model(x), expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
