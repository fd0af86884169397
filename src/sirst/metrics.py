"""Evaluation metrics for infrared small target detection.

All metrics are *accumulators*: ``update(scores, masks)`` with a batch of score maps and masks, any
sizes, any batch split; ``compute()`` returns plain floats; ``reset()``; ``state()`` returns the raw
counts (numbers and arrays that add across DDP shards) and ``merge_state(state)`` adds another
shard's. ``scores > threshold`` is the prediction (threshold in score units: 0 for logits, 0.5 for
probabilities); ``mask > 0.5`` is the ground truth.

Pixel-level metrics (:class:`SegmentationMetric`)
    IoU = sum of intersections / sum of unions over the dataset; nIoU = mean of the per-image IoU
    (Dai et al., ACM); precision, recall and F1 of the target pixels.

Target-level metrics (:class:`PdFaMetric`)
    Ground-truth and predicted targets are the eight-connected components of the mask and of the
    binary prediction (:mod:`sirst.targets`). A ground-truth target is *detected* when it is
    matched to a predicted component whose centroid lies at Euclidean distance < 3 pixels from its
    own. Pd = matched ground-truth targets / all ground-truth targets. Fa = pixels of the predicted
    components that are not matched / all image pixels.

Two protocols:

``protocol="exact"`` (default)
    Images are evaluated at their own size; Fa divides by the true pixel count of all images.
    Matching is one-to-one by component identity: each ground-truth target is matched to at most
    one predicted component and vice versa, with the largest possible number of matches, ties
    broken by smaller total centroid distance (``scipy.optimize.linear_sum_assignment``). nIoU
    averages the per-image IoU over the images whose union is not empty (an image with neither
    target nor prediction has no defined IoU and is skipped).

``protocol="reference"``
    Reproduces the public DNANet evaluation code (``model/metric.py`` of
    YeRen123455/Infrared-Small-Target-Detection) exactly, quirks included, so that numbers can be
    compared with the paper and the papers that reuse that code:

    * every score map and mask is first resized to 256x256 as the public data loader does
      (Pillow: score maps ``BILINEAR``, masks ``NEAREST``); Fa divides by ``256 * 256 * N``;
    * greedy first-come matching: for each ground-truth component in label order, the first
      remaining predicted component in label order with centroid distance < 3 is matched and
      removed;
    * the *area-value quirk*: the false-alarm pixel count is the summed area of the predicted
      components whose area value differs from the area of every matched component of the same
      image, so an unmatched component with the same area as a matched one is not counted;
    * IoU is ``sum(I) / (eps + sum(U))`` of the thresholded maps (the public code thresholds
      logits at 0; pass ``threshold=0`` for logits, 0.5 for probabilities);
    * nIoU is computed as in the public ACM/ALCNet code (``SamplewiseSigmoidMetric``), which the
      DNANet code does not include: the mean over *all* images of ``I / (eps + U)``, so an image
      with an empty union counts as IoU 0.

Target-size classes (per-size Pd, for subset evaluation)
    The DNANet paper (NUDT-SIRST) describes point, spot and extended targets without giving
    pixel limits. Following the SPIE definition of a small target (at most 0.15% of the image,
    about 9x9 pixels in a 256x256 image) we use, on the ground-truth component area ``a``:
    ``point``: a <= 9 (3x3), ``spot``: 10 <= a <= 81 (9x9), ``extended``: a > 81.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from sirst.targets import (
    ComponentStats,
    component_stats,
    components_from_rows,
    label_components,
    row_any,
)

__all__ = [
    "MATCH_DISTANCE",
    "POINT_MAX_AREA",
    "REFERENCE_SIZE",
    "SIZE_CLASSES",
    "SIZE_SUBSETS",
    "SPOT_MAX_AREA",
    "PdFaMetric",
    "Protocol",
    "ROCMetric",
    "SegmentationMetric",
    "SirstMetrics",
    "ImageGroup",
    "ImageMatch",
    "adaptive_threshold",
    "match_image",
    "match_targets",
    "prepare_batch",
    "size_class",
]

Protocol = Literal["exact", "reference"]
PROTOCOLS: tuple[str, ...] = ("exact", "reference")

#: A ground-truth target is detected by a predicted component whose centroid is closer than this.
MATCH_DISTANCE: float = 3.0
#: Side of the square the reference protocol resizes everything to.
REFERENCE_SIZE: int = 256
#: Target-size classes, see the module docstring.
SIZE_CLASSES: tuple[str, ...] = ("point", "spot", "extended")
POINT_MAX_AREA: int = 9
SPOT_MAX_AREA: int = 81
#: Image subsets of the size-subset Pd-Fa curves: images whose targets are all of a class up to
#: point, up to spot, and all images (the DNANet paper's Fig. 9).
SIZE_SUBSETS: tuple[str, ...] = ("point", "point+spot", "all")

# Upper bound on the elements of one stacked (images x thresholds x H x W) boolean volume.
_MAX_VOLUME = 1 << 24
# The eps of the public code's divisions.
_EPS = float(np.spacing(1))


def adaptive_threshold(g: np.ndarray) -> float:
    """Adaptive threshold of the DNANet paper, Eq. 13: ``max(0.7 * max(G), 0.5 * std(G) + mean(G))``.

    Args:
        g: score map of any shape (usually ``(H, W)``).
    """
    g = np.asarray(g, dtype=np.float64)
    if g.size == 0:
        raise ValueError("adaptive_threshold: empty score map")
    return float(max(0.7 * g.max(), 0.5 * g.std() + g.mean()))


def size_class(area: np.ndarray) -> np.ndarray:
    """Size-class index (0 point, 1 spot, 2 extended; see :data:`SIZE_CLASSES`) of target areas.

    Args:
        area: ``(n,)`` pixel counts.

    Returns:
        ``(n,)`` int64 class indices.
    """
    area = np.asarray(area)
    return (area > POINT_MAX_AREA).astype(np.int64) + (area > SPOT_MAX_AREA).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Input handling


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


def _reference_resize(score: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resize one ``(H, W)`` score map and mask to 256x256 like the public DNANet loader."""
    from PIL import Image

    size = (REFERENCE_SIZE, REFERENCE_SIZE)
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
        protocol: ``"exact"`` or ``"reference"`` (resize to 256x256).

    Returns:
        Groups of equally sized images; the order of images inside the batch is not kept (every
        metric is a sum over images).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    s = _as_maps(scores, "scores")
    m = _as_maps(masks, "masks")
    if len(s) != len(m):
        raise ValueError(f"got {len(s)} score maps but {len(m)} masks")
    if isinstance(s, np.ndarray) and isinstance(m, np.ndarray) and (
        protocol == "exact" or s.shape[1:] == (REFERENCE_SIZE, REFERENCE_SIZE)
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
            if protocol == "reference" and si.shape != (REFERENCE_SIZE, REFERENCE_SIZE):
                si, mi = _reference_resize(np.asarray(si, dtype=np.float32), np.asarray(mi) > 0.5)
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


# --------------------------------------------------------------------------------------------------
# Pixel-level metrics


class SegmentationMetric:
    """IoU, nIoU, precision, recall and F1 of the thresholded score maps (pixel level).

    Args:
        threshold: ``scores > threshold`` is a predicted target pixel.
        protocol: ``"exact"`` or ``"reference"`` (see the module docstring).
    """

    def __init__(self, threshold: float = 0.5, protocol: Protocol = "exact") -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.threshold = float(threshold)
        self.protocol: Protocol = protocol
        self._state: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        self._state = {
            "intersection": 0,
            "union": 0,
            "pred_pixels": 0,
            "gt_pixels": 0,
            "niou_sum": 0.0,
            "niou_images": 0,
            "num_images": 0,
            "num_pixels": 0,
        }

    def state(self) -> dict[str, Any]:
        return _copy_state(self._state)

    def merge_state(self, state: Mapping[str, Any]) -> None:
        _merge_into(self._state, state, type(self).__name__)

    def update(self, scores: Any, masks: Any) -> None:
        """Add a batch: ``scores``/``masks`` ``(N, H, W)``, ``(N, 1, H, W)`` or lists of ``(H, W)``."""
        self._update_groups(prepare_batch(scores, masks, self.protocol))

    def _update_groups(self, groups: Sequence[ImageGroup]) -> None:
        st = self._state
        for g in groups:
            n, h, _ = g.masks.shape
            # Only rows holding a prediction or a target pixel can add to the counts. (Compared in
            # the scores' dtype, as PdFaMetric and ROCMetric do, so the three agree.)
            p_rows, pred = g.prediction_rows(self.threshold)
            g_rows, gt = g.target_rows
            _, pi, gi = np.intersect1d(p_rows, g_rows, assume_unique=True, return_indices=True)

            def per_image(rows: np.ndarray, row_counts: np.ndarray) -> np.ndarray:
                return np.bincount(rows // h, weights=row_counts, minlength=n).astype(np.int64)

            inter = per_image(p_rows[pi], _row_counts(pred[pi] & gt[gi]))
            npred = per_image(p_rows, _row_counts(pred))
            ngt = per_image(g_rows, _row_counts(gt))
            union = npred + ngt - inter
            st["intersection"] += int(inter.sum())
            st["union"] += int(union.sum())
            st["pred_pixels"] += int(npred.sum())
            st["gt_pixels"] += int(ngt.sum())
            if self.protocol == "reference":
                st["niou_sum"] += float((inter / (_EPS + union)).sum())
                st["niou_images"] += int(inter.shape[0])
            else:
                ok = union > 0
                st["niou_sum"] += float((inter[ok] / union[ok]).sum())
                st["niou_images"] += int(ok.sum())
            st["num_images"] += int(inter.shape[0])
            st["num_pixels"] += int(g.masks.size)

    def compute(self) -> dict[str, float]:
        """Return ``iou``, ``niou``, ``precision``, ``recall``, ``f1``, ``num_images``, ``num_pixels``.

        Undefined ratios (e.g. IoU with no target and no prediction at all) are NaN.
        """
        st = self._state
        if self.protocol == "reference":
            iou = float(st["intersection"]) / (_EPS + st["union"])
        else:
            iou = _div(st["intersection"], st["union"])
        precision = _div(st["intersection"], st["pred_pixels"])
        recall = _div(st["intersection"], st["gt_pixels"])
        f1 = _div(2 * st["intersection"], st["pred_pixels"] + st["gt_pixels"])
        return {
            "iou": iou,
            "niou": _div(st["niou_sum"], st["niou_images"]),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "num_images": float(st["num_images"]),
            "num_pixels": float(st["num_pixels"]),
        }


# --------------------------------------------------------------------------------------------------
# Target-level matching


def match_targets(
    gt_centroids: np.ndarray,
    pred_centroids: np.ndarray,
    protocol: Protocol = "exact",
    max_distance: float = MATCH_DISTANCE,
) -> np.ndarray:
    """Match the targets of one image by centroid distance.

    Args:
        gt_centroids: ``(G, 2)`` ground-truth centroids in label order.
        pred_centroids: ``(P, 2)`` predicted centroids in label order.
        protocol: ``"exact"``: one-to-one, maximum number of matches, ties by smaller total distance;
            ``"reference"``: greedy first-come in label order, as the public DNANet code.
        max_distance: a pair is a candidate when its distance is strictly below this.

    Returns:
        ``(M, 2)`` int64 pairs ``(gt_index, pred_index)``.
    """
    gt = np.asarray(gt_centroids, dtype=np.float64).reshape(-1, 2)
    pr = np.asarray(pred_centroids, dtype=np.float64).reshape(-1, 2)
    d = np.sqrt(((gt[:, None, :] - pr[None, :, :]) ** 2).sum(-1))
    gi, pj = np.nonzero(d < max_distance)
    return _resolve(gi, pj, d[gi, pj], np.zeros(len(gi), dtype=np.int64), protocol)


@dataclass(frozen=True)
class ImageMatch:
    """How the target-level metrics see one image: components and which of them match.

    Attributes:
        gt: :class:`~sirst.targets.ComponentStats` of the ground-truth components (label order).
        pred: the same for the predicted components.
        gt_labels: ``(H, W)`` int32 labels of the mask (0 = background, component ``i`` is ``i + 1``).
        pred_labels: ``(H, W)`` int32 labels of the prediction.
        pairs: ``(M, 2)`` int64 matched ``(gt index, pred index)``.
        intersection: target pixels predicted as target.
        union: pixels that are target or predicted target.
    """

    gt: ComponentStats
    pred: ComponentStats
    gt_labels: np.ndarray
    pred_labels: np.ndarray
    pairs: np.ndarray
    intersection: int
    union: int

    @property
    def detected(self) -> np.ndarray:
        """Indices of the ground-truth targets that were detected (matched)."""
        return np.sort(self.pairs[:, 0])

    @property
    def missed(self) -> np.ndarray:
        """Indices of the ground-truth targets matched to no prediction."""
        return np.setdiff1d(np.arange(len(self.gt)), self.pairs[:, 0])

    @property
    def false_alarms(self) -> np.ndarray:
        """Indices of the predicted components matched to no ground-truth target."""
        return np.setdiff1d(np.arange(len(self.pred)), self.pairs[:, 1])

    @property
    def false_alarm_pixels(self) -> int:
        """Pixels of the unmatched predicted components (the numerator of Fa, exact protocol)."""
        return int(self.pred.area[self.false_alarms].sum())

    @property
    def iou(self) -> float:
        """Per-image IoU (the term of nIoU); NaN when there is neither target nor prediction."""
        return _div(self.intersection, self.union)


def match_image(pred: Any, mask: Any, protocol: Protocol = "exact") -> ImageMatch:
    """Match the predicted components of one image to its ground-truth targets.

    The same components (:func:`sirst.targets.label_components`, in the order of
    :func:`~sirst.targets.stack_components`) and the same matching rule (:func:`match_targets`)
    as :class:`PdFaMetric`, so summing ``len(pairs)`` and :attr:`ImageMatch.false_alarm_pixels`
    over images gives its ``num_matched`` and ``false_alarm_pixels`` (exact protocol; images at
    their own size: the reference protocol's resizing and area-value quirk are not applied here).

    Args:
        pred: ``(H, W)`` binary prediction (non-zero = target pixel), e.g. ``scores > threshold``.
        mask: ``(H, W)`` ground truth; ``mask > 0.5`` is a target pixel.
        protocol: matching rule, ``"exact"`` (maximum one-to-one) or ``"reference"`` (greedy).
    """
    pred = _to_numpy(pred)
    mask = _to_numpy(mask)
    if pred.ndim != 2 or pred.shape != mask.shape:
        raise ValueError(f"match_image: expected (H, W) prediction and mask of one size, got {pred.shape} and {mask.shape}")
    pred_b = pred != 0
    mask_b = mask > 0.5
    gt_labels, n_gt = label_components(mask_b)
    pred_labels, n_pr = label_components(pred_b)
    gt = component_stats(gt_labels, n_gt)
    pr = component_stats(pred_labels, n_pr)
    pairs = match_targets(gt.centroid, pr.centroid, protocol)
    inter = int(np.count_nonzero(pred_b & mask_b))
    union = int(np.count_nonzero(pred_b | mask_b))
    return ImageMatch(gt, pr, gt_labels, pred_labels, pairs, inter, union)


# Above this many same-slice (ground truth, prediction) pairs, candidates come from a k-d tree.
_MAX_BRUTE_PAIRS = 1 << 22


def _candidate_pairs(
    a: np.ndarray, a_slice: np.ndarray, b: np.ndarray, b_slice: np.ndarray, h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``a_slice[i] == b_slice[j]`` and centroid distance < MATCH_DISTANCE.

    Args:
        a, b: ``(A, 2)``, ``(B, 2)`` centroids; ``a_slice``/``b_slice`` their slices, each sorted
            ascending (components come slice by slice).
        h: slice height (offsets slices apart in the k-d tree fallback).

    Returns:
        ``(i, j, distance)``, each ``(K,)``.
    """
    lo = np.searchsorted(b_slice, a_slice, side="left")
    hi = np.searchsorted(b_slice, a_slice, side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total <= _MAX_BRUTE_PAIRS:
        # Few targets per image: every same-slice pair, exactly.
        i = np.repeat(np.arange(a.shape[0]), counts)
        start = np.cumsum(counts) - counts
        j = lo[i] + (np.arange(total) - start[i])
    else:
        # Many components (e.g. a noisy map at a low threshold): a k-d tree on centroids offset
        # per slice so that slices never meet, with a slightly larger radius.
        pitch = float(h + 4 * MATCH_DISTANCE)
        a_off = a.copy()
        a_off[:, 0] += a_slice * pitch
        b_off = b.copy()
        b_off[:, 0] += b_slice * pitch
        sdm = cKDTree(a_off).sparse_distance_matrix(cKDTree(b_off), MATCH_DISTANCE + 1e-6, output_type="ndarray")
        i = sdm["i"].astype(np.int64)
        j = sdm["j"].astype(np.int64)
        same = a_slice[i] == b_slice[j]
        i, j = i[same], j[same]
    d = np.sqrt(((a[i] - b[j]) ** 2).sum(-1))
    ok = d < MATCH_DISTANCE
    return i[ok], j[ok], d[ok]


def _resolve(gi: np.ndarray, pj: np.ndarray, dist: np.ndarray, group: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Turn candidate pairs into matches; pairs of different ``group`` (image slices) never conflict.

    Args:
        gi, pj: ``(K,)`` candidate pair indices (ground truth, prediction), each in label order.
        dist: ``(K,)`` their centroid distances.
        group: ``(K,)`` slice id of each pair.

    Returns:
        ``(M, 2)`` int64 matched ``(gi, pj)`` pairs.
    """
    if gi.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # A pair whose ground truth and prediction appear in no other pair is matched by any rule.
    simple = (np.bincount(gi)[gi] == 1) & (np.bincount(pj)[pj] == 1)
    out = [np.stack([gi[simple], pj[simple]], axis=1)]
    rest = ~simple
    if rest.any():
        gi_r, pj_r, d_r, grp_r = gi[rest], pj[rest], dist[rest], group[rest]
        for s in np.unique(grp_r):
            sel = grp_r == s
            out.append(_resolve_one(gi_r[sel], pj_r[sel], d_r[sel], protocol))
    return np.concatenate(out, axis=0).astype(np.int64)


def _resolve_one(gi: np.ndarray, pj: np.ndarray, dist: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Matches among the conflicting candidate pairs of one image slice."""
    if protocol == "reference":
        order = np.lexsort((pj, gi))
        used_g: set[int] = set()
        used_p: set[int] = set()
        pairs = []
        for g, p in zip(gi[order].tolist(), pj[order].tolist()):
            if g in used_g or p in used_p:
                continue
            used_g.add(g)
            used_p.add(p)
            pairs.append((g, p))
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    g_uni, g_inv = np.unique(gi, return_inverse=True)
    p_uni, p_inv = np.unique(pj, return_inverse=True)
    # Non-candidates cost more than any set of candidates, so the optimum has the most matches,
    # then the smallest total distance.
    big = MATCH_DISTANCE * (min(len(g_uni), len(p_uni)) + 1) + 1.0
    cost = np.full((len(g_uni), len(p_uni)), big)
    cost[g_inv, p_inv] = dist
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] < big
    return np.stack([g_uni[r[keep]], p_uni[c[keep]]], axis=1).astype(np.int64)


class _PdFaCounts:
    """Pd/Fa counts at ``T`` thresholds at once: one labelling of a ``(N*T, H, W)`` volume per group."""

    def __init__(self, thresholds: Sequence[float], protocol: Protocol) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if th.size == 0:
            raise ValueError("at least one threshold is needed")
        self.thresholds = th
        self.protocol: Protocol = protocol
        self._state: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        t = self.thresholds.size
        k = len(SIZE_CLASSES)
        self._state = {
            "num_images": 0,
            "num_pixels": 0,
            "num_targets": 0,
            "targets_by_size": np.zeros(k, dtype=np.int64),
            "matched": np.zeros(t, dtype=np.int64),
            "matched_by_size": np.zeros((t, k), dtype=np.int64),
            "false_alarm_pixels": np.zeros(t, dtype=np.int64),
            "false_alarm_targets": np.zeros(t, dtype=np.int64),
            "pred_targets": np.zeros(t, dtype=np.int64),
            # Per image class (largest ground-truth size class of the image; 0 without targets), for
            # the size-subset curves (:data:`SIZE_SUBSETS`): images, pixels, targets, matches, Fa pixels.
            "images_by_class": np.zeros(k, dtype=np.int64),
            "pixels_by_class": np.zeros(k, dtype=np.int64),
            "targets_by_class": np.zeros(k, dtype=np.int64),
            "matched_by_class": np.zeros((t, k), dtype=np.int64),
            "false_alarm_pixels_by_class": np.zeros((t, k), dtype=np.int64),
        }

    def update_groups(self, groups: Sequence[ImageGroup]) -> None:
        for g in groups:
            n, h, w = g.masks.shape
            step = max(1, _MAX_VOLUME // max(1, self.thresholds.size * h * w))
            for i in range(0, n, step):
                self._update_stack(g if step >= n else g.select(i, i + step))

    def _update_stack(self, group: ImageGroup) -> None:
        st = self._state
        th = self.thresholds
        t = th.size
        n, h, w = group.masks.shape
        k = len(SIZE_CLASSES)

        # The T binary maps of every image form slices s = image * T + threshold index; the ground
        # truth of image i is slice N * T + i. All are labelled in one call (8-neighbours within a
        # slice only). Only the rows whose maximum exceeds a threshold are thresholded and labelled;
        # the full (N, T, H, W) volume is never built.
        ids, blocks = [], []
        for ti, thr in enumerate(th):
            rows, binary = group.prediction_rows(float(thr))
            ids.append(((rows // h) * t + ti) * h + rows % h)
            blocks.append(binary)
        gt_rows, gt_binary = group.target_rows
        ids.append(gt_rows + n * t * h)
        blocks.append(gt_binary)
        both = components_from_rows(np.concatenate(ids), blocks, h)
        n_pr = int(np.searchsorted(both.slice_index, n * t))
        pr = ComponentStats(both.area[:n_pr], both.centroid[:n_pr], both.slice_index[:n_pr])
        gt = ComponentStats(both.area[n_pr:], both.centroid[n_pr:], both.slice_index[n_pr:] - n * t)
        n_gt = len(gt)
        gt_size = size_class(gt.area)
        pr_t = pr.slice_index % t

        # Candidate pairs (ground truth x threshold, prediction) within MATCH_DISTANCE in the same slice.
        gi_rep = np.repeat(np.arange(n_gt), t)  # ground-truth target of each replica
        t_rep = np.tile(np.arange(t), n_gt)  # threshold index of each replica
        slice_rep = gt.slice_index[gi_rep] * t + t_rep
        pairs_g = np.zeros(0, dtype=np.int64)
        pairs_p = np.zeros(0, dtype=np.int64)
        if n_gt and n_pr:
            ri, pj, d = _candidate_pairs(gt.centroid[gi_rep], slice_rep, pr.centroid, pr.slice_index, h)
            matches = _resolve(ri, pj, d, slice_rep[ri], self.protocol)
            pairs_g, pairs_p = matches[:, 0], matches[:, 1]

        m_t = t_rep[pairs_g]
        matched = np.bincount(m_t, minlength=t)
        matched_by_size = np.bincount(m_t * k + gt_size[gi_rep[pairs_g]], minlength=t * k).reshape(t, k)
        pred_targets = np.bincount(pr_t, minlength=t)
        pred_area = np.bincount(pr_t, weights=pr.area, minlength=t)
        # Image class = largest size class among the image's targets (0 for an image without any).
        img_class = np.zeros(n, dtype=np.int64)
        np.maximum.at(img_class, gt.slice_index, gt_size)
        pr_tc = pr_t * k + img_class[pr.slice_index // t]  # (threshold, image class) of each prediction
        m_tc = m_t * k + img_class[gt.slice_index[gi_rep[pairs_g]]]
        if self.protocol == "reference":
            # Area-value quirk: drop every component whose area equals a matched area in its slice.
            key = pr.slice_index * (h * w + 1) + pr.area
            matched_keys = np.unique(key[pairs_p])
            at = np.minimum(np.searchsorted(matched_keys, key), max(matched_keys.size - 1, 0))
            dropped = (matched_keys[at] == key) if matched_keys.size else np.zeros(key.size, dtype=bool)
            fa_pixels = np.bincount(pr_t[~dropped], weights=pr.area[~dropped], minlength=t)
            fa_targets = np.bincount(pr_t[~dropped], minlength=t)
            fa_pixels_tc = np.bincount(pr_tc[~dropped], weights=pr.area[~dropped], minlength=t * k)
        else:
            fa_pixels = pred_area - np.bincount(m_t, weights=pr.area[pairs_p], minlength=t)
            fa_targets = pred_targets - matched
            fa_pixels_tc = np.bincount(pr_tc, weights=pr.area, minlength=t * k) - np.bincount(
                m_tc, weights=pr.area[pairs_p], minlength=t * k
            )
        images_by_class = np.bincount(img_class, minlength=k)
        st["images_by_class"] = st["images_by_class"] + images_by_class
        st["pixels_by_class"] = st["pixels_by_class"] + images_by_class * (h * w)
        st["targets_by_class"] = st["targets_by_class"] + np.bincount(img_class[gt.slice_index], minlength=k)
        st["matched_by_class"] = st["matched_by_class"] + np.bincount(m_tc, minlength=t * k).reshape(t, k)
        st["false_alarm_pixels_by_class"] = st["false_alarm_pixels_by_class"] + np.rint(fa_pixels_tc).astype(np.int64).reshape(t, k)

        st["num_images"] += n
        st["num_pixels"] += n * h * w
        st["num_targets"] += n_gt
        st["targets_by_size"] = st["targets_by_size"] + np.bincount(gt_size, minlength=k)
        st["matched"] = st["matched"] + matched
        st["matched_by_size"] = st["matched_by_size"] + matched_by_size
        st["false_alarm_pixels"] = st["false_alarm_pixels"] + np.rint(fa_pixels).astype(np.int64)
        st["false_alarm_targets"] = st["false_alarm_targets"] + fa_targets
        st["pred_targets"] = st["pred_targets"] + pred_targets

    def state(self) -> dict[str, Any]:
        return _copy_state(self._state)

    def merge_state(self, state: Mapping[str, Any], owner: str) -> None:
        _merge_into(self._state, state, owner)

    def pd(self) -> np.ndarray:
        """``(T,)`` Pd per threshold (NaN without ground-truth targets)."""
        n = self._state["num_targets"]
        return self._state["matched"] / n if n else np.full(self.thresholds.size, np.nan)

    def fa(self) -> np.ndarray:
        """``(T,)`` Fa (false-alarm pixels per image pixel) per threshold."""
        n = self._state["num_pixels"]
        return self._state["false_alarm_pixels"] / n if n else np.full(self.thresholds.size, np.nan)

    def subsets(self) -> dict[str, dict[str, Any]]:
        """Pd and Fa per threshold on each image subset of :data:`SIZE_SUBSETS`.

        Subset ``c`` holds the images whose targets are all of size class ``<= c`` (images without
        targets belong to every subset): ``point``, ``point+spot``, ``all``. Pd = matched targets /
        targets of those images, Fa = false-alarm pixels / pixels of those images.
        """
        st = self._state
        out: dict[str, dict[str, Any]] = {}
        for c, name in enumerate(SIZE_SUBSETS):
            n_t = int(st["targets_by_class"][: c + 1].sum())
            n_px = int(st["pixels_by_class"][: c + 1].sum())
            matched = st["matched_by_class"][:, : c + 1].sum(axis=1)
            fa_px = st["false_alarm_pixels_by_class"][:, : c + 1].sum(axis=1)
            out[name] = {
                "pd": (matched / n_t if n_t else np.full(self.thresholds.size, np.nan)).tolist(),
                "fa": (fa_px / n_px if n_px else np.full(self.thresholds.size, np.nan)).tolist(),
                "num_images": int(st["images_by_class"][: c + 1].sum()),
                "num_targets": n_t,
            }
        return out


class PdFaMetric:
    """Target-level probability of detection (Pd) and false-alarm rate (Fa) at one threshold.

    Args:
        threshold: ``scores > threshold`` is a predicted target pixel.
        protocol: ``"exact"`` or ``"reference"`` (see the module docstring).
    """

    def __init__(self, threshold: float = 0.5, protocol: Protocol = "exact") -> None:
        self.threshold = float(threshold)
        self.protocol: Protocol = protocol
        self._counts = _PdFaCounts([self.threshold], protocol)

    def reset(self) -> None:
        self._counts.reset()

    def state(self) -> dict[str, Any]:
        return self._counts.state()

    def merge_state(self, state: Mapping[str, Any]) -> None:
        self._counts.merge_state(state, type(self).__name__)

    def update(self, scores: Any, masks: Any) -> None:
        """Add a batch: ``scores``/``masks`` ``(N, H, W)``, ``(N, 1, H, W)`` or lists of ``(H, W)``."""
        self._counts.update_groups(prepare_batch(scores, masks, self.protocol))

    def _update_groups(self, groups: Sequence[ImageGroup]) -> None:
        self._counts.update_groups(groups)

    def compute(self) -> dict[str, float]:
        """Return ``pd``, ``fa``, per-size ``pd_<class>`` and counts (as floats).

        Keys: ``pd``, ``fa``, ``num_targets``, ``num_matched``, ``false_alarm_pixels``,
        ``false_alarm_targets``, ``num_pred_targets``, ``num_images``, ``num_pixels`` and, for each
        class in :data:`SIZE_CLASSES`, ``pd_<class>`` and ``num_targets_<class>``.
        """
        st = self._counts._state
        out = {
            "pd": float(self._counts.pd()[0]),
            "fa": float(self._counts.fa()[0]),
            "num_targets": float(st["num_targets"]),
            "num_matched": float(st["matched"][0]),
            "false_alarm_pixels": float(st["false_alarm_pixels"][0]),
            "false_alarm_targets": float(st["false_alarm_targets"][0]),
            "num_pred_targets": float(st["pred_targets"][0]),
            "num_images": float(st["num_images"]),
            "num_pixels": float(st["num_pixels"]),
        }
        for c, name in enumerate(SIZE_CLASSES):
            out[f"pd_{name}"] = _div(st["matched_by_size"][0, c], st["targets_by_size"][c])
            out[f"num_targets_{name}"] = float(st["targets_by_size"][c])
        return out


# --------------------------------------------------------------------------------------------------
# Curves


class ROCMetric:
    """Pixel ROC (TPR/FPR) and target Pd-Fa curves over a sweep of thresholds, in one pass.

    The pixel ROC counts, per threshold, the target and background pixels scoring above it (one
    vectorised pass per threshold over each batch); the Pd-Fa curve stacks the ``T`` binary maps of
    all images of a batch into one volume labelled in a single call (see :class:`PdFaMetric`).

    Args:
        thresholds: ``(T,)`` thresholds, sorted ascending (default: 0, 0.1, ..., 1 for probabilities).
        protocol: ``"exact"`` or ``"reference"``.
        pdfa: also accumulate the Pd-Fa curve (``T`` labellings per image; off for pixel ROC only).
    """

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        protocol: Protocol = "exact",
        pdfa: bool = True,
    ) -> None:
        th = np.linspace(0.0, 1.0, 11) if thresholds is None else np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if th.size == 0 or np.any(np.diff(th) <= 0):
            raise ValueError("ROCMetric: thresholds must be non-empty and strictly increasing")
        self.thresholds = th
        self.protocol: Protocol = protocol
        self.pdfa = bool(pdfa)
        self._counts = _PdFaCounts(th, protocol) if self.pdfa else None
        self._hist: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        t = self.thresholds.size
        self._hist = {
            "pos_above": np.zeros(t, dtype=np.int64),
            "neg_above": np.zeros(t, dtype=np.int64),
            "num_pos": 0,
            "num_neg": 0,
        }
        if self._counts is not None:
            self._counts.reset()

    def state(self) -> dict[str, Any]:
        out = _copy_state(self._hist)
        if self._counts is not None:
            out.update({f"pdfa_{k}": v for k, v in self._counts.state().items()})
        return out

    def merge_state(self, state: Mapping[str, Any]) -> None:
        hist = {k: v for k, v in state.items() if not k.startswith("pdfa_")}
        _merge_into(self._hist, hist, type(self).__name__)
        if self._counts is not None:
            pdfa = {k[len("pdfa_") :]: v for k, v in state.items() if k.startswith("pdfa_")}
            self._counts.merge_state(pdfa, type(self).__name__)

    def update(self, scores: Any, masks: Any) -> None:
        """Add a batch: ``scores``/``masks`` ``(N, H, W)``, ``(N, 1, H, W)`` or lists of ``(H, W)``."""
        self._update_groups(prepare_batch(scores, masks, self.protocol))

    def _update_groups(self, groups: Sequence[ImageGroup]) -> None:
        h = self._hist
        for g in groups:
            pos_scores = g.scores[g.masks]
            # One compare-and-count pass per threshold (in the scores' dtype, as ``scores > t``
            # elsewhere): for a few dozen thresholds this beats a searchsorted histogram by ~5x.
            for k, t in enumerate(self.thresholds.astype(g.scores.dtype)):
                above = np.count_nonzero(g.scores > t)
                pos = np.count_nonzero(pos_scores > t)
                h["pos_above"][k] += pos
                h["neg_above"][k] += above - pos
            h["num_pos"] += int(pos_scores.size)
            h["num_neg"] += int(g.scores.size - pos_scores.size)
        if self._counts is not None:
            self._counts.update_groups(groups)

    def compute(self) -> dict[str, Any]:
        """Curves as lists of floats, one entry per threshold, plus the area under the pixel ROC.

        Keys: ``thresholds``, ``tpr``, ``fpr``, ``precision`` (pixel level), ``auc`` (trapezoid over
        the points plus (0, 0) and (1, 1)) and, with ``pdfa``, ``pd``, ``fa`` and ``subsets``: the
        Pd-Fa curve on the image subsets ``point``, ``point+spot``, ``all`` (the DNANet paper's
        Fig. 9), ``{name: {"pd": [...], "fa": [...], "num_images", "num_targets"}}``.
        """
        tp = self._hist["pos_above"]
        fp = self._hist["neg_above"]
        npos, nneg = int(self._hist["num_pos"]), int(self._hist["num_neg"])
        tpr = tp / npos if npos else np.full(tp.shape, np.nan)
        fpr = fp / nneg if nneg else np.full(fp.shape, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        x = np.concatenate([[1.0], fpr, [0.0]])[::-1]
        y = np.concatenate([[1.0], tpr, [0.0]])[::-1]
        auc = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)) if npos and nneg else float("nan")
        out: dict[str, Any] = {
            "thresholds": self.thresholds.tolist(),
            "tpr": tpr.tolist(),
            "fpr": fpr.tolist(),
            "precision": precision.tolist(),
            "auc": auc,
        }
        if self._counts is not None:
            out["pd"] = self._counts.pd().tolist()
            out["fa"] = self._counts.fa().tolist()
            out["subsets"] = self._counts.subsets()
        return out


# --------------------------------------------------------------------------------------------------
# All together


class SirstMetrics:
    """The SIRST metrics together: pixel IoU/nIoU/P/R/F1, target Pd/Fa and optionally the curves.

    Args:
        threshold: ``scores > threshold`` is a predicted target pixel (0 for logits, 0.5 for
            probabilities).
        protocol: ``"exact"`` or ``"reference"`` (see the module docstring).
        roc_thresholds: thresholds of the ROC and Pd-Fa curves; ``None`` to skip the curves.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        protocol: Protocol = "exact",
        roc_thresholds: Sequence[float] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.threshold = float(threshold)
        self.protocol: Protocol = protocol
        self.segmentation = SegmentationMetric(threshold, protocol)
        self.pdfa = PdFaMetric(threshold, protocol)
        self.roc = ROCMetric(roc_thresholds, protocol) if roc_thresholds is not None else None

    def reset(self) -> None:
        self.segmentation.reset()
        self.pdfa.reset()
        if self.roc is not None:
            self.roc.reset()

    def update(self, scores: Any, masks: Any) -> None:
        """Add a batch: ``scores``/``masks`` ``(N, H, W)``, ``(N, 1, H, W)`` or lists of ``(H, W)``."""
        groups = prepare_batch(scores, masks, self.protocol)
        self.segmentation._update_groups(groups)
        self.pdfa._update_groups(groups)
        if self.roc is not None:
            self.roc._update_groups(groups)

    def state(self) -> dict[str, Any]:
        out = {"segmentation": self.segmentation.state(), "pdfa": self.pdfa.state()}
        if self.roc is not None:
            out["roc"] = self.roc.state()
        return out

    def merge_state(self, state: Mapping[str, Any]) -> None:
        if set(state) != set(self.state()):
            raise ValueError(f"SirstMetrics.merge_state: parts {sorted(state)} do not match {sorted(self.state())}")
        self.segmentation.merge_state(state["segmentation"])
        self.pdfa.merge_state(state["pdfa"])
        if self.roc is not None:
            self.roc.merge_state(state["roc"])

    def compute(self) -> dict[str, float]:
        """Flat dict of floats: ``iou``, ``niou``, ``pd``, ``fa``, ``precision``, ``recall``, ``f1``,
        ``num_images``, ``num_targets``, ``num_pixels``, ``pd_point``/``pd_spot``/``pd_extended``
        and the other counts of :meth:`PdFaMetric.compute` (Pd, Fa as fractions, Fa per pixel)."""
        out = self.segmentation.compute()
        out.update(self.pdfa.compute())
        return out

    def curves(self) -> dict[str, Any] | None:
        """The ROC and Pd-Fa curves (:meth:`ROCMetric.compute`), or ``None`` without ``roc_thresholds``."""
        return self.roc.compute() if self.roc is not None else None
