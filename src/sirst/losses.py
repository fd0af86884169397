"""Training losses of DNANet (Li et al., TIP 2022).

Soft-IoU loss, as in the paper and its public code: the logits go through a sigmoid, intersection
and union are summed over the *whole batch* (not per image) and

    loss = 1 - (I + smooth) / (P + T - I + smooth),    smooth = 1,

with ``I = sum(p * t)``, ``P = sum(p)``, ``T = sum(t)``. With deep supervision the loss of every head
is computed the same way against the full-resolution mask and the head losses are averaged.

Beyond the paper, :class:`SoftIoUBCELoss` adds a weighted binary cross-entropy. Soft-IoU reaches the
logits through the sigmoid, so its gradient on a confident false alarm (probability ~1, where
``p (1 - p)`` ~ 0) vanishes: a network trained on Soft-IoU alone keeps the clutter it once learned to
fire on. The cross-entropy's logit gradient ``p - t`` does not vanish there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Batch Soft-IoU loss.

    Args:
        logits: ``(N, 1, H, W)`` raw network outputs (any shape equal to ``target``'s).
        target: ``(N, 1, H, W)`` masks in ``{0, 1}`` (soft targets in ``[0, 1]`` also work).
        smooth: added to numerator and denominator (1 in the paper).

    Returns:
        A scalar tensor in ``[0, 1)``; computed in float32 even under autocast, because the sums
        over a whole batch of 256x256 maps lose precision in bfloat16.
    """
    if logits.shape != target.shape:
        raise ValueError(f"soft_iou_loss: logits shape {tuple(logits.shape)} != target shape {tuple(target.shape)}")
    p = torch.sigmoid(logits.float())
    t = target.float()
    inter = (p * t).sum()
    union = p.sum() + t.sum() - inter
    return 1.0 - (inter + smooth) / (union + smooth)


class SoftIoULoss(nn.Module):
    """Module form of :func:`soft_iou_loss`: ``forward(logits (N,1,H,W), target (N,1,H,W)) -> scalar``."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_iou_loss(logits, target, self.smooth)


class SoftIoUBCELoss(nn.Module):
    """Soft-IoU plus ``bce_weight`` times the pixel-mean binary cross-entropy on the logits.

    ``forward(logits (N, 1, H, W), target (N, 1, H, W)) -> scalar``; both terms in float32.
    """

    def __init__(self, bce_weight: float, smooth: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= bce_weight < float("inf"):
            raise ValueError(f"bce_weight must be a finite number >= 0, got {bce_weight}")
        self.bce_weight = float(bce_weight)
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float())
        return soft_iou_loss(logits, target, self.smooth) + self.bce_weight * bce


class DeepSupervisionLoss(nn.Module):
    """Average of a base loss over the heads of a deep-supervision output.

    ``forward(outputs, target)`` takes either one logits tensor ``(N, 1, H, W)`` or a list of them
    (one per head, all at the mask's resolution, the fused output last, as DNANet returns in
    ``train()`` mode) and returns the mean of ``base(head, target)`` over the heads.
    """

    def __init__(self, base: nn.Module | None = None) -> None:
        super().__init__()
        self.base = base if base is not None else SoftIoULoss()

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.base(outputs, target)
        heads = list(outputs)
        if not heads:
            raise ValueError("DeepSupervisionLoss: the model returned an empty list of outputs")
        return torch.stack([self.base(h, target) for h in heads]).mean()
