"""Evaluation of a network on a dataset with the exact SIRST metrics, single-process or sharded.

Each image is predicted at its own (16-padded) size as the dataset returns it, then cropped back to
its original size before the metrics, so results do not depend on how images are batched or
sharded. Under DDP every rank evaluates the images ``rank, rank + W, rank + 2W, ...`` and the metric
accumulators' raw counts (``SirstMetrics.state()``) are gathered and merged, which gives the same
numbers as a single process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Subset

from sirst.engine.distributed import DistInfo, all_gather_objects
from sirst.models.base import main_output


def _list_collate(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return samples


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    amp: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Eval-mode forward: ``images`` ``(N, C, H, W)`` on the model's device -> logits ``(N, 1, H, W)`` float32.

    Takes the main output if the model returns a list (:func:`sirst.models.main_output`).
    """
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast(device_type=images.device.type, dtype=torch.bfloat16) if amp else torch.autocast(
        device_type=images.device.type, enabled=False
    )
    with ctx:
        out = main_output(model(images))
    return out.float()


@torch.inference_mode()
def evaluate_state(
    model: nn.Module,
    dataset: Dataset,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    workers: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    protocol: str = "exact",
    progress: bool = True,
    desc: str = "eval",
    optimize: bool = True,
) -> dict[str, Any]:
    """Predict every item of ``dataset`` and return the raw metric counts (``SirstMetrics.state()``).

    The counts of disjoint shards add up (:func:`merge_metric_states`) to those of the whole set.
    Arguments as in :func:`evaluate`.
    """
    from tqdm import tqdm

    from sirst.metrics import SirstMetrics

    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_list_collate)
    from sirst.targets import gate_weak_components

    metrics = SirstMetrics(threshold=0.0, protocol=protocol)  # logits: threshold 0 = probability 0.5
    gate = float(getattr(model, "min_peak_logit", 0.0))  # as the Detector applies it
    was_training = model.training
    model.eval()
    net: Any = model
    if optimize:
        from sirst.optimize import optimize_for_inference

        # A BN-folded channels_last copy (the model itself is untouched): same logits to ~1e-5.
        net = optimize_for_inference(model, device, precision="bf16" if amp else "fp32")
    try:
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
                scores = [gate_weak_components(logits[i, 0, : s["size"][0], : s["size"][1]], gate)
                          for i, s in enumerate(group)]
                masks = [s["mask"][0, : s["size"][0], : s["size"][1]].numpy() for s in group]
                metrics.update(scores, masks)
    finally:
        model.train(was_training)
    return metrics.state()


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    workers: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    protocol: str = "exact",
    dist_info: DistInfo | None = None,
    progress: bool = True,
    desc: str = "eval",
    optimize: bool = True,
) -> dict[str, float]:
    """Run ``model`` over ``dataset`` and return :meth:`sirst.metrics.SirstMetrics.compute` plus ``seconds``.

    Args:
        model: a network following the forward contract (eval mode -> logits ``(N, 1, H, W)``);
            it is put in ``eval()`` mode and restored to its previous mode afterwards.
        dataset: items ``{"image": (C, H, W), "mask": (1, H, W), "id": str, "size": (H0, W0)}``
            (a :class:`sirst.data.SirstDataset` in ``mode="eval"``, or a ``Subset`` of one).
        batch_size: images per forward; only images of equal padded size are batched together.
        protocol: metrics protocol, ``"exact"`` or ``"reference"``.
        optimize: predict with :func:`sirst.optimize.optimize_for_inference` (BN folded,
            channels_last, inference mode; ``amp`` -> bf16 autocast) instead of the model as it is.
        dist_info: when distributed, this rank evaluates the images ``rank, rank + W, ...`` and the
            counts of all ranks are gathered and merged; every rank returns the same result.

    Returns:
        Flat dict of floats (``iou``, ``niou``, ``pd``, ``fa``, ... see ``SirstMetrics.compute``) and
        ``seconds`` (wall time of this evaluation).
    """
    info = dist_info or DistInfo()
    start = time.perf_counter()
    shard: Dataset = dataset
    if info.enabled:
        shard = Subset(dataset, list(range(info.rank, len(dataset), info.world_size)))
    state = evaluate_state(
        model, shard, device=device, batch_size=batch_size, workers=workers, amp=amp,
        channels_last=channels_last, protocol=protocol, progress=progress and info.is_main, desc=desc,
        optimize=optimize,
    )
    # Merge every shard in rank order on every rank, so all ranks hold identical numbers.
    out = merge_metric_states(all_gather_objects(state, info), protocol)
    out["seconds"] = time.perf_counter() - start
    return out


def merge_metric_states(states: Sequence[dict[str, Any]], protocol: str = "exact") -> dict[str, float]:
    """Combine the ``SirstMetrics.state()`` of several shards into final metrics (shard order is irrelevant)."""
    from sirst.metrics import SirstMetrics

    metrics = SirstMetrics(threshold=0.0, protocol=protocol)
    for state in states:
        metrics.merge_state(state)
    return {k: float(v) for k, v in metrics.compute().items() if np.isscalar(v)}
