"""DNANet: Dense Nested Attention Network (Li et al., IEEE TIP 2022).

A nested U-shape whose every node ``x{i}_{j}`` (level ``i``, column ``j``) fuses the dense
same-level features, the up-sampled deeper node and the down-sampled shallower node (DNIM), with
Res-CBAM blocks (CSAM) in every node, and a feature-pyramid fusion head (FPFM) over
``x4_0, x3_1, x2_2, x1_3, x0_4``.

Parameter counts (deep supervision, 3 input channels, channel size "three"):
resnet18 4,696,888; resnet10 2,612,196; resnet34 8,792,702 (the paper: 4.70M for ResNet-18).

Ablations of the paper's Tables III/IV are options of this one class (``dnim``, ``attention``);
see :class:`DNANet`. Weights of the public reference code load with
:func:`load_reference_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from sirst.layers import ResCBAMBlock, VGGBlock, xavier_init_
from sirst.models.base import SirstModel
from sirst.models.registry import register_model

CHANNEL_SIZES: dict[str, tuple[int, ...]] = {
    "one": (4, 8, 16, 32, 64),
    "two": (8, 16, 32, 64, 128),
    "three": (16, 32, 64, 128, 256),
    "four": (32, 64, 128, 256, 512),
}
BACKBONES: dict[str, tuple[int, ...]] = {
    "vgg10": (1, 1, 1, 1),
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}
DNIM_MODES = ("full", "none", "top_to_bottom", "left_to_right")
DEPTH = 4  # levels below the full-resolution one

# Widths of the "w/o CSAM" variants, widened so that the model keeps the paper's size (its CSAM
# ablation gives 4.70-4.73M for every variant): (16,32,64,128,256) with attention gives
# 4,696,888 parameters; without attention these widths give 4,698,414 (resnet18, deep supervision,
# 3 input channels; 4,665,476 unwidened). The single-attention variants lose less and are widened
# less: channel attention only 4,710,846 (4,694,340 unwidened), spatial attention only 4,700,962
# (4,668,024 unwidened). The table in docs/models.md lists every variant.
WO_CSAM_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 258)
CHANNEL_ONLY_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 257)
SPATIAL_ONLY_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 258)


def _up(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)


def _node_inputs(i: int, j: int, dnim: str) -> list[tuple[str, tuple[int, int]]]:
    """Inputs of nested node (i, j), j >= 1, in the reference concatenation order.

    Each entry is ``(op, (level, column))`` with op one of ``"same"``, ``"up"``, ``"down"``.
    """
    if dnim == "left_to_right":  # only the immediate left neighbour on the same level
        same = [("same", (i, j - 1))]
    elif dnim == "none":  # plain U-Net: the encoder skip only
        same = [("same", (i, 0))]
    else:
        same = [("same", (i, k)) for k in range(j)]
    inputs = same + [("up", (i + 1, j - 1))]
    if i > 0 and dnim in ("full", "left_to_right"):
        inputs.append(("down", (i - 1, j)))
    return inputs


def _node_order(dnim: str) -> list[tuple[int, int]]:
    """Nodes in evaluation order (by anti-diagonal, deepest first), as the reference forward."""
    order = []
    for d in range(DEPTH + 1):
        for i in range(d, -1, -1):
            j = d - i
            if j == 0 or dnim != "none" or i + j == DEPTH:
                order.append((i, j))
    # A plain U-Net only has the decoder path i + j == DEPTH; it is computed after the encoder.
    if dnim == "none":
        order = [n for n in order if n[1] == 0] + [n for n in order if n[1] > 0]
    return order


class DNANet(SirstModel):
    """Dense Nested Attention Network.

    Args:
        in_channels: input channels (3 for grayscale copied to RGB as the paper, or 1).
        backbone: ``"resnet18"`` (default), ``"resnet10"``, ``"resnet34"`` (Res-CBAM blocks) or
            ``"vgg10"`` (plain conv blocks, no attention, no shortcut).
        channel_size: ``"one"``..``"four"``, widths ``[4..64]``..``[32..512]``; default ``"three"``
            = ``[16, 32, 64, 128, 256]``.
        widths: explicit five widths, overriding ``channel_size``.
        deep_supervision: heads on ``x0_1, x0_2, x0_3`` and the fused map (training returns all four).
        dnim: ``"full"`` (the paper), ``"none"`` (a plain U-shape: encoder and the single decoder path
            ``x3_1, x2_2, x1_3, x0_4``, each fed by its encoder skip and the up-sampled deeper node;
            it has no ``x0_1..x0_3`` so deep supervision keeps only the fused head),
            ``"top_to_bottom"`` (nested dense nodes without the shallow-to-deep "down" links, i.e.
            UNet++-like) or ``"left_to_right"`` (tri-directional links but only the immediate left
            neighbour instead of all same-level features).
        attention: ``"csam"`` (default), ``"none"``, ``"channel_only"``, ``"spatial_only"``, ``"sum"``.

    Forward: ``(N, C, H, W)`` with H, W multiples of 16 (see :func:`sirst.models.pad_to_multiple`). In eval mode
    the fused logits ``(N, 1, H, W)``; in training mode with deep supervision the list of head logits,
    fused last.
    """

    size_divisor = 16

    def __init__(
        self,
        in_channels: int = 3,
        backbone: str = "resnet18",
        channel_size: str = "three",
        widths: Sequence[int] | None = None,
        deep_supervision: bool = True,
        dnim: str = "full",
        attention: str = "csam",
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
        if widths is None:
            if channel_size not in CHANNEL_SIZES:
                raise ValueError(f"unknown channel_size {channel_size!r}; valid: {', '.join(CHANNEL_SIZES)}")
            widths = CHANNEL_SIZES[channel_size]
        widths = tuple(int(w) for w in widths)
        if len(widths) != DEPTH + 1:
            raise ValueError(f"widths must have {DEPTH + 1} entries, got {widths}")
        if dnim not in DNIM_MODES:
            raise ValueError(f"unknown dnim {dnim!r}; valid: {', '.join(DNIM_MODES)}")
        if backbone == "vgg10":
            block, attention = VGGBlock, "none"
        else:
            block = ResCBAMBlock
        self.widths = widths
        self.dnim = dnim
        self.deep_supervision = bool(deep_supervision)
        num_blocks = BACKBONES[backbone]

        def layer(cin: int, cout: int, n: int) -> nn.Sequential:
            return nn.Sequential(block(cin, cout, attention), *[block(cout, cout, attention) for _ in range(n - 1)])

        def blocks_at(level: int) -> int:
            return 1 if level == 0 else num_blocks[level - 1]

        self.order = _node_order(dnim)
        self.inputs = {n: _node_inputs(*n, dnim) for n in self.order if n[1] > 0}
        self.nodes = nn.ModuleDict()
        for i, j in self.order:
            if j == 0:
                cin = in_channels if i == 0 else widths[i - 1]
            else:
                cin = sum(widths[lvl] for _, (lvl, _) in self.inputs[(i, j)])
            self.nodes[f"{i}_{j}"] = layer(cin, widths[i], blocks_at(i))
        # FPFM: 1x1 projections of x4_0, x3_1, x2_2, x1_3 to widths[0], up-sampled and fused with x0_4.
        self.pyramid = [(DEPTH - k, k) for k in range(DEPTH)]
        self.lateral = nn.ModuleList(nn.Conv2d(widths[i], widths[0], 1) for i, _ in self.pyramid)
        self.fuse = layer(widths[0] * (DEPTH + 1), widths[0], 1)
        has_side_heads = self.deep_supervision and dnim != "none"
        self.head_sources = [(0, 1), (0, 2), (0, 3)] if has_side_heads else []
        self.heads = nn.ModuleList(nn.Conv2d(widths[0], 1, 1) for _ in range(len(self.head_sources) + 1))
        xavier_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        feats: dict[tuple[int, int], torch.Tensor] = {}
        for i, j in self.order:
            node = self.nodes[f"{i}_{j}"]
            if j == 0:
                feats[(i, j)] = node(x if i == 0 else F.max_pool2d(feats[(i - 1, 0)], 2))
                continue
            parts = []
            for op, src in self.inputs[(i, j)]:
                f = feats[src]
                parts.append(_up(f) if op == "up" else _down(f) if op == "down" else f)
            feats[(i, j)] = node(torch.cat(parts, dim=1))
        pyramid = [_up(conv(feats[src]), 2 ** src[0]) for conv, src in zip(self.lateral, self.pyramid)]
        fused = self.fuse(torch.cat([*pyramid, feats[(0, DEPTH)]], dim=1))
        main = self.heads[-1](fused)
        if not (self.training and self.deep_supervision):
            return main
        return [head(feats[src]) for head, src in zip(self.heads, self.head_sources)] + [main]


# ----------------------------------------------------------------------------------------------
# Weights of the public reference implementation
# ----------------------------------------------------------------------------------------------


def reference_key_map(model: DNANet) -> dict[str, str]:
    """Map each of our state_dict keys to the public DNANet code's key.

    Block internals share names; the containers are renamed: ``nodes.{i}_{j}`` <-> ``conv{i}_{j}``,
    ``fuse`` <-> ``conv0_4_final``, ``lateral.{0..3}`` <-> ``conv0_4_1x1``, ``conv0_3_1x1``,
    ``conv0_2_1x1``, ``conv0_1_1x1`` (from x4_0, x3_1, x2_2, x1_3), ``heads.{0..3}`` <->
    ``final1..final4`` with deep supervision, ``heads.0`` <-> ``final`` without.
    """
    lateral_names = [f"conv0_{DEPTH - k}_1x1" for k in range(DEPTH)]
    if len(model.heads) == 1:
        head_names = ["final"]
    else:
        head_names = [f"final{k + 1}" for k in range(len(model.heads))]
    mapping = {}
    for key in model.state_dict():
        container, _, rest = key.partition(".")
        if container == "nodes":
            node, _, tail = rest.partition(".")
            mapping[key] = f"conv{node}.{tail}"
        elif container == "fuse":
            mapping[key] = f"conv0_4_final.{rest}"
        elif container == "lateral":
            idx, _, tail = rest.partition(".")
            mapping[key] = f"{lateral_names[int(idx)]}.{tail}"
        elif container == "heads":
            idx, _, tail = rest.partition(".")
            mapping[key] = f"{head_names[int(idx)]}.{tail}"
        else:  # pragma: no cover - guards against a new top-level module without a mapping
            raise KeyError(f"no reference name for {key}")
    return mapping


def to_reference_state_dict(model: DNANet) -> dict[str, torch.Tensor]:
    """Our weights under the public code's names (the inverse of :func:`load_reference_state_dict`)."""
    mapping = reference_key_map(model)
    return {mapping[k]: v.clone() for k, v in model.state_dict().items()}


