"""Target extraction: eight-connected clustering of a binary map (DNANet paper, Section III-D).

A *target* is one eight-connected component of a binary map: pixels that touch by an edge or a
corner belong to the same target. Each target is described by its centroid ``(row, col)`` (mean
pixel coordinates, the same as ``skimage.measure.regionprops(...).centroid``), its area in pixels,
its bounding box and its peak score.

Everything is vectorised, no Python loop over pixels. One image (:func:`extract_targets`): one
``scipy.ndimage.label`` call, then ``bincount`` and ``ndimage.find_objects``/``ndimage.maximum``.
Stacks of sparse maps (the metrics, :func:`components_from_rows`): only the rows that hold
foreground are read, as horizontal runs of pixels joined across adjacent rows, so the cost follows
the targets rather than the image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "EIGHT_CONNECTED",
    "ComponentStats",
    "Target",
    "component_stats",
    "components_from_rows",
    "extract_targets",
    "gate_weak_components",
    "label_components",
    "row_any",
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


def row_any(binary: np.ndarray) -> np.ndarray:
    """``(S * H,)`` bool: which rows of an ``(S, H, W)`` (or ``(H, W)``) bool stack hold foreground."""
    binary = np.asarray(binary, dtype=bool)
    w = binary.shape[-1]
    rows = binary.reshape(-1, w)
    if rows.size >= 1 << 16:
        # torch's row reduction is several times faster than numpy's (which is not vectorised
        # along the last axis); torch is a dependency of sirst anyway.
        import torch

        # numpy bools are bytes 0/1, so four of them read as one int32 are > 0 exactly when one of
        # them is set; ``amax`` over those is ~5x faster than ``any`` over the bools.
        rows = np.ascontiguousarray(rows)
        view = rows.view(np.int32) if w % 4 == 0 else rows.view(np.uint8)
        return torch.from_numpy(view).amax(dim=1).numpy() > 0
    return rows.any(axis=1)


# Rounds of label propagation before the run graph is handed to scipy's connected_components
# (linear-time, but ~0.1 ms of overhead per call); the runs of small targets converge in 2-4.
_PROPAGATION_ROUNDS = 12
# Larger run graphs (dense or noisy maps) go to scipy at once.
_PROPAGATION_MAX_RUNS = 1 << 14


def _label_runs(i: np.ndarray, j: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a graph of ``r`` runs with edges ``(i, j)``.

    Returns ``(labels, first)``: ``(r,)`` component of each run, numbered in the order of the
    components' lowest run index, and ``(n,)`` that lowest run index of each component.
    """
    lab = np.arange(r)
    for _ in range(_PROPAGATION_ROUNDS if r <= _PROPAGATION_MAX_RUNS else 0):
        # Every run takes the smallest label across its edges, then follows labels twice
        # (pointer jumping). At the fixed point every component carries its lowest run index.
        low = np.minimum(lab[i], lab[j])
        new = lab.copy()
        np.minimum.at(new, i, low)
        np.minimum.at(new, j, low)
        new = new[new[new]]
        if np.array_equal(new, lab):
            roots = lab == np.arange(r)
            return (np.cumsum(roots) - 1)[lab], np.flatnonzero(roots)
        lab = new
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(r, r)).tocsr()
    n, lab = connected_components(graph, directed=False)
    return _in_order_of_first(lab, int(n))


