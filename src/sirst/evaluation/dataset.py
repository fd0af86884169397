"""A network scored on a whole dataset split, batched: training's validation, ``sirst eval --data``, the model card.

Each image is predicted at its own (16-padded) size as the dataset returns it, then cropped back to
its original size before the metrics, so results do not depend on how images are batched or
sharded. A sharded evaluation (DDP: every rank takes the images ``rank, rank + W, ...``) hands this
shard's raw metric counts (``SirstMetrics.state()``) to a ``gather`` function and merges what comes
back, which gives the same numbers as a single process; the collectives themselves are the caller's
(:mod:`sirst.engine` passes :func:`sirst.engine.distributed.all_gather_objects`).

Torch is imported inside the functions, so the rest of :mod:`sirst.evaluation` stays light.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["evaluate_checkpoint", "evaluate_dataset", "evaluate_state", "merge_metric_states", "predict_logits"]


def _list_collate(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return samples


def predict_logits(model: Any, images: Any, amp: bool = False, channels_last: bool = False) -> Any:
    """Eval-mode forward: ``images`` ``(N, C, H, W)`` on the model's device -> logits ``(N, 1, H, W)`` float32.

    Takes the main output if the model returns a list (:func:`sirst.models.main_output`).
    """
    import torch

    from sirst.models.base import main_output

    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast(device_type=images.device.type, dtype=torch.bfloat16) if amp else torch.autocast(
        device_type=images.device.type, enabled=False
    )
    with ctx:
        out = main_output(model(images))
    return out.float()


def evaluate_state(
    model: Any,
    dataset: Any,
    device: Any = "cpu",
    batch_size: int = 1,
    workers: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    protocol: str = "exact",
    progress: bool = True,
    desc: str = "eval",
    optimize: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Predict the items of ``dataset`` (of this ``shard``) and return the raw metric counts
    (``SirstMetrics.state()``); the counts of disjoint shards add up (:func:`merge_metric_states`) to
    those of the whole set.

    Args:
        model: a network following the forward contract (eval mode -> logits ``(N, 1, H, W)``);
            it is put in ``eval()`` mode and restored to its previous mode afterwards. A
            ``min_peak_logit`` attribute gates weak targets, and a ``verifier`` one rejects candidates, as
            :class:`sirst.detect.Detector` does.
        dataset: items ``{"image": (C, H, W), "mask": (1, H, W), "id": str, "size": (H0, W0)}``
            (a :class:`sirst.data.SirstDataset` in ``mode="eval"``, or a ``Subset`` of one).
        batch_size: images per forward; only images of equal padded size are batched together.
        protocol: metrics protocol, ``"exact"`` or ``"reference"``.
        optimize: predict with :func:`sirst.detect.optimize.optimize_for_inference` (BN folded,
            channels_last, inference mode; ``amp`` -> bf16 autocast) instead of the model as it is.
        shard: ``(rank, world_size)``: this process evaluates the images ``rank, rank + world_size, ...``.
    """
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from sirst.data.io import from_network_input
    from sirst.metrics import SirstMetrics
    from sirst.verify import confirm_targets

    rank, world_size = shard
    if world_size > 1:
        dataset = Subset(dataset, list(range(rank, len(dataset), world_size)))
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_list_collate)
    metrics = SirstMetrics(threshold=0.0, protocol=protocol)  # logits: threshold 0 = probability 0.5
    gate = float(getattr(model, "min_peak_logit", 0.0))  # as the Detector applies it
    verifier = getattr(model, "verifier", None)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            net: Any = model
            if optimize:
                from sirst.detect.optimize import optimize_for_inference

                # A BN-folded channels_last copy (the model itself is untouched): same logits to ~1e-5.
                net = optimize_for_inference(model, device, precision="bf16" if amp else "fp32")
            for samples in tqdm(loader, desc=desc, disable=not progress, leave=False):
                # Group by padded shape so each image sees exactly the padding the dataset gave it.
                groups: dict[tuple[int, ...], list[dict[str, Any]]] = {}
                for s in samples:
                    groups.setdefault(tuple(s["image"].shape), []).append(s)
                for group in groups.values():
                    images = torch.stack([s["image"] for s in group]).to(device, non_blocking=True)
                    if optimize:
                        logits = net(images).cpu().numpy()
                    else:
                        logits = predict_logits(model, images, amp=amp, channels_last=channels_last).cpu().numpy()
                    # The verifier reads the frame itself (the network input, un-normalised).
                    scores = [confirm_targets(logits[i, 0, : s["size"][0], : s["size"][1]],
                                              from_network_input(s["image"])[: s["size"][0], : s["size"][1]]
                                              if verifier is not None else None, gate, verifier)
                              for i, s in enumerate(group)]
                    masks = [s["mask"][0, : s["size"][0], : s["size"][1]].numpy() for s in group]
                    metrics.update(scores, masks)
    finally:
        model.train(was_training)
    return metrics.state()


