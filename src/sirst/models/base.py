"""The base every registered network shares: the forward contract written once.

A :class:`SirstModel` takes ``(N, C, H, W)`` normalised images with H and W multiples of its
``size_divisor`` and returns logits ``(N, 1, H, W)`` in ``eval()`` mode; in ``train()`` mode a model
with deep supervision returns the list of head logits, the fused (main) output last. The helpers
here are what every caller needs around that contract: the main output of either form
(:func:`main_output`), the model inside a DDP or ``torch.compile`` wrapper (:func:`unwrap`), and an
inference call on any image size (:meth:`SirstModel.predict`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SirstModel", "main_output", "pad_to_multiple", "unwrap"]


def pad_to_multiple(x: torch.Tensor, multiple: int = 16) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad ``x`` (N, C, H, W) at the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` to crop the output back with
    ``out[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


def main_output(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The main logits ``(N, 1, H, W)`` of a forward output: the tensor itself, or the last of a
    deep-supervision list (the fused head, by the contract above)."""
    return out[-1] if isinstance(out, (list, tuple)) else out


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``torch.compile`` and/or ``DistributedDataParallel`` wrapper."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class SirstModel(nn.Module):
    """Base class of the registered networks (:func:`sirst.models.create_model` checks it).

    Attributes:
        size_divisor: H and W of the input must be multiples of it (callers pad, see
            :func:`pad_to_multiple`, and crop back).
        deep_supervision: ``train()``-mode forward returns a list of head logits, main last.
    """

    size_divisor: int = 1
    deep_supervision: bool = False

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless H and W of ``x`` ``(N, C, H, W)`` are multiples of ``size_divisor``."""
        h, w = x.shape[-2:]
        # Shapes are symbolic while exporting; the check runs in eager mode only.
        if not torch.jit.is_tracing() and (h % self.size_divisor or w % self.size_divisor):
            raise ValueError(
                f"{type(self).__name__} needs height and width divisible by {self.size_divisor}, got {h}x{w}; "
                "pad the input (sirst.models.pad_to_multiple) and crop the output, as sirst's dataset and "
                "Detector do"
            )

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Target probabilities ``(N, 1, H, W)`` of normalised ``images`` ``(N, C, H, W)`` of any size.

        Pads to ``size_divisor``, runs the eval-mode forward, crops back and applies the sigmoid;
        the model's train/eval mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            padded, (h, w) = pad_to_multiple(images, self.size_divisor)
            logits = main_output(self(padded))[..., :h, :w]
        finally:
            self.train(was_training)
        return torch.sigmoid(logits.float())
