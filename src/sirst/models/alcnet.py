"""ALCNet: attentional local contrast network (Dai et al., "Attentional Local Contrast Networks for
Infrared Small Target Detection", IEEE TGRS 2021; ``MPCMResNetFPN`` in the authors' MXNet code).

Layout (input ``H x W``; defaults ``channels=(8, 16, 32, 64)``, ``blocks=(4, 4, 4)``, ``shifts=(13,)``,
the configuration of the authors' released ``BottomUpLocal_r_1_b_4`` weights):

* stem: a non-affine BatchNorm on the input and ``conv3x3 + BN + ReLU`` to ``c1`` (no down-sampling);
* backbone: three stages of CIFAR-style ResNet basic blocks (a ResNet-20-like network with 4 blocks per
  stage), widths ``c1, c2, c3``, strides 1, 2, 2 (``H, H/2, H/4``);
* dilated local contrast measure (DLCM) on every stage output (:func:`local_contrast`);
* the contrast maps of stages 3 and 2 are projected to ``c1`` (``conv1x1 + BN + ReLU``), then fused
  top-down with bottom-up attentional modulation (:class:`BottomUpLocalFusion`): stage 3 into 2, the
  result into 1;
* FCN head and bilinear resizing to ``H x W``.

Parameters (3 input channels, defaults): 372,573 measured here. The TGRS paper gives no count; the
DNANet paper's comparison table lists 0.427M for ALCNet (recalled, the search tools could not retrieve
the table to verify it; their PyTorch re-implementation may differ in the fusion details).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from sirst.layers import FCNHead, make_stage
from sirst.models.base import SirstModel
from sirst.models.registry import register_model

# Opposite neighbour pairs (dy, dx) at distance `shift`: the four directions through the centre.
_DIRECTIONS: tuple[tuple[int, int], ...] = ((1, 1), (1, 0), (1, -1), (0, -1))


def local_contrast(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Dilated local contrast measure by cyclic shifts (ALCNet's DLCM, a learnable-feature MPCM).

    For each of the four directions through a pixel, the product of its differences to the two
    opposite neighbours at distance ``shift``, ``(x[p + d] - x[p]) * (x[p - d] - x[p])``; the measure
    is the minimum over the directions. It is large only where the centre is brighter (or darker)
    than the surround in *every* direction (a blob), and 0 on flat areas and along lines.
    Neighbours wrap around the borders (``torch.roll``), as the reference's cyclic shift.

    Input ``(N, C, H, W)``; output ``(N, C, H, W)``.
    """
    if shift < 1:
        raise ValueError(f"local contrast shift must be >= 1, got {shift}")
    out = None
    for dy, dx in _DIRECTIONS:
        # roll by -d moves the value at p + d onto p.
        ahead = torch.roll(x, shifts=(-dy * shift, -dx * shift), dims=(2, 3))
        behind = torch.roll(x, shifts=(dy * shift, dx * shift), dims=(2, 3))
        contrast = (ahead - x) * (behind - x)
        out = contrast if out is None else torch.minimum(out, contrast)
    return out


def multiscale_local_contrast(x: torch.Tensor, shifts: Sequence[int]) -> torch.Tensor:
    """Maximum of :func:`local_contrast` over ``shifts`` (one shift: the single-scale DLCM).

    Input ``(N, C, H, W)``; output ``(N, C, H, W)``.
    """
    out = local_contrast(x, shifts[0])
    for s in shifts[1:]:
        out = torch.maximum(out, local_contrast(x, s))
    return out


class BottomUpLocalFusion(nn.Module):
    """Bottom-up attentional modulation: the shallow feature gates the deep one pointwise.

    ``BN(xh) * sigmoid(L(BN(xl))) + BN(xl)`` with ``L`` = ``conv1x1 (C -> C/r) + BN + ReLU +
    conv1x1 (-> C) + BN``. Inputs ``xh`` (deep, up-sampled) and ``xl`` (shallow), both
    ``(N, C, H, W)``; output ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, reduction: int = 1) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.bn_high = nn.BatchNorm2d(channels)
        self.bn_low = nn.BatchNorm2d(channels)
        self.attention = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.BatchNorm2d(channels),
            nn.Sigmoid(),
        )

    def forward(self, xh: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        xl = self.bn_low(xl)
        return self.bn_high(xh) * self.attention(xl) + xl


@register_model("alcnet")
class ALCNet(SirstModel):
    """Attentional local contrast network (see the module docstring for the layout); its defaults are those
    of the authors' released model (widths (8, 16, 32, 64), 4 blocks, DLCM shift 13), registered as ``alcnet``.

    Args:
        in_channels: input channels (3 = grayscale copied, as the rest of sirst; 1 works).
        channels: four widths ``(c0, c1, c2, c3)``; ``c0`` is unused apart from naming symmetry
            with ACM (the reference stem outputs ``2 * c0 = c1``).
        blocks: basic blocks per backbone stage.
        shifts: DLCM distances; several give the multi-scale maximum.
        reduction: bottleneck ratio of the fusion attention (1 in the released weights).

    Forward: ``(N, C, H, W)`` with H, W multiples of 4 -> logits ``(N, 1, H, W)`` in both modes.
    """

    size_divisor = 4

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (8, 16, 32, 64),
        blocks: Sequence[int] = (4, 4, 4),
        shifts: Sequence[int] = (13,),
        reduction: int = 1,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        blocks = tuple(int(b) for b in blocks)
        shifts = tuple(int(s) for s in shifts)
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels must be four positive widths, got {channels}")
        if len(blocks) != 3 or min(blocks) < 1:
            raise ValueError(f"blocks must be three positive counts, got {blocks}")
        if not shifts or min(shifts) < 1:
            raise ValueError(f"shifts must be one or more positive distances, got {shifts}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        _, c1, c2, c3 = channels
        self.channels, self.blocks, self.shifts = channels, blocks, shifts
        self.stem = nn.Sequential(
            nn.BatchNorm2d(in_channels, affine=False),
            nn.Conv2d(in_channels, c1, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
        )
        self.layer1 = make_stage(c1, c1, blocks[0], 1)
        self.layer2 = make_stage(c1, c2, blocks[1], 2)
        self.layer3 = make_stage(c2, c3, blocks[2], 2)

        def project(cin: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, c1, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True))

        self.proj3 = project(c3)
        self.proj2 = project(c2)
        self.fuse2 = BottomUpLocalFusion(c1, reduction)
        self.fuse1 = BottomUpLocalFusion(c1, reduction)
        self.head = FCNHead(c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        size = x.shape[-2:]
        c1 = self.layer1(self.stem(x))  # H
        c2 = self.layer2(c1)  # H/2
        c3 = self.layer3(c2)  # H/4
        p3 = self.proj3(multiscale_local_contrast(c3, self.shifts))
        p2 = self.proj2(multiscale_local_contrast(c2, self.shifts))
        f2 = self.fuse2(F.interpolate(p3, size=c2.shape[-2:], mode="bilinear", align_corners=False), p2)
        p1 = multiscale_local_contrast(c1, self.shifts)
        f1 = self.fuse1(F.interpolate(f2, size=c1.shape[-2:], mode="bilinear", align_corners=False), p1)
        out = self.head(f1)
        if out.shape[-2:] != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out
