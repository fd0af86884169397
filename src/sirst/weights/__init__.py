"""Weights bundled with the package, so ``sirst detect`` works without downloading anything.

``dnanet_synth.pt`` is a DNANet trained by us on synthesized data (see MODEL_CARD.md at the
repository root for how it was trained and what it reaches), stored in fp16.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

DEFAULT_WEIGHTS = "dnanet_synth.pt"


def default_weights_path() -> Path:
    """Path of the bundled default weights file."""
    return Path(__file__).resolve().parent / DEFAULT_WEIGHTS


def load_default_model(device: str | torch.device = "cpu") -> nn.Module:
    """The bundled DNANet in eval mode on ``device``; a clear error if the file is missing."""
    from sirst.checkpoint import model_from_checkpoint

    path = default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: bundled weights are missing from this installation; pass --weights")
    return model_from_checkpoint(path, device)
