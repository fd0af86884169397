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

``protocol="exact"`` (default, :data:`~sirst.metrics.protocol.EXACT`)
    Images are evaluated at their own size; Fa divides by the true pixel count of all images.
    Matching is one-to-one by component identity: each ground-truth target is matched to at most
    one predicted component and vice versa, with the largest possible number of matches, ties
    broken by smaller total centroid distance (``scipy.optimize.linear_sum_assignment``). nIoU
    averages the per-image IoU over the images whose union is not empty (an image with neither
    target nor prediction has no defined IoU and is skipped).

``protocol="reference"`` (:data:`~sirst.metrics.protocol.REFERENCE`)
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

Target-size classes (per-size Pd, size-subset curves): :mod:`sirst.metrics.sizes`.

Layout: :mod:`~sirst.metrics.protocol` (the two protocols as objects), :mod:`~sirst.metrics.batch`
(input checks, grouping by size), :mod:`~sirst.metrics.pixels` (IoU/nIoU/P/R/F1),
:mod:`~sirst.metrics.matching` (target matching), :mod:`~sirst.metrics.pdfa` (Pd/Fa),
:mod:`~sirst.metrics.curves` (ROC, Pd-Fa), :mod:`~sirst.metrics.combined` (:class:`SirstMetrics`).
The adaptive threshold of the classical baselines (Eq. 13) is :func:`sirst.classical.adaptive_threshold`.
"""

from sirst.metrics.batch import ImageGroup, prepare_batch
from sirst.metrics.combined import SirstMetrics
from sirst.metrics.curves import ROCMetric
from sirst.metrics.matching import MATCH_DISTANCE, ImageMatch, match_image, match_targets
from sirst.metrics.pdfa import PdFaMetric
from sirst.metrics.pixels import SegmentationMetric
from sirst.metrics.protocol import EXACT, PROTOCOLS, REFERENCE, REFERENCE_SIZE, MetricProtocol, Protocol, get_protocol
from sirst.metrics.sizes import POINT_MAX_AREA, SIZE_CLASSES, SIZE_SUBSETS, SPOT_MAX_AREA, size_class, size_class_name

__all__ = [
    "EXACT",
    "MATCH_DISTANCE",
    "POINT_MAX_AREA",
    "PROTOCOLS",
    "REFERENCE",
    "REFERENCE_SIZE",
    "SIZE_CLASSES",
    "SIZE_SUBSETS",
    "SPOT_MAX_AREA",
    "ImageGroup",
    "ImageMatch",
    "MetricProtocol",
    "PdFaMetric",
    "Protocol",
    "ROCMetric",
    "SegmentationMetric",
    "SirstMetrics",
    "get_protocol",
    "match_image",
    "match_targets",
    "prepare_batch",
    "size_class",
    "size_class_name",
]
