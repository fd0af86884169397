"""Target-level metrics: probability of detection (Pd) and false-alarm rate (Fa).

Ground-truth and predicted targets are the eight-connected components of the mask and of the
binary prediction (:mod:`sirst.targets`); they are matched by :mod:`sirst.metrics.matching`.
Pd = matched ground-truth targets / all ground-truth targets; Fa = pixels of the predicted
components that are not matched / all image pixels (the reference protocol's area-value quirk
aside). Pd is also counted per target-size class (:mod:`sirst.metrics.sizes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sirst.metrics.batch import ImageGroup, ThresholdMetric, _copy_state, _div, _merge_into
from sirst.metrics.matching import candidate_pairs, resolve_matches
from sirst.metrics.protocol import MetricProtocol, Protocol, get_protocol
from sirst.metrics.sizes import SIZE_CLASSES, SIZE_SUBSETS, size_class
from sirst.targets import ComponentStats, components_from_rows

__all__ = ["PdFaCounts", "PdFaMetric"]

# Upper bound on the elements of one stacked (images x thresholds x H x W) boolean volume.
_MAX_VOLUME = 1 << 24


class PdFaCounts:
    """Pd/Fa counts at ``T`` thresholds at once: one labelling of a ``(N*T, H, W)`` volume per group.

    Shared by :class:`PdFaMetric` (one threshold) and :class:`~sirst.metrics.curves.ROCMetric` (a sweep).
    """

    def __init__(self, thresholds: Sequence[float], protocol: Protocol) -> None:
        th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if th.size == 0:
            raise ValueError("at least one threshold is needed")
        self.thresholds = th
        self.protocol: MetricProtocol = get_protocol(protocol)
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
            ri, pj, d = candidate_pairs(gt.centroid[gi_rep], slice_rep, pr.centroid, pr.slice_index, h)
            matches = resolve_matches(ri, pj, d, slice_rep[ri], self.protocol)
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
        if self.protocol.area_value_quirk:
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


class PdFaMetric(ThresholdMetric):
    """Target-level probability of detection (Pd) and false-alarm rate (Fa) at one threshold.

    Arguments as :class:`~sirst.metrics.batch.ThresholdMetric` (threshold, protocol).
    """

    def __init__(self, threshold: float = 0.5, protocol: Protocol = "exact") -> None:
        super().__init__(threshold, protocol)
        self._counts = PdFaCounts([self.threshold], self.protocol)

    def reset(self) -> None:
        self._counts.reset()

    def state(self) -> dict[str, Any]:
        return self._counts.state()

    def merge_state(self, state: Mapping[str, Any]) -> None:
        self._counts.merge_state(state, type(self).__name__)

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
