"""Soft-IoU and deep-supervision losses: known answers."""

import math

import pytest
import torch

from sirst.losses import DeepSupervisionLoss, SoftIoUBCELoss, SoftIoULoss, soft_iou_loss


def test_perfect_prediction_is_near_zero():
    target = torch.zeros(2, 1, 64, 64)
    target[0, 0, 10:13, 20:23] = 1
    target[1, 0, 40:42, 5:9] = 1
    logits = torch.where(target > 0, 30.0, -30.0)
    loss = soft_iou_loss(logits, target)
    assert 0.0 <= loss.item() < 1e-6


def test_hand_computed_small_case():
    # p = sigmoid(0) = 0.5 everywhere: P = 2, T = 1, I = 0.5, U = 2.5 -> 1 - 1.5/3.5 = 4/7.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert soft_iou_loss(logits, target).item() == pytest.approx(4 / 7, abs=1e-7)
    assert SoftIoULoss()(logits, target).item() == pytest.approx(4 / 7, abs=1e-7)


def test_sums_over_whole_batch_not_per_image():
    # Image 1: P=2, T=1, I=0.5. Image 2 (no target): P=2, T=0, I=0.
    # Batch: I=0.5, P=4, T=1, U=4.5 -> 1 - 1.5/5.5 = 8/11, not the mean of 4/7 and 2/3.
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    target[0, 0, 0, 0] = 1
    loss = soft_iou_loss(logits, target).item()
    assert loss == pytest.approx(8 / 11, abs=1e-7)
    assert loss != pytest.approx((4 / 7 + 2 / 3) / 2, abs=1e-3)


def test_smooth_parameter():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # smooth=0: 1 - 0.5/2.5 = 0.8
    assert soft_iou_loss(logits, target, smooth=0.0).item() == pytest.approx(0.8, abs=1e-7)


def test_deep_supervision_averages_heads():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    a = torch.zeros(1, 1, 2, 2)  # loss 4/7
    b = torch.full((1, 1, 2, 2), math.log(3.0))  # p = 0.75: P=3, I=0.75, U=3.25 -> 1 - 1.75/4.25 = 10/17
    crit = DeepSupervisionLoss()
    assert crit([a, b], target).item() == pytest.approx((4 / 7 + 10 / 17) / 2, abs=1e-6)
    # A single tensor is a single head.
    assert crit(a, target).item() == pytest.approx(4 / 7, abs=1e-7)


def test_gradient_and_errors():
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 1] = 1
    soft_iou_loss(logits, target).backward()
    g = logits.grad[0, 0]
    # Raising the target pixel's logit lowers the loss; raising a background logit raises it.
    assert g[1, 1] < 0 and g[0, 0] > 0
    with pytest.raises(ValueError, match="shape"):
        soft_iou_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="empty"):
        DeepSupervisionLoss()([], target)


def test_bf16_logits_computed_in_float32():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    loss = soft_iou_loss(torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16), target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(4 / 7, abs=1e-7)


def test_soft_iou_bce_known_value():
    # Logits 0 everywhere (p = 0.5), one target pixel of four: Soft-IoU = 1 - (0.5 + 1) / (2 + 1 - 0.5 + 1),
    # cross-entropy = ln 2 per pixel.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    expected = 1 - 1.5 / 3.5 + 2.0 * math.log(2)
    assert SoftIoUBCELoss(2.0)(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert SoftIoUBCELoss(0.0)(logits, target).item() == pytest.approx(SoftIoULoss()(logits, target).item())
    with pytest.raises(ValueError, match="bce_weight"):
        SoftIoUBCELoss(-1.0)


def test_bce_term_pushes_down_a_confident_false_alarm():
    # A saturated false alarm next to a well-found target: Soft-IoU's gradient on it vanishes through the
    # sigmoid; the cross-entropy term's does not.
    logits = torch.tensor([[[[12.0, 12.0], [-12.0, -12.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    SoftIoULoss()(logits, target).backward()
    assert abs(logits.grad[0, 0, 0, 1].item()) < 1e-4
    logits.grad = None
    SoftIoUBCELoss(1.0)(logits, target).backward()
    assert logits.grad[0, 0, 0, 1].item() > 0.2  # (p - t) / 4 pixels ~ 0.25: a descent step lowers it


def test_train_step_uses_the_configured_loss(tmp_path):
    from sirst.engine.config import TrainConfig
    from sirst.engine.steps import SegmentationStep

    paper = SegmentationStep(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r")))
    assert type(paper.criterion.base) is SoftIoULoss
    mixed = SegmentationStep(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), bce_weight=3.0))
    assert isinstance(mixed.criterion.base, SoftIoUBCELoss) and mixed.criterion.base.bce_weight == 3.0
    with pytest.raises(ValueError, match="--bce-weight must be a finite number >= 0"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "r"), bce_weight=-0.5).validate()
