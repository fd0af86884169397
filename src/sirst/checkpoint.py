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

import math
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

    ``path`` may also name bundled weights (``"general"``, ``"nuaa"``, ``"nudt"``; see :mod:`sirst.weights`).
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
    from sirst.models.registry import build_model

    if not isinstance(ckpt, dict):
        source = source or str(ckpt)
        ckpt = read_checkpoint(ckpt)
    where = source or "checkpoint"
    name, kwargs = ckpt.get("model_name"), ckpt.get("model_kwargs", {})
    try:
        model = build_model(str(name), **kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: cannot build its model {name!r} {kwargs} ({exc})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    load_state_dict_checked(model, state, where)
    # The weights' per-target confidence gate (sirst.targets.gate_weak_components), chosen on their
    # validation data; detection and evaluation read it from the model (0: every target kept).
    model.min_peak_logit = float(ckpt.get("min_peak_logit") or 0.0)
    # The weights' second stage (sirst.verify.Verifier), when bundled: it rejects the candidates that
    # look like clutter; it runs on the CPU beside the network's output, whatever the device.
    model.verifier = None
    if ckpt.get("verifier"):
        from sirst.verify import Verifier

        model.verifier = Verifier(ckpt["verifier"], where)
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


# Compact resumable states: what a long run carries between sessions (committed to the repository) and
# between device windows (returned files of at most 16 MiB). Weights become fp16; the optimizer statistics
# that take thousands of steps to rebuild (step counters, Adagrad sums, Adam second moments) are kept, the
# positive ones as 8-bit logarithms; momentum buffers (Adam's exp_avg, SGD's momentum_buffer) rebuild
# within ~10 steps, so they are dropped and restart at zero.
_KEPT_OPTIMIZER_ENTRIES = ("step", "sum", "exp_avg_sq", "max_exp_avg_sq")

_LOG8_LEVELS = 254  # codes 1..255 for positive values, 0 for exact zeros


def quantize_log8(t: torch.Tensor) -> dict[str, Any]:
    """Encode a non-negative tensor in one byte per value on a log2 scale, one scale per row (the first
    dimension: an output channel of a convolution, which keeps a row's values within a few octaves).

    Zeros stay exact (code 0); a positive value keeps a relative error of at most
    ``2 ** ((hi - lo) / 508) - 1`` where ``lo``/``hi`` are its row's extreme log2 values (0.7 % over
    a range of 2^5). Adagrad uses the accumulator only through ``1 / sqrt(sum)``, which halves that.
    """
    t = t.detach().float().cpu()
    rows = t.reshape(t.shape[0] if t.dim() else 1, -1).double()
    positive = rows > 0
    logs = torch.log2(torch.where(positive, rows, torch.ones_like(rows)))
    big = torch.full_like(logs, math.inf)
    lo = torch.where(positive, logs, big).amin(dim=1, keepdim=True)
    hi = torch.where(positive, logs, -big).amax(dim=1, keepdim=True)
    lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    hi = torch.maximum(torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi)), lo)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    codes = 1 + torch.round((logs - lo) / span * _LOG8_LEVELS)
    codes = torch.where(positive, codes, torch.zeros_like(codes)).to(torch.uint8)
    return {"codes": codes.reshape(t.shape), "lo": lo.flatten().float(), "hi": hi.flatten().float()}


def dequantize_log8(q: dict[str, Any]) -> torch.Tensor:
    """Inverse of :func:`quantize_log8` (float32, the codes' shape)."""
    codes = q["codes"]
    rows = codes.reshape(codes.shape[0] if codes.dim() else 1, -1).double()
    lo, hi = q["lo"].double()[:, None], q["hi"].double()[:, None]
    values = torch.pow(2.0, lo + (rows - 1) * (hi - lo) / _LOG8_LEVELS)
    values = torch.where(rows > 0, values, torch.zeros_like(values))
    return values.float().reshape(codes.shape)


def compact_training_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A small resumable state from a training checkpoint (``last.pt``, any optimizer).

    DNANet-ResNet18: 14 MB (3 bytes a parameter) instead of 38 MB (Adagrad) or 57 MB (Adam). Resuming
    from it continues the run, not bit-exactly: weights within fp16 rounding, statistics within ~1 %
    (``last.pt`` itself resumes exactly). :func:`expand_training_state` turns it back into a
    checkpoint that ``sirst train --resume`` reads.
    """
    def shrink_optimizer(state_dict: dict[str, Any]) -> dict[str, Any]:
        per_param = {}
        for idx, entries in state_dict["state"].items():
            kept = {}
            for key, value in entries.items():
                if key not in _KEPT_OPTIMIZER_ENTRIES:
                    kept[key] = ("dropped", tuple(value.shape) if torch.is_tensor(value) else None)
                elif torch.is_tensor(value) and value.is_floating_point() and key != "step":
                    kept[key] = ("log8", quantize_log8(value))
                else:
                    kept[key] = value
            per_param[idx] = kept
        return {"state": per_param, "param_groups": state_dict["param_groups"]}

    out = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "format")}
    out["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    out["optimizer"] = [shrink_optimizer(s) for s in ckpt["optimizer"]]
    out["compact"] = True
    return out


def expand_training_state(state: dict[str, Any]) -> dict[str, Any]:
    """The training checkpoint a compact state stands for (fp32 weights and statistics, dropped
    momentum buffers as zeros); a checkpoint that is not compact is returned as it is."""
    if not state.get("compact"):
        return state

    def grow_optimizer(state_dict: dict[str, Any]) -> dict[str, Any]:
        per_param = {}
        for idx, entries in state_dict["state"].items():
            grown = {}
            for key, value in entries.items():
                if isinstance(value, tuple) and value and value[0] == "dropped":
                    grown[key] = torch.zeros(value[1]) if value[1] is not None else None
                elif isinstance(value, tuple) and value and value[0] == "log8":
                    grown[key] = dequantize_log8(value[1])
                else:
                    grown[key] = value
            per_param[idx] = grown
        return {"state": per_param, "param_groups": state_dict["param_groups"]}

    out = {k: v for k, v in state.items() if k not in ("state_dict", "optimizer", "compact", "format")}
    out["state_dict"] = {k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    out["optimizer"] = [grow_optimizer(s) for s in state["optimizer"]]
    return out


def half_weights(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The bundled-weights layout: fp16 weights plus provenance (model, epoch, metrics, config), the
    per-target confidence gate ``min_peak_logit`` and the candidate ``verifier`` when the checkpoint
    has them."""
    gate = {"min_peak_logit": float(ckpt["min_peak_logit"])} if ckpt.get("min_peak_logit") else {}
    if ckpt.get("verifier"):
        from sirst.verify import Verifier

        gate["verifier"] = Verifier(ckpt["verifier"]).state(half=True)
    return {
        "model_name": ckpt["model_name"],
        "model_kwargs": ckpt["model_kwargs"],
        "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()},
        "epoch": ckpt.get("epoch"),
        "best_epoch": ckpt.get("best_epoch"),
        "metrics": ckpt.get("metrics"),
        "config": ckpt.get("config"),
        **gate,
    }