def _in_order_of_first(lab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Renumber labels ``0..n-1`` of the ordered elements ``lab`` by each label's first element.

    Returns the new labels and, for each new label, the index of its first element.
    """
    first = np.full(n, lab.size, dtype=np.intp)
    np.minimum.at(first, lab, np.arange(lab.size))
    by_first = np.argsort(first)
    rank = np.empty(n, dtype=np.intp)
    rank[by_first] = np.arange(n)
    return rank[lab], first[by_first]


def _pixel_components(row_ids: np.ndarray, rows: np.ndarray, h: int) -> ComponentStats:
    """:func:`components_from_rows` for dense rows (many runs per row): the rows go into a compact
    image, with an empty separator row wherever consecutive rows are not adjacent in one slice, which
    OpenCV labels pixel by pixel. ``rows`` is ``(K, W)`` bool in the order of ``row_ids``."""
    order = np.argsort(row_ids, kind="stable")
    ids = row_ids[order]
    gap = np.ones(ids.size, dtype=np.int64)
    gap[0] = 0
    gap[1:] = (ids[1:] != ids[:-1] + 1) | (ids[1:] // h != ids[:-1] // h)
    pos = np.arange(ids.size) + np.cumsum(gap)  # compact row of each sorted row
    w = rows.shape[1]
    compact = np.zeros((int(pos[-1]) + 1, w), dtype=np.uint8)
    compact[pos] = rows[order]
    n, labels = cv2.connectedComponents(compact, connectivity=8, ltype=cv2.CV_32S)
    n -= 1
    row_of = np.full(compact.shape[0], -1, dtype=np.int64)
    row_of[pos] = ids
    idx = np.flatnonzero(compact.view(bool))  # raster order; nonzero of bool is much faster
    # OpenCV numbers components in its own order: renumber by first pixel in raster order.
    lab, first = _in_order_of_first(labels.reshape(-1)[idx] - 1, n)
    grow = row_of[idx // w]
    area = np.bincount(lab, minlength=n).astype(np.int64)
    centroid = np.empty((n, 2), dtype=np.float64)
    centroid[:, 0] = np.bincount(lab, weights=grow % h, minlength=n) / area
    centroid[:, 1] = np.bincount(lab, weights=idx % w, minlength=n) / area
    return ComponentStats(area=area, centroid=centroid, slice_index=grow[first] // h)


def components_from_rows(row_ids: np.ndarray, rows: np.ndarray | Sequence[np.ndarray], h: int) -> ComponentStats:
    """Eight-connected components of a stack of binary maps given only its non-empty rows.

    Works on the horizontal runs of foreground pixels: runs in vertically adjacent rows of the same
    slice that overlap or touch diagonally are connected, and the components of that run graph
    are the eight-connected components. The cost depends on the given rows alone, which makes the
    target-level metrics of small targets nearly free once the rows holding foreground are known.

    Args:
        row_ids: ``(K,)`` distinct global row indices ``slice * h + row``, in any order.
        rows: ``(K, W)`` bool, the content of those rows (all other rows are empty), or a sequence
            of ``(K_i, W)`` blocks that stack to it (saves the copy of a concatenation).
        h: rows per slice.

    Returns:
        :class:`ComponentStats` in the order of :func:`label_components` on the full stack (slice by
        slice, raster order of the first pixel inside a slice); ``slice_index`` is ``row_id // h``.
    """
    row_ids = np.asarray(row_ids, dtype=np.int64)
    blocks = [rows] if isinstance(rows, np.ndarray) else list(rows)
    empty = ComponentStats(area=np.zeros(0, dtype=np.int64), centroid=np.zeros((0, 2)),
                           slice_index=np.zeros(0, dtype=np.int64))
    if row_ids.size == 0:
        return empty
    if sum(len(b) for b in blocks) != row_ids.size:
        raise ValueError(f"components_from_rows: {row_ids.size} row ids but {sum(len(b) for b in blocks)} rows")
    if row_ids.size > 1 and not np.all(row_ids[1:] > row_ids[:-1]) and np.unique(row_ids).size != row_ids.size:
        raise ValueError("components_from_rows: row ids must be distinct")
    w = blocks[0].shape[1]
    # Runs: pad every row with a background pixel on both sides; the changes along the padded
    # row alternate run start, run end (exclusive).
    padded = np.zeros((row_ids.size, w + 2), dtype=bool)
    start = 0
    for b in blocks:
        padded[start : start + len(b), 1:-1] = b
        start += len(b)
    changes = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
    if changes.size == 0:
        return empty
    if changes.size > 8 * row_ids.size:
        # More than four runs per row on average (noise at a low threshold): pixel labelling wins.
        return _pixel_components(row_ids, padded[:, 1:-1], h)
    run_row = row_ids[changes[0::2] // (w + 1)]
    run_start = changes[0::2] % (w + 1)  # the run covers columns run_start .. run_end - 1
    run_end = changes[1::2] % (w + 1)
    key = run_row * (w + 1) + run_start
    if key.size > 1 and not np.all(key[1:] > key[:-1]):
        order = np.argsort(key, kind="stable")
        run_row, run_start, run_end, key = run_row[order], run_start[order], run_end[order], key[order]
    # Runs of the row above that touch run [s, e) (8-neighbourhood): those ending at or after s
    # and starting at or before e. Inside a row runs are disjoint and sorted, so by start and by
    # end alike: the touching runs are one index range [lo, hi).
    above = (run_row - 1) * (w + 1)
    lo = np.searchsorted(run_row * (w + 1) + run_end, above + run_start, side="left")
    hi = np.searchsorted(key, above + run_end, side="right")
    hi = np.where(run_row % h == 0, lo, np.maximum(hi, lo))  # the first row of a slice has none
    count = hi - lo
    j = np.repeat(np.arange(run_row.size), count)
    i = lo[j] + (np.arange(j.size) - (np.cumsum(count) - count)[j])
    lab, first = _label_runs(i, j, run_row.size)
    n = first.size
    length = (run_end - run_start).astype(np.float64)
    area = np.bincount(lab, weights=length, minlength=n)
    centroid = np.empty((n, 2), dtype=np.float64)
    # Sums of pixel coordinates are integers, exact in float64, so the centroids equal the mean
    # of the pixel coordinates computed pixel by pixel.
    centroid[:, 0] = np.bincount(lab, weights=length * (run_row % h), minlength=n) / area
    centroid[:, 1] = np.bincount(lab, weights=(run_start + run_end - 1) * length / 2, minlength=n) / area
    return ComponentStats(area=area.astype(np.int64), centroid=centroid, slice_index=run_row[first] // h)


def stack_components(binary: np.ndarray) -> ComponentStats:
    """Areas, centroids and slices of the eight-connected components of a stack of binary maps.

    Equivalent to :func:`label_components` + :func:`component_stats` on an ``(S, H, W)`` stack
    (same components, same order: slice by slice, raster order inside a slice) but faster for the
    sparse maps of small targets: only the rows that hold foreground are labelled
    (:func:`components_from_rows`).

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
    kept = np.flatnonzero(row_any(binary))
    return components_from_rows(kept, binary.reshape(s * h, w)[kept], h)


def component_maxima(values: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each component's highest value and its position (ties: the first pixel in raster order, where
    ``ndimage.maximum_position``'s unstable sort picks any), over the foreground pixels only: scipy
    sorts every pixel of the frame, 3-5 ms of a 256x256 frame that holds a few hundred target pixels.

    Args:
        values: ``(H, W)`` map.
        labels: ``(H, W)`` int labels ``1..n`` (0: background).
        n: number of components.

    Returns:
        ``(peaks (n,) float64, positions (n, 2) int (row, col))``.
    """
    fg = np.flatnonzero(labels)
    sub_values, sub_labels = values.ravel()[fg], labels.ravel()[fg]
    # By label, then value descending, then raster order: each label's first entry is its peak.
    order = np.lexsort((fg, -sub_values, sub_labels))
    first = order[np.flatnonzero(np.r_[True, np.diff(sub_labels[order]) != 0])]
    if len(first) != n:
        raise ValueError(f"labels hold {len(first)} components, expected {n}")
    rows, cols = np.divmod(fg[first], labels.shape[1])
    return sub_values[first].astype(np.float64), np.stack([rows, cols], axis=1)


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
        peaks, peak_pos = component_maxima(scores, labels, n)
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


#: Logit given to the pixels of a gated component: far below any threshold a user would pick.
GATED_LOGIT = -30.0


def gate_weak_components(logits: np.ndarray, min_peak: float) -> np.ndarray:
    """Drop the targets whose peak logit is not above ``min_peak`` (a per-target confidence).

    A target is an eight-connected component of ``logits > 0``. Its pixels stay as they are when
    its highest logit exceeds ``min_peak``; otherwise they become :data:`GATED_LOGIT`, so every
    consumer of the map (clustering, metrics, saved masks) sees the target gone while the kept
    targets keep their exact masks (a hysteresis threshold: low 0, high ``min_peak``).

    Args:
        logits: ``(H, W)`` map or ``(S, H, W)`` stack (gated slice by slice), float.
        min_peak: logit; ``<= 0`` keeps every target and returns ``logits`` itself.

    Returns:
        An array of the same shape and dtype (a copy when anything is gated).
    """
    logits = np.asarray(logits)
    if min_peak <= 0:
        return logits
    labels, n = label_components(logits > 0)
    if n == 0:
        return logits
    peaks, _ = component_maxima(logits, labels, n)
    weak = np.concatenate([[False], peaks <= min_peak])[labels]
    if not weak.any():
        return logits
    out = logits.copy()
    out[weak] = GATED_LOGIT
    return out
