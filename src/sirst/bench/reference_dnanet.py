"""The benchmark's baseline: DNANet written plainly, the way the public reference code runs it.

Used by ``sirst bench`` only, to measure the speed-up of sirst's inference path over the reference
implementation in the same run. It is written here from the paper's architecture and the public
code's module names (so it loads ``sirst.models.dnanet.to_reference_state_dict`` weights directly),
and deliberately keeps the reference code's execution style: eager PyTorch, BatchNorm unfused,
NCHW tensors, ``nn.Upsample`` modules, adaptive pooling, ``torch.max`` with indices, an in-place
residual add, all four deep-supervision heads computed at test time, and ``torch.no_grad`` (not
inference mode) around the forward. ResNet-style Res-CBAM blocks only (the paper's default).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    def __init__(self, in_planes: int, ratio: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Conv2d(in_planes, in_planes // ratio, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Conv2d(in_planes // ratio, in_planes, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg_out = self.fc2(self.relu1(self.fc1(self.avg_pool(x))))
        max_out = self.fc2(self.relu1(self.fc1(self.max_pool(x))))
        return self.sigmoid(avg_out + max_out)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv1(torch.cat([avg_out, max_out], dim=1)))


class ResCBAMBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = None
        self.ca = ChannelAttention(out_channels)
        self.sa = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        if self.shortcut is not None:
            residual = self.shortcut(x)
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.ca(out) * out
        out = self.sa(out) * out
        out += residual
        return self.relu(out)


def _layer(cin: int, cout: int, blocks: int = 1) -> nn.Sequential:
    return nn.Sequential(ResCBAMBlock(cin, cout), *[ResCBAMBlock(cout, cout) for _ in range(blocks - 1)])


class ReferenceDNANet(nn.Module):
    """DNANet with deep supervision, in the reference code's layout.

    Forward: ``(N, C, H, W)``, H and W multiples of 16 -> list of four logit maps ``(N, 1, H, W)``
    (``final1..final3`` on ``x0_1..x0_3``, ``final4`` on the fused map), in train and eval mode alike.
    """

    def __init__(self, in_channels: int = 3, num_blocks=(2, 2, 2, 2), nb_filter=(16, 32, 64, 128, 256)) -> None:
        super().__init__()
        f, b = nb_filter, num_blocks
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.down = nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=True)
        self.up_4 = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=True)
        self.up_8 = nn.Upsample(scale_factor=8, mode="bilinear", align_corners=True)
        self.up_16 = nn.Upsample(scale_factor=16, mode="bilinear", align_corners=True)

        self.conv0_0 = _layer(in_channels, f[0])
        self.conv1_0 = _layer(f[0], f[1], b[0])
        self.conv2_0 = _layer(f[1], f[2], b[1])
        self.conv3_0 = _layer(f[2], f[3], b[2])
        self.conv4_0 = _layer(f[3], f[4], b[3])

        self.conv0_1 = _layer(f[0] + f[1], f[0])
        self.conv1_1 = _layer(f[1] + f[2] + f[0], f[1], b[0])
        self.conv2_1 = _layer(f[2] + f[3] + f[1], f[2], b[1])
        self.conv3_1 = _layer(f[3] + f[4] + f[2], f[3], b[2])

        self.conv0_2 = _layer(f[0] * 2 + f[1], f[0])
        self.conv1_2 = _layer(f[1] * 2 + f[2] + f[0], f[1], b[0])
        self.conv2_2 = _layer(f[2] * 2 + f[3] + f[1], f[2], b[1])

        self.conv0_3 = _layer(f[0] * 3 + f[1], f[0])
        self.conv1_3 = _layer(f[1] * 3 + f[2] + f[0], f[1], b[0])

        self.conv0_4 = _layer(f[0] * 4 + f[1], f[0])

        self.conv0_4_final = _layer(f[0] * 5, f[0])
        self.conv0_4_1x1 = nn.Conv2d(f[4], f[0], 1)
        self.conv0_3_1x1 = nn.Conv2d(f[3], f[0], 1)
        self.conv0_2_1x1 = nn.Conv2d(f[2], f[0], 1)
        self.conv0_1_1x1 = nn.Conv2d(f[1], f[0], 1)

        self.final1 = nn.Conv2d(f[0], 1, 1)
        self.final2 = nn.Conv2d(f[0], 1, 1)
        self.final3 = nn.Conv2d(f[0], 1, 1)
        self.final4 = nn.Conv2d(f[0], 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0_0 = self.conv0_0(x)
        x1_0 = self.conv1_0(self.pool(x0_0))
        x0_1 = self.conv0_1(torch.cat([x0_0, self.up(x1_0)], 1))

        x2_0 = self.conv2_0(self.pool(x1_0))
        x1_1 = self.conv1_1(torch.cat([x1_0, self.up(x2_0), self.down(x0_1)], 1))
        x0_2 = self.conv0_2(torch.cat([x0_0, x0_1, self.up(x1_1)], 1))

        x3_0 = self.conv3_0(self.pool(x2_0))
        x2_1 = self.conv2_1(torch.cat([x2_0, self.up(x3_0), self.down(x1_1)], 1))
        x1_2 = self.conv1_2(torch.cat([x1_0, x1_1, self.up(x2_1), self.down(x0_2)], 1))
        x0_3 = self.conv0_3(torch.cat([x0_0, x0_1, x0_2, self.up(x1_2)], 1))

        x4_0 = self.conv4_0(self.pool(x3_0))
        x3_1 = self.conv3_1(torch.cat([x3_0, self.up(x4_0), self.down(x2_1)], 1))
        x2_2 = self.conv2_2(torch.cat([x2_0, x2_1, self.up(x3_1), self.down(x1_2)], 1))
        x1_3 = self.conv1_3(torch.cat([x1_0, x1_1, x1_2, self.up(x2_2), self.down(x0_3)], 1))
        x0_4 = self.conv0_4(torch.cat([x0_0, x0_1, x0_2, x0_3, self.up(x1_3)], 1))

        fused = self.conv0_4_final(torch.cat([
            self.up_16(self.conv0_4_1x1(x4_0)), self.up_8(self.conv0_3_1x1(x3_1)),
            self.up_4(self.conv0_2_1x1(x2_2)), self.up(self.conv0_1_1x1(x1_3)), x0_4,
        ], 1))
        return [self.final1(x0_1), self.final2(x0_2), self.final3(x0_3), self.final4(fused)]


def reference_from(model: nn.Module) -> ReferenceDNANet:
    """A :class:`ReferenceDNANet` (eval mode) holding the weights of a sirst DNANet.

    ``model`` must be a ``sirst.models.dnanet.DNANet`` with the full DNIM, CSAM attention, a
    Res-CBAM backbone and deep supervision (the paper's configuration); raises ``ValueError`` otherwise.
    """
    from sirst.models.dnanet import BACKBONES, DNANet, to_reference_state_dict

    if not isinstance(model, DNANet) or model.dnim != "full" or not model.deep_supervision:
        raise ValueError("the reference baseline exists for DNANet (full DNIM, deep supervision) only")
    blocks = [m for m in model.modules() if hasattr(m, "attention")]
    if not blocks or any(getattr(b, "attention", None) != "csam" for b in blocks):
        raise ValueError("the reference baseline needs DNANet's Res-CBAM blocks with CSAM attention")
    num_blocks = next(n for name, n in BACKBONES.items()
                      if name != "vgg10" and tuple(len(model.nodes[f"{i}_0"]) for i in range(1, 5)) == n)
    in_channels = model.nodes["0_0"][0].conv1.in_channels
    ref = ReferenceDNANet(in_channels, num_blocks, model.widths)
    ref.load_state_dict(to_reference_state_dict(model))
    return ref.eval()
