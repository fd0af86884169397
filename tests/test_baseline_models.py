"""ACM, ALCNet and MDvsFA: building blocks with known answers, sizes, and the GAN training step."""

from __future__ import annotations

import pytest
import torch

from sirst.engine.config import TrainConfig
from sirst.engine.steps import TrainStep, get_train_step
from sirst.models import create_model
from sirst.models.acm import ACM, AsymBiFusion, PooledBatchNorm2d
from sirst.models.alcnet import ALCNet, local_contrast, multiscale_local_contrast
from sirst.models.mdvsfa import MDvsFA, MDvsFAStep, md_fa_losses


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Dilated local contrast (ALCNet)
# ---------------------------------------------------------------------------------------------


def test_local_contrast_of_a_point_is_its_squared_contrast():
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 10, 20] = 3.0
    out = local_contrast(x, shift=4)
    expected = torch.zeros_like(x)
    expected[0, 0, 10, 20] = 9.0  # every direction: (0 - 3) * (0 - 3)
    assert torch.equal(out, expected)


def test_local_contrast_suppresses_lines_and_flat_areas():
    line = torch.zeros(1, 1, 32, 32)
    line[0, 0, 16, :] = 5.0  # a horizontal line: the horizontal direction has no contrast
    assert torch.equal(local_contrast(line, shift=3), torch.zeros_like(line))
    flat = torch.full((2, 3, 16, 16), 7.0)
    assert torch.equal(local_contrast(flat, shift=5), torch.zeros_like(flat))


def test_local_contrast_wraps_around_borders_and_takes_the_minimum_direction():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 0, 0] = 2.0
    x[0, 0, 0, 6] = 1.0  # the left neighbour of (0, 0) at distance 2, across the border
    out = local_contrast(x, shift=2)
    # Horizontal: (x[0, 2] - 2) * (x[0, 6] - 2) = (-2) * (-1) = 2; other directions give 4.
    assert out[0, 0, 0, 0] == pytest.approx(2.0)


def test_multiscale_contrast_is_the_maximum_over_shifts():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 24, 24)
    expected = torch.maximum(local_contrast(x, 3), local_contrast(x, 5))
    assert torch.equal(multiscale_local_contrast(x, (3, 5)), expected)
    with pytest.raises(ValueError):
        local_contrast(x, 0)


# ---------------------------------------------------------------------------------------------
# AsymBi fusion (ACM)
# ---------------------------------------------------------------------------------------------


def test_asymbi_topdown_is_global_and_bottomup_is_local():
    torch.manual_seed(0)
    fuse = AsymBiFusion(8).eval()
    xh, xl = torch.randn(1, 8, 16, 16), torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        base = fuse(xh, xl)
        xl2 = xl.clone()
        xl2[0, :, 2, 3] += 5.0
        changed_low = (fuse(xh, xl2) - base).abs().sum(dim=1)[0] > 1e-6
        xh2 = xh.clone()
        xh2[0, :, 2, 3] += 5.0
        changed_high = (fuse(xh2, xl) - base).abs().sum(dim=1)[0] > 1e-6
    # A shallow (bottom-up, pointwise) change reaches only the post conv's 3x3 neighbourhood ...
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[1:4, 2:5] = True
    assert changed_low[region].any() and not changed_low[~region].any()
    # ... a deep change moves the global top-down weights, hence pixels far away too (all but those
    # the final ReLU zeroes either way).
    assert changed_high[~region].float().mean() > 0.5
    assert fuse.topdown(xh).shape == (1, 8, 1, 1)
    assert fuse.bottomup(xl).shape == (1, 8, 16, 16)