def load_reference_state_dict(model: DNANet, checkpoint: Mapping[str, object]) -> DNANet:
    """Load weights trained by the public DNANet code into ``model`` (in place; returns it).

    ``checkpoint`` is the public code's ``{'state_dict': ...}`` dict or a bare state_dict; a
    ``module.`` prefix (``nn.DataParallel``) is stripped. Raises ``ValueError`` listing missing and
    unexpected keys, or mismatched shapes (the model must be built with the same backbone, widths
    and deep-supervision setting as the checkpoint).
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    inverse = {ref: ours for ours, ref in reference_key_map(model).items()}
    missing = sorted(set(inverse) - set(state))
    unexpected = sorted(set(state) - set(inverse))
    if missing or unexpected:
        raise ValueError(
            "reference checkpoint does not fit this DNANet "
            f"(missing {len(missing)}: {missing[:8]}, unexpected {len(unexpected)}: {unexpected[:8]}); "
            "build the model with the checkpoint's backbone, channel size and deep_supervision"
        )
    ours = model.state_dict()
    converted = {}
    for ref_key, tensor in state.items():
        key = inverse[ref_key]
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise ValueError(f"reference key {ref_key}: shape {tuple(tensor.shape)} != {tuple(ours[key].shape)}")
        converted[key] = tensor
    model.load_state_dict(converted)
    return model


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def _variant(name: str, **defaults) -> None:
    def build(**kwargs) -> DNANet:
        merged = {**defaults, **kwargs}
        if "channel_size" in kwargs and "widths" not in kwargs:
            merged.pop("widths", None)  # an explicit channel size replaces the variant's widths
        return DNANet(**merged)

    build.__doc__ = f"DNANet variant {name!r}: defaults {defaults or 'of the paper'}."
    register_model(name)(build)


_variant("dnanet")
_variant("dnanet_vgg10", backbone="vgg10")
_variant("dnanet_resnet10", backbone="resnet10")
_variant("dnanet_resnet34", backbone="resnet34")
_variant("dnanet_wo_dnim", dnim="none")
_variant("dnanet_top_to_bottom", dnim="top_to_bottom")
_variant("dnanet_left_to_right", dnim="left_to_right")
_variant("dnanet_wo_csam", attention="none", widths=WO_CSAM_WIDTHS)
_variant("dnanet_channel_only", attention="channel_only", widths=CHANNEL_ONLY_WIDTHS)
_variant("dnanet_spatial_only", attention="spatial_only", widths=SPATIAL_ONLY_WIDTHS)
_variant("dnanet_sum_attention", attention="sum")
