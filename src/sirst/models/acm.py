"""ACM: Asymmetric Contextual Modulation (Dai et al., WACV 2021), the U-Net variant.

A small U-shaped network of ResNet basic blocks. At each decoder level the deep feature (after a
transposed convolution) and the encoder skip are fused by the *asymmetric bi-directional* module
(AsymBi): the deep feature yields a *global* channel attention (top-down, global average pooling
then a bottleneck MLP) that gates the shallow feature, and the shallow feature yields a *local*,
point-wise channel attention (bottleneck of 1x1 convolutions, no pooling) that gates the deep
feature, so that the small targets' fine detail in the shallow map is kept.

Layout (the paper's defaults: channels ``[8, 16, 32, 64]``, ``[4, 4, 4]`` blocks per stage)::

    stem: BN(in, no affine), conv3x3/2 -> c0, conv3x3 c0, conv3x3 -> 2*c0, max-pool/2       (1/4 resolution)
    layer1: blocks x c1 (1/4) -> layer2: x c2 (1/8) -> layer3: x c3 (1/16)
    deconv(c3 -> c2), AsymBi with layer2, blocks x c2; deconv(c2 -> c1), AsymBi with layer1, blocks
    head: conv3x3 c1 -> c1/4, dropout 0.1, conv1x1 -> 1; bilinear up-sampling x4 to the input size.

Parameters (3 input channels, defaults): 518,293 measured; the DNANet paper's comparison table
lists 0.520M for ACM (recalled; the search tools could not retrieve the table to verify it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from sirst.layers import FCNHead, conv_bn_relu, make_stage
from sirst.models.base import SirstModel
from sirst.models.registry import register_model


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm for globally pooled ``(N, C, 1, 1)`` maps that also trains with a batch of one.

    With one value per channel, batch statistics are undefined (torch raises); the layer then
    normalises with its running statistics, as in eval mode, and leaves them unchanged. With ``N > 1``
    it is a plain ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _bottleneck_gate(channels: int, reduction: int, pooled: bool) -> nn.Sequential:
    """``[avgpool] conv1x1 C->C/r + BN + ReLU, conv1x1 C/r->C + BN, sigmoid``: weights in (0, 1).

    ``(N, C, H, W) -> (N, C, 1, 1)`` when ``pooled`` (global attention), else ``(N, C, H, W)``.
    """
    hidden = max(1, channels // reduction)
    norm = PooledBatchNorm2d if pooled else nn.BatchNorm2d
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1)] if pooled else []
    layers += [
        nn.Conv2d(channels, hidden, 1, bias=False),
        norm(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1, bias=False),
        norm(channels),
        nn.Sigmoid(),
    ]
    return nn.Sequential(*layers)


class AsymBiFusion(nn.Module):
    """Asymmetric bi-directional contextual modulation (ACM's AsymBi fusion).

    ``forward(high (N,C,H,W), low (N,C,H,W)) -> (N,C,H,W)``:
    ``post(2 * low * G(high) + 2 * high * L(low))`` with ``G`` the global (pooled) channel attention
    and ``L`` the point-wise (local) channel attention; the factor 2 keeps the scale of a plain sum
    when the gates sit at 0.5. ``post`` is conv3x3 (with bias, as the reference) + BN + ReLU.

    The global branch normalises ``(N, C/r, 1, 1)`` maps with :class:`PooledBatchNorm2d`, so that
    training also works with one image per batch (where the reference code fails).
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.topdown = _bottleneck_gate(channels, reduction, pooled=True)
        self.bottomup = _bottleneck_gate(channels, reduction, pooled=False)
        self.post = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return self.post(2 * low * self.topdown(high) + 2 * high * self.bottomup(low))


@register_model("acm")
class ACM(SirstModel):
    """ACM U-Net with AsymBi fusion (Dai et al., WACV 2021); its defaults are the paper's and registered as ``acm``.

    Args:
        in_channels: input channels (3 = grayscale copied, or 1).
        channels: four widths ``[c0, c1, c2, c3]``; the paper's ``[8, 16, 32, 64]``.
        blocks: basic blocks per stage ``[layer1/uplayer1, layer2/uplayer2, layer3]``; ``[4, 4, 4]``.
        reduction: bottleneck ratio of the AsymBi gates (4).

    Forward ``(N, C, H, W)``, H and W multiples of 16 -> logits ``(N, 1, H, W)`` in both modes.
    """

    size_divisor = 16

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (8, 16, 32, 64),
        blocks: Sequence[int] = (4, 4, 4),
        reduction: int = 4,
    ) -> None:
        super().__init__()
        c = tuple(int(v) for v in channels)
        n = tuple(int(v) for v in blocks)
        if len(c) != 4 or min(c) < 1:
            raise ValueError(f"channels must be four positive widths, got {c}")
        if len(n) != 3 or min(n) < 1:
            raise ValueError(f"blocks must be three positive counts, got {n}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.channels, self.blocks = c, n
        self.stem = nn.Sequential(
            # The reference normalises the raw input once more, without learnable scale/shift.
            nn.BatchNorm2d(in_channels, affine=False),
            conv_bn_relu(in_channels, c[0], stride=2),
            conv_bn_relu(c[0], c[0]),
            conv_bn_relu(c[0], 2 * c[0]),
            nn.MaxPool2d(3, 2, 1),
        )
        self.layer1 = make_stage(2 * c[0], c[1], n[0], 1)
        self.layer2 = make_stage(c[1], c[2], n[1], 2)
        self.layer3 = make_stage(c[2], c[3], n[2], 2)
        self.deconv2 = nn.ConvTranspose2d(c[3], c[2], 4, 2, 1)
        self.fuse2 = AsymBiFusion(c[2], reduction)
        self.uplayer2 = make_stage(c[2], c[2], n[1], 1)
        self.deconv1 = nn.ConvTranspose2d(c[2], c[1], 4, 2, 1)
        self.fuse1 = AsymBiFusion(c[1], reduction)
        self.uplayer1 = make_stage(c[1], c[1], n[0], 1)
        self.head = FCNHead(c[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        c1 = self.layer1(self.stem(x))  # 1/4
        c2 = self.layer2(c1)  # 1/8
        c3 = self.layer3(c2)  # 1/16
        up2 = self.uplayer2(self.fuse2(self.deconv2(c3), c2))
        up1 = self.uplayer1(self.fuse1(self.deconv1(up2), c1))
        return F.interpolate(self.head(up1), size=x.shape[-2:], mode="bilinear", align_corners=False)
