"""Checkpoint files: written atomically, self-describing, loadable into a ready model.

A checkpoint is a ``dict`` saved with ``torch.save``::

    {
        "format": "sirst-checkpoint-v1",
        "model_name": "dnanet",            # registry name
        "model_kwargs": {...},              # constructor keywords (JSON-like)
        "state_dict": {...},                # model weights (fp32, or fp16 for bundled weights)
        # optional, written by training:
        "epoch": int, "optimizer": ..., "scheduler": ..., "rng": ..., "config": {...},
        "metrics": {...}, "best_epoch": int,
    }
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

FORMAT = "sirst-checkpoint-v1"


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Save ``obj`` to ``path`` atomically: a temp file in the same folder, fsync, then rename.

    A run killed mid-save leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": FORMAT, **obj}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict, with a clear error for missing, corrupt or foreign files.

    ``path`` may also name bundled weights (``"nuaa"``, ``"nudt"``; see :mod:`sirst.weights`).
    """
    from sirst.weights import resolve_weights

    path = resolve_weights(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{path}: is an ONNX model, not a sirst checkpoint; run it with `sirst detect --backend "
                         "onnxruntime --weights FILE.onnx`, or pass the .pt checkpoint it was exported from")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ValueError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a sirst checkpoint (expected a dict with format={FORMAT!r}); "
            "weights of the public DNANet code load with sirst.models.dnanet.load_reference_state_dict"
        )
    return ckpt


def model_from_checkpoint(
    ckpt: dict[str, Any] | str | os.PathLike, device: str | torch.device = "cpu", source: str | None = None
) -> nn.Module:
    """Build the checkpoint's model, load its weights (any stored dtype) and return it in eval mode.

    Raises ``ValueError`` (naming ``source``, the file, when known) for an unknown model name,
    options the model does not take, or weights whose names or shapes do not fit the model.
    """
    from sirst.models import create_model

    if not isinstance(ckpt, dict):
        source = source or str(ckpt)
        ckpt = read_checkpoint(ckpt)
    where = source or "checkpoint"
    name, kwargs = ckpt.get("model_name"), ckpt.get("model_kwargs", {})
    try:
        model = create_model(str(name), **kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: cannot build its model {name!r} {kwargs} ({exc})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    load_state_dict_checked(model, state, where)
    return model.to(device).eval()


def load_state_dict_checked(model: nn.Module, state: dict[str, Any], where: str) -> None:
    """``model.load_state_dict(state)`` with a one-line ``ValueError`` naming ``where`` and the
    first missing, unexpected or differently shaped tensor (torch's message spans many lines)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} tensor(s) of other shapes (e.g. {k}: {tuple(state[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in the model)")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        raise ValueError(f"{where}: weights do not fit the model {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(state)