def merge_metric_states(states: Sequence[dict[str, Any]], protocol: str = "exact") -> dict[str, float]:
    """Combine the ``SirstMetrics.state()`` of several shards into final metrics (shard order is irrelevant)."""
    from sirst.metrics import SirstMetrics

    metrics = SirstMetrics(threshold=0.0, protocol=protocol)
    for state in states:
        metrics.merge_state(state)
    return {k: float(v) for k, v in metrics.compute().items() if np.isscalar(v)}


def evaluate_dataset(
    model: Any,
    dataset: Any,
    gather: Callable[[dict[str, Any]], Sequence[dict[str, Any]]] | None = None,
    **options: Any,
) -> dict[str, float]:
    """Run ``model`` over ``dataset`` and return :meth:`sirst.metrics.SirstMetrics.compute` plus ``seconds``.

    Args:
        gather: takes this shard's counts and returns every shard's (in rank order), e.g. an
            all-gather across processes; every caller then returns the same result. ``None``: this
            shard's counts alone.
        options: those of :func:`evaluate_state` (``device``, ``batch_size``, ``protocol``, ``shard``, ...).

    Returns:
        Flat dict of floats (``iou``, ``niou``, ``pd``, ``fa``, ... see ``SirstMetrics.compute``) and
        ``seconds`` (wall time of this evaluation).
    """
    start = time.perf_counter()
    state = evaluate_state(model, dataset, **options)
    out = merge_metric_states(gather(state) if gather is not None else [state], options.get("protocol", "exact"))
    out["seconds"] = time.perf_counter() - start
    return out


def evaluate_checkpoint(
    data: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    split: str = "auto",
    subset: str = "test",
    device: str = "cpu",
    protocol: str = "exact",
    progress: bool = True,
    min_peak: float | None = None,
    verify: bool = True,
) -> dict[str, float]:
    """Score checkpoint ``weights`` (a path, a bundled name, or ``None`` for the default weights) on
    ``subset`` of ``split`` of the dataset at ``data``, at probability 0.5 (:func:`evaluate_dataset`),
    with the weights' own confidence gate and verifier, as ``sirst detect`` runs them. ``min_peak``
    replaces the gate (0: none); ``verify=False`` leaves the verifier out.

    Returns:
        :meth:`sirst.metrics.SirstMetrics.compute` plus ``seconds``, ``min_peak_logit`` (the gate
        applied) and, when a verifier ran, its ``verifier_threshold``.
    """
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.data import SirstDataset
    from sirst.weights import resolve_weights

    path = resolve_weights(weights)
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, device, source=str(path))
    if min_peak is not None:
        model.min_peak_logit = float(min_peak)
    if not verify:
        model.verifier = None
    in_channels = int(ckpt.get("model_kwargs", {}).get("in_channels", 3))
    dataset = SirstDataset(data, split=split, subset=subset, mode="eval", protocol=protocol, in_channels=in_channels)
    result = evaluate_dataset(model, dataset, device=device, protocol=protocol, progress=progress)
    result["min_peak_logit"] = model.min_peak_logit
    if model.verifier is not None:
        result["verifier_threshold"] = model.verifier.threshold
    return result
