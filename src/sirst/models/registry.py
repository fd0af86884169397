"""The architecture table: ``@register_model("name")`` and building a model by name.

Model files register their constructors with ``@register_model("name")``. The table is a
module-level dict, like timm's, filled once at import time and never mutated afterwards. Users call
:func:`sirst.models.create_model`, which adds the pretrained tags on top of this table.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch.nn as nn

from sirst.models.base import SirstModel

__all__ = ["build_model", "model_names", "register_model", "registered_name"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model constructor under ``name`` (lower case, unique)."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return decorator


def model_names() -> list[str]:
    """Sorted registered names."""
    return sorted(_MODELS)


def registered_name(name: str) -> str:
    """The registry key of ``name`` (case-insensitive); ``ValueError`` naming the valid models (and
    the closest match) for an unknown one."""
    key = name.lower()
    if key not in _MODELS:
        close = difflib.get_close_matches(key, _MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Valid models: {', '.join(model_names())}")
    return key


def build_model(name: str, **kwargs) -> SirstModel:
    """The untrained model ``name``; keyword arguments go to its constructor."""
    model = _MODELS[registered_name(name)](**kwargs)
    if not isinstance(model, SirstModel):
        raise TypeError(f"model {name!r}: its constructor returned {type(model).__name__}, not a sirst.models.SirstModel")
    return model
