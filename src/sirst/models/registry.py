"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Model files register their constructors with ``@register_model("name")``. The table is a
module-level dict, like timm's, filled once at import time and never mutated afterwards.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model constructor under ``name`` (lower case, unique)."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Sorted names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its constructor.

    Raises ``ValueError`` naming the valid models (and the closest match) for an unknown name.
    """
    key = name.lower()
    if key not in _MODELS:
        close = difflib.get_close_matches(key, _MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Valid models: {', '.join(list_models())}")
    return _MODELS[key](**kwargs)
