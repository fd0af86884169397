"""Target-level matching: which predicted component detects which ground-truth target.

A ground-truth target is detected by a predicted component whose centroid lies at Euclidean
distance < :data:`MATCH_DISTANCE` pixels from its own; the protocol decides how conflicts are
resolved (maximum one-to-one, or greedy first-come as the public DNANet code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from sirst.metrics.batch import _div, _to_numpy
from sirst.metrics.protocol import MetricProtocol, Protocol, get_protocol
from sirst.targets import ComponentStats, component_stats, label_components

__all__ = ["MATCH_DISTANCE", "ImageMatch", "candidate_pairs", "match_image", "match_targets", "resolve_matches"]

#: A ground-truth target is detected by a predicted component whose centroid is closer than this.
MATCH_DISTANCE: float = 3.0


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
            ``"reference"``: greedy first-come in label order, as the public DNANet code (or a
            :class:`~sirst.metrics.protocol.MetricProtocol`).
        max_distance: a pair is a candidate when its distance is strictly below this.

    Returns:
        ``(M, 2)`` int64 pairs ``(gt_index, pred_index)``.
    """
    gt = np.asarray(gt_centroids, dtype=np.float64).reshape(-1, 2)
    pr = np.asarray(pred_centroids, dtype=np.float64).reshape(-1, 2)
    d = np.sqrt(((gt[:, None, :] - pr[None, :, :]) ** 2).sum(-1))
    gi, pj = np.nonzero(d < max_distance)
    return resolve_matches(gi, pj, d[gi, pj], np.zeros(len(gi), dtype=np.int64), get_protocol(protocol))


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
    pairs = match_targets(gt.centroid, pr.centroid, get_protocol(protocol))
    inter = int(np.count_nonzero(pred_b & mask_b))
    union = int(np.count_nonzero(pred_b | mask_b))
    return ImageMatch(gt, pr, gt_labels, pred_labels, pairs, inter, union)


# Above this many same-slice (ground truth, prediction) pairs, candidates come from a k-d tree.
_MAX_BRUTE_PAIRS = 1 << 22


def candidate_pairs(
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


def resolve_matches(
    gi: np.ndarray, pj: np.ndarray, dist: np.ndarray, group: np.ndarray, protocol: MetricProtocol
) -> np.ndarray:
    """Turn candidate pairs into matches; pairs of different ``group`` (image slices) never conflict.

    Args:
        gi, pj: ``(K,)`` candidate pair indices (ground truth, prediction), each in label order.
        dist: ``(K,)`` their centroid distances.
        group: ``(K,)`` slice id of each pair.
        protocol: its ``greedy_matching`` picks the rule.

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
            out.append(_resolve_one(gi_r[sel], pj_r[sel], d_r[sel], protocol.greedy_matching))
    return np.concatenate(out, axis=0).astype(np.int64)


def _resolve_one(gi: np.ndarray, pj: np.ndarray, dist: np.ndarray, greedy: bool) -> np.ndarray:
    """Matches among the conflicting candidate pairs of one image slice."""
    if greedy:
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
