"""All SIRST metrics of one evaluation together, fed by one pass over the batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sirst.metrics.batch import prepare_batch
from sirst.metrics.curves import ROCMetric
from sirst.metrics.pdfa import PdFaMetric
from sirst.metrics.pixels import SegmentationMetric
from sirst.metrics.protocol import MetricProtocol, Protocol, get_protocol

__all__ = ["SirstMetrics"]


class SirstMetrics:
    """The SIRST metrics together: pixel IoU/nIoU/P/R/F1, target Pd/Fa and optionally the curves.

    Args:
        threshold: ``scores > threshold`` is a predicted target pixel (0 for logits, 0.5 for
            probabilities).
        protocol: ``"exact"``, ``"reference"`` or a :class:`~sirst.metrics.protocol.MetricProtocol`
            (see :mod:`sirst.metrics`).
        roc_thresholds: thresholds of the ROC and Pd-Fa curves; ``None`` to skip the curves.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        protocol: Protocol = "exact",
        roc_thresholds: Sequence[float] | None = None,
    ) -> None:
        self.threshold = float(threshold)
        self.protocol: MetricProtocol = get_protocol(protocol)
        self.segmentation = SegmentationMetric(threshold, self.protocol)
        self.pdfa = PdFaMetric(threshold, self.protocol)
        self.roc = ROCMetric(roc_thresholds, self.protocol) if roc_thresholds is not None else None

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
