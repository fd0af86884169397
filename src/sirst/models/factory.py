"""``create_model`` and ``list_models``: the architectures of the registry plus the bundled weights.

Pretrained weights are tags of a registered architecture, as in timm: ``create_model("dnanet",
pretrained="nuaa")`` builds DNANet with the bundled ``nuaa`` weights, and ``list_models(pretrained=True)``
lists every tag with the data it was trained on and its test IoU (from the model card, see
:mod:`sirst.weights`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from sirst.checkpoint import model_from_checkpoint
from sirst.models.registry import build_model, model_names, registered_name
from sirst.weights import PretrainedInfo, pretrained_info, resolve_weights

__all__ = ["create_model", "list_models"]


def list_models(pretrained: bool = False) -> list[str] | list[PretrainedInfo]:
    """Sorted names accepted by :func:`create_model`; with ``pretrained=True`` instead the bundled
    weights as :class:`~sirst.weights.PretrainedInfo` (model, tag, training data, test IoU), the
    default first."""
    if pretrained:
        return pretrained_info()
    return model_names()


def create_model(
    name: str, pretrained: str | None = None, device: str | torch.device = "cpu", **kwargs
) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its constructor.

    Args:
        name: a name of :func:`list_models` (case-insensitive).
        pretrained: a tag of :func:`list_models(pretrained=True) <list_models>` of this model: the
            bundled weights' architecture and weights, in ``eval()`` mode on ``device``. The weights fix
            the architecture, so no constructor keywords go with it.
        device: where the pretrained model is put (an untrained one stays on the CPU).

    Raises:
        ValueError: unknown model (naming the valid ones and the closest match), a tag this model
            has no weights for (naming the valid tags), or keywords together with ``pretrained``.
    """
    if pretrained is None:
        return build_model(name, **kwargs)
    key = registered_name(name)
    tags = [p.tag for p in pretrained_info() if p.model == key]
    if pretrained not in tags:
        valid = ", ".join(tags) if tags else "none"
        raise ValueError(f"{name}: no pretrained weights tagged {pretrained!r}; tags of {key}: {valid}")
    if kwargs:
        raise ValueError(f"{name}: pretrained={pretrained!r} fixes the architecture; drop {', '.join(sorted(kwargs))}")
    return model_from_checkpoint(resolve_weights(pretrained), device, source=f"{key} pretrained={pretrained}")
