"""Target extraction: eight-connected clustering of a binary map (DNANet paper, Section III-D).

A *target* is one eight-connected component of a binary map: pixels that touch by an edge or a
corner belong to the same target. Each target is described by its centroid ``(row, col)`` (mean
pixel coordinates, the same as ``skimage.measure.regionprops(...).centroid``), its area in pixels,
its bounding box and its peak score.

Everything is vectorised: one ``scipy.ndimage.label`` call, then ``bincount`` and
``ndimage.find_objects``/``ndimage.maximum`` for the statistics; no Python loop over pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "EIGHT_CONNECTED",
    "ComponentStats",
    "Target",
    "component_stats",
    "extract_targets",
    "label_components",
    "slice_structure",
    "stack_components",
]

#: 3x3 structuring element: eight-connectivity in a 2-D image.
EIGHT_CONNECTED: np.ndarray = np.ones((3, 3), dtype=bool)


def slice_structure() -> np.ndarray:
    """Structuring element ``(3, 3, 3)`` for a ``(S, H, W)`` stack of 2-D maps.

    It connects eight-neighbours inside one slice only, so labelling the whole stack in one
    ``ndimage.label`` call gives exactly the components of each slice labelled on its own (and,
    because labels follow the raster scan, slice by slice in the same order).
    """
    s = np.zeros((3, 3, 3), dtype=bool)
    s[1] = True
    return s


@dataclass(frozen=True)
class Target:
    """One detected (or ground-truth) target.

    Attributes:
        centroid: ``(row, col)`` mean pixel coordinates, in pixels from the top-left pixel centre.
        area: number of pixels.
        bbox: ``(row_min, col_min, row_max, col_max)``, half-open like ``regionprops.bbox``.
        peak: maximum score inside the target (1.0 when no score map was given).
        peak_pos: ``(row, col)`` of the first pixel (raster order) that holds the peak score.
    """

    centroid: tuple[float, float]
    area: int
    bbox: tuple[int, int, int, int]
    peak: float
    peak_pos: tuple[int, int]


@dataclass(frozen=True)
class ComponentStats:
    """Vectorised statistics of ``n`` labelled components (label ``k`` is row ``k - 1``).

    Attributes:
        area: ``(n,)`` int64 pixel counts.
        centroid: ``(n, 2)`` float64 ``(row, col)`` centroids.
        slice_index: ``(n,)`` int64 index of the slice (first axis) holding each component; all
            zeros for a 2-D label image.
    """

    area: np.ndarray
    centroid: np.ndarray
    slice_index: np.ndarray

    def __len__(self) -> int:
        return int(self.area.shape[0])


def label_components(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """Label eight-connected components.

    Args:
        binary: ``(H, W)`` map, or an ``(S, H, W)`` stack of maps labelled slice by slice (no
            connection across slices). Non-zero means foreground.

    Returns:
        ``(labels, n)``: int32 labels of the same shape (0 = background, 1..n in raster order of
        each component's first pixel) and the number of components.
    """
    binary = np.asarray(binary)
    if binary.ndim == 2:
        structure = EIGHT_CONNECTED
    elif binary.ndim == 3:
        structure = slice_structure()
    else:
        raise ValueError(f"binary map must be (H, W) or (S, H, W), got shape {binary.shape}")
    labels, n = ndimage.label(binary != 0, structure=structure)
    return labels.astype(np.int32, copy=False), int(n)


def component_stats(labels: np.ndarray, n: int) -> ComponentStats:
    """Areas and centroids of the components of a label image, computed with ``bincount``.

    Args:
        labels: ``(H, W)`` or ``(S, H, W)`` integer labels (0 = background, 1..n).
        n: number of components.

    Returns:
        :class:`ComponentStats` with ``n`` rows. Cost is proportional to the foreground pixels.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise ValueError(f"labels must be (H, W) or (S, H, W), got shape {labels.shape}")
    _, h, w = labels.shape
    flat = labels.reshape(-1)
    # nonzero of a bool map is much faster than of an int label map.
    idx = np.flatnonzero(flat > 0)
    lab = flat[idx].astype(np.intp) - 1
    rows = (idx // w) % h
    cols = idx % w
    area = np.bincount(lab, minlength=n)[:n].astype(np.int64)
    safe = np.maximum(area, 1)
    centroid = np.empty((n, 2), dtype=np.float64)
    centroid[:, 0] = np.bincount(lab, weights=rows, minlength=n)[:n] / safe
    centroid[:, 1] = np.bincount(lab, weights=cols, minlength=n)[:n] / safe
    # Every pixel of a component lies in the same slice, so the mean slice index is that slice.
    slice_sum = np.bincount(lab, weights=idx // (h * w), minlength=n)[:n]
    slice_index = np.rint(slice_sum / safe).astype(np.int64)
    return ComponentStats(area=area, centroid=centroid, slice_index=slice_index)


def stack_components(binary: np.ndarray) -> ComponentStats:
    """Areas, centroids and slices of the eight-connected components of a stack of binary maps.

    Equivalent to :func:`label_components` + :func:`component_stats` on an ``(S, H, W)`` stack
    (same components, same order: slice by slice, raster order inside a slice) but faster for the
    sparse maps of small targets: only the image rows that hold foreground are copied into a compact
    2-D map (with an empty row wherever kept rows were not adjacent) and labelled in one call.

    Args:
        binary: ``(S, H, W)`` or ``(H, W)`` bool.

    Returns:
        :class:`ComponentStats`; ``slice_index`` is the index along the first axis.
    """
    binary = np.asarray(binary, dtype=bool)
    if binary.ndim == 2:
        binary = binary[None]
    if binary.ndim != 3:
        raise ValueError(f"binary map must be (H, W) or (S, H, W), got shape {binary.shape}")
    s, h, w = binary.shape
    rows2d = binary.reshape(s * h, w)
    kept = np.flatnonzero(rows2d.any(axis=1))  # global row ids (slice * h + row) with foreground
    if kept.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ComponentStats(area=empty, centroid=np.zeros((0, 2)), slice_index=empty)
    # A separator row goes before every kept row that does not continue the previous one in the
    # same slice, so components can only join along truly adjacent rows.
    gap = np.ones(kept.size, dtype=np.int64)
    gap[0] = 0
    gap[1:] = (kept[1:] != kept[:-1] + 1) | (kept[1:] // h != kept[:-1] // h)
    pos = np.arange(kept.size) + np.cumsum(gap)
    compact = np.zeros((int(pos[-1]) + 1, w), dtype=bool)
    compact[pos] = rows2d[kept]
    labels, n = ndimage.label(compact, structure=EIGHT_CONNECTED)
    row_of = np.full(compact.shape[0], -1, dtype=np.int64)
    row_of[pos] = kept
    idx = np.flatnonzero(compact)
    lab = labels.reshape(-1)[idx].astype(np.intp) - 1
    grow = row_of[idx // w]
    area = np.bincount(lab, minlength=n).astype(np.int64)
    centroid = np.empty((n, 2), dtype=np.float64)
    centroid[:, 0] = np.bincount(lab, weights=grow % h, minlength=n) / area
    centroid[:, 1] = np.bincount(lab, weights=idx % w, minlength=n) / area
    slice_index = np.rint(np.bincount(lab, weights=grow // h, minlength=n) / area).astype(np.int64)
    return ComponentStats(area=area, centroid=centroid, slice_index=slice_index)


def extract_targets(binary: np.ndarray, scores: np.ndarray | None = None) -> list[Target]:
    """Cluster a binary map into eight-connected targets.

    Args:
        binary: ``(H, W)`` bool (non-zero = target pixel).
        scores: optional ``(H, W)`` score map of the same size; gives each target's peak score.

    Returns:
        Targets in raster order of their first pixel.
    """
    binary = np.asarray(binary)
    if binary.ndim != 2:
        raise ValueError(f"binary map must be (H, W), got shape {binary.shape}")
    if scores is not None:
        scores = np.asarray(scores)
        if scores.shape != binary.shape:
            raise ValueError(f"scores shape {scores.shape} does not match binary map shape {binary.shape}")
    labels, n = label_components(binary)
    if n == 0:
        return []
    stats = component_stats(labels, n)
    boxes = ndimage.find_objects(labels, max_label=n)
    index = np.arange(1, n + 1)
    if scores is not None:
        peaks = np.asarray(ndimage.maximum(scores, labels, index), dtype=np.float64).reshape(n)
        peak_pos = ndimage.maximum_position(scores, labels, index)
    else:
        peaks = np.ones(n, dtype=np.float64)
        # The first foreground pixel of each component, in raster order.
        first = [(int(b[0].start), int(b[1].start)) for b in boxes]
        peak_pos = [
            (r, int(b[1].start) + int(np.argmax(labels[r, b[1]] == k)))
            for k, ((r, _), b) in enumerate(zip(first, boxes), start=1)
        ]
    return [
        Target(
            centroid=(float(stats.centroid[k, 0]), float(stats.centroid[k, 1])),
            area=int(stats.area[k]),
            bbox=(int(boxes[k][0].start), int(boxes[k][1].start), int(boxes[k][0].stop), int(boxes[k][1].stop)),
            peak=float(peaks[k]),
            peak_pos=(int(peak_pos[k][0]), int(peak_pos[k][1])),
        )
        for k in range(n)
    ]
