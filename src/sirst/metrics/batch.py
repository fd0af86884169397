"""Input handling shared by every metric: score maps and masks in, groups of equally sized images out.

Also the helpers of the accumulators' ``state()``/``merge_state()`` (counts that add across shards).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from sirst.metrics.protocol import Protocol, get_protocol
from sirst.targets import row_any

__all__ = ["ImageGroup", "ThresholdMetric", "prepare_batch"]

def _to_numpy(x: Any) -> np.ndarray:
    # Torch tensors without importing torch: this module must not need it.
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_maps(x: Any, name: str) -> np.ndarray | list[np.ndarray]:
    """``(N, H, W)`` array for array input, list of ``(H, W)`` arrays for list input."""
    if isinstance(x, (list, tuple)):
        out = []
        for i, m in enumerate(x):
            a = _to_numpy(m)
            if a.ndim == 3 and a.shape[0] == 1:
                a = a[0]
            if a.ndim != 2:
                raise ValueError(f"{name}[{i}]: expected an (H, W) or (1, H, W) map, got shape {a.shape}")
            out.append(a)
        return out
    a = _to_numpy(x)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name}: expected (N, H, W), (N, 1, H, W) or (H, W), got shape {a.shape}")
    return a


def _reference_resize(score: np.ndarray, mask: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize one ``(H, W)`` score map and mask to ``side`` squared like the public DNANet loader."""
    from PIL import Image

    size = (side, side)
    if score.shape != size:
        score = np.asarray(Image.fromarray(score.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    if mask.shape != size:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(size, Image.NEAREST)) > 0
    return score, mask


def _row_max(scores: np.ndarray) -> np.ndarray:
    """``(N * H,)`` maximum of every image row of ``(N, H, W)`` scores (NaN where a row holds NaN)."""
    import torch  # numpy's reduction along the last axis is ~4x slower than torch's

    rows = np.ascontiguousarray(scores.reshape(-1, scores.shape[-1]))
    if rows.size == 0 or rows.dtype == np.float16:
        return rows.max(axis=1) if rows.size else np.zeros(rows.shape[0], rows.dtype)
    return torch.from_numpy(rows).amax(dim=1).numpy()


def _row_counts(binary: np.ndarray) -> np.ndarray:
    """``(K,)`` number of set pixels in each row of a ``(K, W)`` bool array.

    ``count_nonzero(axis=1)`` is not vectorised along rows; counting the bits of the rows read as
    64-bit words is ~2.5x faster (numpy bools are bytes 0/1, so each word's bit count is the number
    of set bools in it).
    """
    binary = np.ascontiguousarray(binary)
    if binary.shape[-1] % 8 or not hasattr(np, "bitwise_count"):
        return np.count_nonzero(binary, axis=1)
    return np.bitwise_count(binary.view(np.uint64)).sum(axis=1, dtype=np.int64)


@dataclass(frozen=True)
class ImageGroup:
    """Images of one size: scores ``(N, H, W)`` float, masks ``(N, H, W)`` bool.

    ``row_max`` and ``mask_rows`` (computed once, shared by the metrics that use them) say which
    image rows can hold a prediction above a threshold and which hold ground truth: the metrics
    then only look at those rows, which for small targets are a few percent of the image.
    """

    scores: np.ndarray
    masks: np.ndarray

    @cached_property
    def row_max(self) -> np.ndarray:
        """``(N * H,)`` maximum score of each image row (row ``i * H + r`` is row ``r`` of image ``i``)."""
        return _row_max(self.scores)

    @cached_property
    def mask_rows(self) -> np.ndarray:
        """``(N * H,)`` bool: which image rows hold ground-truth pixels."""
        return row_any(self.masks)

    def rows_above(self, threshold: np.floating) -> np.ndarray:
        """Row indices (sorted) holding a score ``> threshold`` (in the scores' dtype)."""
        return np.flatnonzero(self.row_max > threshold)

    def prediction_rows(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, binary)``: the sorted ``(K,)`` row indices holding a score above ``threshold``
        (compared in the scores' dtype) and their ``(K, W)`` bool content. Cached per threshold, so
        the pixel and the target metrics of one batch share it."""
        cache = self.__dict__.setdefault("_prediction_rows", {})
        t = self.scores.dtype.type(threshold)
        if t not in cache:
            rows = self.rows_above(t)
            w = self.scores.shape[-1]
            cache[t] = (rows, np.take(self.scores.reshape(-1, w), rows, axis=0) > t)
        return cache[t]

    @cached_property
    def target_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, binary)``: the sorted ``(K,)`` row indices holding ground truth and their
        ``(K, W)`` bool content."""
        rows = np.flatnonzero(self.mask_rows)
        return rows, np.take(self.masks.reshape(-1, self.masks.shape[-1]), rows, axis=0)

    def select(self, start: int, stop: int) -> ImageGroup:
        """Images ``start:stop`` as a group (the row statistics are sliced, not recomputed)."""
        h = self.masks.shape[1]
        out = ImageGroup(self.scores[start:stop], self.masks[start:stop])
        for name in ("row_max", "mask_rows"):
            if name in self.__dict__:
                out.__dict__[name] = self.__dict__[name][start * h : stop * h]
        return out


def prepare_batch(scores: Any, masks: Any, protocol: Protocol = "exact") -> list[ImageGroup]:
    """Check and normalise a batch; group the images by size (and resize for the reference protocol).

    Args:
        scores: ``(N, H, W)``/``(N, 1, H, W)`` array or tensor, or a list of ``(H, W)`` maps.
        masks: the same layout; ``mask > 0.5`` is a target pixel.
        protocol: ``"exact"``, ``"reference"`` (resize to 256x256) or a :class:`MetricProtocol`.

    Returns:
        Groups of equally sized images; the order of images inside the batch is not kept (every
        metric is a sum over images).
    """
    side = get_protocol(protocol).resize_to
    s = _as_maps(scores, "scores")
    m = _as_maps(masks, "masks")
    if len(s) != len(m):
        raise ValueError(f"got {len(s)} score maps but {len(m)} masks")
    if isinstance(s, np.ndarray) and isinstance(m, np.ndarray) and (
        side is None or s.shape[1:] == (side, side)
    ):
        # One stack of equally sized maps (already 256x256 for the reference protocol): no copy.
        if s.shape != m.shape:
            raise ValueError(f"scores shape {s.shape} does not match masks shape {m.shape}")
        groups_in = [(s, m)] if len(s) else []
    else:
        by_shape: dict[tuple[int, int], tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for i, (si, mi) in enumerate(zip(s, m)):
            if si.shape != mi.shape:
                raise ValueError(f"image {i}: score map shape {si.shape} does not match mask shape {mi.shape}")
            if side is not None and si.shape != (side, side):
                si, mi = _reference_resize(np.asarray(si, dtype=np.float32), np.asarray(mi) > 0.5, side)
            lists = by_shape.setdefault(si.shape, ([], []))
            lists[0].append(si)
            lists[1].append(mi)
        groups_in = [(np.stack(a), np.stack(b)) for a, b in by_shape.values()]
    groups = []
    for sg, mg in groups_in:
        if sg.dtype.kind not in "fiub":
            raise ValueError(f"scores must be numeric, got dtype {sg.dtype}")
        sg = sg.astype(np.float32, copy=False) if sg.dtype.kind != "f" else sg
        mg = mg if mg.dtype == bool else mg > 0.5
        group = ImageGroup(scores=sg, masks=mg)
        # The row maxima are needed by the metrics anyway and are NaN exactly where a row holds NaN.
        if np.isnan(group.row_max).any():
            raise ValueError("scores contain NaN")
        groups.append(group)
    return groups


class ThresholdMetric:
    """Base of the accumulators that score ``scores > threshold`` under one protocol.

    Args:
        threshold: ``scores > threshold`` is a predicted target pixel (0 for logits, 0.5 for
            probabilities).
        protocol: ``"exact"``, ``"reference"`` or a :class:`~sirst.metrics.protocol.MetricProtocol`.
    """

    def __init__(self, threshold: float = 0.5, protocol: Protocol = "exact") -> None:
        self.threshold = float(threshold)
        self.protocol = get_protocol(protocol)

    def update(self, scores: Any, masks: Any) -> None:
        """Add a batch: ``scores``/``masks`` ``(N, H, W)``, ``(N, 1, H, W)`` or lists of ``(H, W)``."""
        self._update_groups(prepare_batch(scores, masks, self.protocol))

    def _update_groups(self, groups: Sequence[ImageGroup]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# State helpers


def _merge_into(own: dict[str, Any], other: Mapping[str, Any], owner: str) -> None:
    if set(own) != set(other):
        raise ValueError(f"{owner}.merge_state: keys {sorted(other)} do not match {sorted(own)}")
    for k, v in other.items():
        if isinstance(own[k], np.ndarray):
            v = np.asarray(v)
            if v.shape != own[k].shape:
                raise ValueError(f"{owner}.merge_state: {k!r} has shape {v.shape}, expected {own[k].shape}")
            own[k] = own[k] + v
        else:
            own[k] = own[k] + v


def _copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")