def test_pooled_batchnorm_uses_running_stats_for_a_single_value():
    bn = PooledBatchNorm2d(2).train()
    bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0]))
    x = torch.tensor([3.0, 0.0]).view(1, 2, 1, 1)
    out = bn(x)
    # (x - mean) / sqrt(var + eps) with the running statistics, which stay unchanged.
    torch.testing.assert_close(out.view(2), torch.tensor([1.0, 2.0]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_mean, torch.tensor([1.0, -2.0]))
    # A real batch uses batch statistics and updates the running mean (momentum 0.1).
    xb = torch.tensor([[1.0, 0.0], [3.0, 2.0]]).view(2, 2, 1, 1)
    outb = bn(xb)
    torch.testing.assert_close(outb.view(2, 2), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * -2 + 0.1 * 1]))


def test_acm_trains_with_a_batch_of_one():
    torch.manual_seed(0)
    model = ACM(channels=(4, 8, 8, 16), blocks=(1, 1, 1)).train()
    out = model(torch.randn(1, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (1, 1, 32, 32)
    assert model.fuse1.topdown[1].weight.grad is not None


# ---------------------------------------------------------------------------------------------
# Whole models
# ---------------------------------------------------------------------------------------------


def test_default_sizes_and_parameter_counts():
    # Measured counts, documented in the module docstrings (3 input channels).
    assert _count(create_model("acm")) == 518_293
    assert _count(create_model("alcnet")) == 372_573
    gan = create_model("mdvsfa")
    assert (_count(gan.g1), _count(gan.g2), _count(gan.disc)) == (3_139_649, 630_977, 151_708)
    assert _count(create_model("mdvsfa", in_channels=1)) == 3_919_598
    acm = create_model("acm")
    assert acm.channels == (8, 16, 32, 64) and acm.blocks == (4, 4, 4)
    alc = create_model("alcnet")
    assert alc.shifts == (13,) and alc.blocks == (4, 4, 4)


@pytest.mark.parametrize(("cls", "bad"), [(ACM, 40), (ALCNet, 30)])
def test_input_size_must_be_divisible(cls, bad):
    model = cls(channels=(4, 8, 8, 16), blocks=(1, 1, 1)).eval()
    with pytest.raises(ValueError, match="divisible by"):
        model(torch.randn(1, 3, bad, bad))
    ok = model.size_divisor * 3
    assert model(torch.randn(1, 3, ok, 2 * ok)).shape == (1, 1, ok, 2 * ok)


@pytest.mark.parametrize(
    "kwargs",
    [{"channels": (8, 16, 32)}, {"blocks": (1, 1)}, {"blocks": (1, 0, 1)}, {"in_channels": 0}],
)
@pytest.mark.parametrize("name", ["acm", "alcnet"])
def test_bad_configuration_raises(name, kwargs):
    with pytest.raises(ValueError):
        create_model(name, **kwargs)


def test_mdvsfa_output_is_the_logit_of_the_generator_average():
    torch.manual_seed(0)
    model = MDvsFA(width=4).eval()
    x = torch.randn(2, 3, 20, 28)  # any size: full-resolution network
    with torch.no_grad():
        p1, p2 = model.generate(x)
        logits = model(x)
    assert p1.min() >= 0 and p1.max() <= 1 and p2.min() >= 0 and p2.max() <= 1
    assert logits.shape == (2, 1, 20, 28)
    prob = ((p1 + p2) / 2).clamp(1e-4, 1 - 1e-4)
    torch.testing.assert_close(torch.sigmoid(logits), prob, rtol=1e-4, atol=1e-6)
    # Thresholding logits at 0 is the paper's 0.5 on the averaged map.
    assert torch.equal(logits > 0, (p1 + p2) / 2 > 0.5)


def test_md_fa_losses_known_values():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    prob = torch.tensor([[[[0.5, 1.0], [0.0, 0.0]]]])
    md, fa = md_fa_losses(prob, target)
    assert md.item() == pytest.approx(0.25 / 4)  # the missed half of the target pixel
    assert fa.item() == pytest.approx(1.0 / 4)  # one full false alarm


# ---------------------------------------------------------------------------------------------
# MDvsFA training step
# ---------------------------------------------------------------------------------------------


def _cfg(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), **kw)


def test_mdvsfa_selects_its_own_step_and_refuses_other_optimizers(tmp_path):
    model = MDvsFA(width=4)
    step = get_train_step(model, _cfg(tmp_path, optimizer="adam", lr=1e-4))
    assert isinstance(step, MDvsFAStep) and isinstance(step, TrainStep)
    with pytest.raises(ValueError, match="Adam"):
        step.configure_optimizers(model, _cfg(tmp_path))  # default adagrad 0.05
    opt_d, opt_g1, opt_g2 = step.configure_optimizers(model, _cfg(tmp_path, optimizer="adam", lr=1e-4))
    assert opt_d.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert opt_g1.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert opt_g1.param_groups[0]["betas"] == (0.5, 0.999)
    ids = [{id(p) for p in o.param_groups[0]["params"]} for o in (opt_d, opt_g1, opt_g2)]
    assert ids[0] == {id(p) for p in model.disc.parameters()}
    assert ids[1] == {id(p) for p in model.g1.parameters()}
    assert ids[2] == {id(p) for p in model.g2.parameters()}


def test_mdvsfa_step_updates_all_three_networks(tmp_path):
    torch.manual_seed(0)
    model = MDvsFA(in_channels=1, width=4).train()
    cfg = _cfg(tmp_path, optimizer="adam", lr=1e-3)
    step = get_train_step(model, cfg)
    optimizers = step.configure_optimizers(model, cfg)
    image = torch.randn(2, 1, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 10:13, 20:23] = 1.0
    batch = {"image": image, "mask": mask}
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = [step.step(model, batch, optimizers) for _ in range(3)]
    assert set(losses[0]) == {"loss", "loss_d", "loss_g1", "loss_g2", "md", "fa"}
    for out in losses:
        for key, value in out.items():
            assert value.ndim == 0 and not value.requires_grad and torch.isfinite(value), key
    assert model.training and model.g1.training and model.g2.training and model.disc.training
    after = model.state_dict()
    for part in ("g1.", "g2.", "disc."):
        moved = [k for k in before if k.startswith(part) and k.endswith("weight") and not torch.equal(before[k], after[k])]
        assert moved, f"{part} parameters were not updated"
    # The 3-class cross-entropy starts near log(3) for an untrained discriminator.
    assert 0.5 < losses[0]["loss_d"].item() < 2.0


def _tiny_dataset(root, num: int = 6, size: int = 32):
    """Bright 3x3 squares on noise, in the standard layout (images/, masks/, 50_50/)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("images", "masks", "50_50"):
        (root / sub).mkdir(parents=True)
    ids = [f"t{i}" for i in range(num)]
    for name in ids:
        image = rng.normal(60, 5, (size, size))
        mask = np.zeros((size, size), np.uint8)
        cy, cx = rng.integers(4, size - 4, 2)
        image[cy - 1 : cy + 2, cx - 1 : cx + 2] += 120
        mask[cy - 1 : cy + 2, cx - 1 : cx + 2] = 255
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    (root / "50_50" / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (root / "50_50" / "test.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


def test_mdvsfa_trains_through_the_engine(tmp_path):
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.engine.train import train

    data = _tiny_dataset(tmp_path / "data")
    cfg = TrainConfig(
        data=str(data), out=str(tmp_path / "run"), model="mdvsfa", model_kwargs={"width": 4},
        optimizer="adam", lr=1e-3, epochs=1, batch_size=2, crop_size=32, base_size=32, seed=0,
        progress=False, log_every=1,
    )
    result = train(cfg)
    (epoch,) = result.history
    assert torch.isfinite(torch.tensor(epoch["loss"]))
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert last["model_name"] == "mdvsfa" and last["model_kwargs"]["width"] == 4
    assert len(last["optimizer"]) == 3  # discriminator, G1, G2
    model = model_from_checkpoint(last)
    assert isinstance(model, MDvsFA) and not model.training
