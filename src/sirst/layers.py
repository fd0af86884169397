"""Building blocks shared by the networks: CBAM attention, the Res-CBAM and VGG blocks (DNANet), the
ResNet basic block, stages and FCN head (ACM, ALCNet), init.

Module names inside the blocks (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``shortcut``, ``ca.fc1``,
``ca.fc2``, ``sa.conv1``) follow the public DNANet code so that its checkpoints map onto ours by
renaming only the outer containers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ATTENTION_MODES = ("csam", "none", "sum", "channel_only", "spatial_only")


def global_max(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C)`` maximum over the spatial positions.

    ``amax`` over (H, W) of a channels_last tensor with few channels is pathologically slow on CPU
    (2.3 ms for 16 x 256 x 256 against 0.3 ms for the mean); adaptive max pooling is not.
    """
    if torch.jit.is_tracing():  # ONNX export: one graph for every layout and width
        return x.amax(dim=(2, 3))
    if x.shape[1] < 32 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.adaptive_max_pool2d(x, 1).flatten(1)
    return x.amax(dim=(2, 3))


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``.

    The MLP is shared: two bias-free 1x1 convolutions ``C -> C/r -> C`` with a ReLU between.
    For ``C < r`` the hidden width is 1 (the public code would build a zero-width layer there;
    only DNANet channel sizes "one" and "two" are affected).

    Input ``(N, C, H, W)``; output the weights ``(N, C, 1, 1)`` in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        # The shared MLP runs once on the stacked [avg; max] vectors as two matrix products: the
        # same arithmetic as the 1x1 convolutions on 1x1 maps, without their per-call overhead.
        pooled = torch.cat([x.mean(dim=(2, 3)), global_max(x)], dim=0)  # (2N, C)
        hidden = self.relu1(F.linear(pooled, self.fc1.weight.flatten(1)))
        both = F.linear(hidden, self.fc2.weight.flatten(1))
        return torch.sigmoid(both[:n] + both[n:]).view(n, c, 1, 1)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7x7 convolution over ``[mean, max]`` across channels, sigmoid.

    Input ``(N, C, H, W)``; output the weights ``(N, 1, H, W)`` in (0, 1).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(pooled))


class ResCBAMBlock(nn.Module):
    """DNANet's residual block with channel and spatial attention (CSAM).

    ``conv3x3+BN+ReLU -> conv3x3+BN -> x CA -> x SA -> + shortcut -> ReLU``; the shortcut is a
    1x1 conv + BN when the widths differ. ``attention`` selects the ablation variants of the
    paper's Table IV: ``"csam"`` (channel then spatial, the default), ``"none"``,
    ``"channel_only"``, ``"spatial_only"`` and ``"sum"`` (both applied in parallel to the same
    features and the two results added).

    Input ``(N, in_ch, H, W)``; output ``(N, out_ch, H, W)``.
    """

    # Convolutions whose output goes straight into a BatchNorm (foldable, see sirst.detect.optimize).
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_ch: int, out_ch: int, attention: str = "csam") -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"unknown attention {attention!r}; valid: {', '.join(ATTENTION_MODES)}")
        self.attention = attention
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch)) if in_ch != out_ch else None
        )
        self.ca = ChannelAttention(out_ch) if attention in ("csam", "sum", "channel_only") else None
        self.sa = SpatialAttention() if attention in ("csam", "sum", "spatial_only") else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.attention == "sum":
            out = self.ca(out) * out + self.sa(out) * out
        else:
            if self.ca is not None:
                out = self.ca(out) * out
            if self.sa is not None:
                # residual + sa * out in one pass
                return self.relu(torch.addcmul(residual, self.sa(out), out))
        return self.relu(out + residual)


class VGGBlock(nn.Module):
    """Plain block of DNANet's VGG-10 backbone: ``(conv3x3 + BN + ReLU) x 2``, no attention, no shortcut.

    Input ``(N, in_ch, H, W)``; output ``(N, out_ch, H, W)``.
    """

    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_ch: int, out_ch: int, attention: str = "none") -> None:
        super().__init__()
        if attention != "none":
            raise ValueError("the VGG block has no attention; use attention='none' with backbone vgg10")
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


def xavier_init_(module: nn.Module) -> None:
    """Xavier-normal init of every convolution weight in ``module`` (as the paper's code does).

    Biases and BatchNorm keep PyTorch's defaults, like the public code.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_normal_(m.weight)


# ----------------------------------------------------------------------------------------------
# ACM and ALCNet


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``conv (no bias) + BN + ReLU`` with 'same' padding for odd ``kernel``."""
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: ``conv3x3/s + BN + ReLU, conv3x3 + BN, + shortcut, ReLU``.

    The shortcut is a 1x1 conv (stride ``s``) + BN when the shape changes.
    ``(N, cin, H, W) -> (N, cout, H/s, W/s)``.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def make_stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` basic blocks, the first one changing width/stride."""
    if blocks < 1:
        raise ValueError(f"a stage needs at least one block, got {blocks}")
    return nn.Sequential(BasicBlock(cin, cout, stride), *[BasicBlock(cout, cout) for _ in range(blocks - 1)])


class FCNHead(nn.Module):
    """``conv3x3 C->C/4 + BN + ReLU, dropout 0.1, conv1x1 -> out``: ``(N,C,H,W) -> (N,out,H,W)``."""

    def __init__(self, channels: int, out_channels: int = 1) -> None:
        super().__init__()
        inter = max(1, channels // 4)
        self.block = nn.Sequential(conv_bn_relu(channels, inter), nn.Dropout(0.1), nn.Conv2d(inter, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
