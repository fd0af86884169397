"""Pixel-level metrics: IoU, nIoU, precision, recall and F1 of thresholded score maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sirst.metrics.batch import ImageGroup, ThresholdMetric, _copy_state, _div, _merge_into, _row_counts
from sirst.metrics.protocol import Protocol

__all__ = ["SegmentationMetric"]

# The eps of the public code's divisions.
_EPS = float(np.spacing(1))


class SegmentationMetric(ThresholdMetric):
    """IoU, nIoU, precision, recall and F1 of the thresholded score maps (pixel level).

    Arguments as :class:`~sirst.metrics.batch.ThresholdMetric` (threshold, protocol).
    """

    def __init__(self, threshold: float = 0.5, protocol: Protocol = "exact") -> None:
        super().__init__(threshold, protocol)
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
            if self.protocol.eps_ratios:
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
        if self.protocol.eps_ratios:
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
