"""Training steps: the protocol between the engine and model-specific training logic.

The engine asks the model for its step: ``model.make_train_step(config)`` if the model defines it
(e.g. a GAN baseline with several networks and optimizers), else :class:`SegmentationStep`. There are
no if-chains on model names. A step object implements :class:`TrainStep`:

``configure_optimizers(model, cfg) -> list[torch.optim.Optimizer]``
    Called once, on the *unwrapped* model, before training (and before a resume restores the
    optimizer states, so the list must have the same length and order every time). The engine
    builds one LR scheduler per optimizer from ``cfg.scheduler`` and steps them once per epoch.

``step(model, batch, optimizers) -> dict[str, torch.Tensor]``
    One training iteration on ``batch`` (the collated dict of :class:`sirst.data.SirstDataset`
    samples already on the device: ``"image"`` ``(N, C, H, W)``, ``"mask"`` ``(N, 1, H, W)``): zero
    the gradients, forward, backward, optimizer step(s). ``model`` is in ``train()`` mode and may be a
    ``DistributedDataParallel`` wrapper (use :func:`sirst.models.unwrap` to reach sub-modules; forward through the
    wrapper so gradients are synchronised). Returns *detached* scalar tensors, left on the device
    (the engine accumulates them without a host sync); the key ``"loss"`` is required and is the one
    shown and checked for non-finite values; other keys (e.g. ``"loss_d"``) are averaged per epoch
    and checked too.

Mixed precision: steps build their autocast context with :func:`autocast` from the config they were
made with (``cfg.amp`` means bfloat16 autocast on CPU or CUDA, which needs no gradient scaler).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
import torch.nn as nn

from sirst.losses import DeepSupervisionLoss, SoftIoUBCELoss, SoftIoULoss
from sirst.models.base import unwrap

if TYPE_CHECKING:
    from sirst.engine.config import TrainConfig


def autocast(cfg: TrainConfig) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on the config's device type when ``cfg.amp``, else a no-op context."""
    if not cfg.amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=cfg.device.split(":")[0], dtype=torch.bfloat16)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` with ``cfg.lr``/``cfg.weight_decay``."""
    params = list(params)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"{cfg.out}: unknown optimizer {cfg.optimizer!r}")


@runtime_checkable
class TrainStep(Protocol):
    """What the engine needs from a training step (see the module docstring)."""

    def configure_optimizers(self, model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]: ...

    def step(
        self, model: nn.Module, batch: dict, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]: ...


class SegmentationStep:
    """The default step: Soft-IoU loss (plus ``cfg.bce_weight`` x cross-entropy; heads averaged under
    deep supervision), one optimizer."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        base = SoftIoUBCELoss(cfg.bce_weight) if cfg.bce_weight > 0 else SoftIoULoss(smooth=1.0)
        self.criterion = DeepSupervisionLoss(base)

    def configure_optimizers(self, model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        return [make_optimizer(model.parameters(), cfg)]

    def step(
        self, model: nn.Module, batch: dict, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.cfg):
            outputs = model(batch["image"])
        # The loss itself is computed in float32 (see soft_iou_loss), outside autocast.
        loss = self.criterion(outputs, batch["mask"])
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}


def get_train_step(model: nn.Module, cfg: TrainConfig) -> TrainStep:
    """The model's own step (``model.make_train_step(cfg)``) if it has one, else :class:`SegmentationStep`."""
    maker = getattr(unwrap(model), "make_train_step", None)
    step = maker(cfg) if callable(maker) else SegmentationStep(cfg)
    if not isinstance(step, TrainStep):
        raise TypeError(f"{type(unwrap(model)).__name__}.make_train_step returned {type(step).__name__}, "
                        "which lacks configure_optimizers/step")
    return step
