"""Weights bundled with the package, so ``sirst detect`` works without downloading anything.

Three DNANet-ResNet18 models trained by us (see MODEL_CARD.md at the repository root for data,
protocol, hardware and measured results), stored in fp16:

- ``general``: ``nuaa`` fine-tuned on both datasets' train splits plus real target-free frames and
  synthesized hard negatives, for scenes none of the data shows; the default.
- ``nuaa``: the paper's protocol on the NUAA-SIRST 50_50 train split (real infrared images).
- ``nudt``: the paper's protocol on the NUDT-SIRST 50_50 train split (real backgrounds, synthesized targets).

Anywhere a checkpoint path is accepted (``--weights``, :func:`sirst.checkpoint.read_checkpoint`),
one of these names selects the bundled file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

BUNDLED: dict[str, str] = {"general": "dnanet_general.pt", "nuaa": "dnanet_nuaa.pt", "nudt": "dnanet_nudt.pt"}
DEFAULT_WEIGHTS = "general"


def bundled_names() -> list[str]:
    """Names of the bundled weights, the default first."""
    return [DEFAULT_WEIGHTS] + sorted(n for n in BUNDLED if n != DEFAULT_WEIGHTS)


def default_weights_path(name: str = DEFAULT_WEIGHTS) -> Path:
    """Path of the bundled weights file ``name`` (the default weights when not given)."""
    if name not in BUNDLED:
        raise ValueError(f"{name}: no bundled weights of that name; bundled: {', '.join(bundled_names())}")
    return Path(__file__).resolve().parent / BUNDLED[name]


def resolve_weights(spec: str | os.PathLike | None) -> Path:
    """The checkpoint file for ``spec``: ``None`` = the default bundled weights, a bundled name
    (``"general"``, ``"nuaa"``, ``"nudt"``) = that file, anything else = a path (an existing file of that name wins).

    Raises ``FileNotFoundError`` when bundled weights are asked for but missing from the installation.
    """
    if spec is not None and (str(spec) not in BUNDLED or Path(spec).exists()):
        return Path(spec)
    path = default_weights_path(DEFAULT_WEIGHTS if spec is None else str(spec))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: bundled weights are missing from this installation; pass --weights")
    return path


def load_default_model(device: str | torch.device = "cpu", name: str = DEFAULT_WEIGHTS) -> nn.Module:
    """The bundled DNANet ``name`` in eval mode on ``device``; a clear error if the file is missing."""
    from sirst.checkpoint import model_from_checkpoint

    return model_from_checkpoint(resolve_weights(name), device)
