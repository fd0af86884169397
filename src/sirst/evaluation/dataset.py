"""A network checkpoint scored on a whole dataset split, batched (the path of ``sirst eval --data``).

The images go through :func:`sirst.engine.evaluate` (each at its own padded size, DDP-shardable,
the same function training validates with), so the numbers are those of training's validation and
of the model card.
"""

from __future__ import annotations

import os

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    data: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    split: str = "auto",
    subset: str = "test",
    device: str = "cpu",
    protocol: str = "exact",
    progress: bool = True,
) -> dict[str, float]:
    """Score checkpoint ``weights`` (a path, a bundled name, or ``None`` for the default weights) on
    ``subset`` of ``split`` of the dataset at ``data``, at probability 0.5.

    Returns:
        :meth:`sirst.metrics.SirstMetrics.compute` plus ``seconds``.
    """
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.data import SirstDataset
    from sirst.engine import evaluate
    from sirst.weights import resolve_weights

    path = resolve_weights(weights)
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, device, source=str(path))
    in_channels = int(ckpt.get("model_kwargs", {}).get("in_channels", 3))
    dataset = SirstDataset(data, split=split, subset=subset, mode="eval", protocol=protocol, in_channels=in_channels)
    return evaluate(model, dataset, device=device, protocol=protocol, progress=progress)
