"""Checking an inference path's detections against a reference: the check frames (synthesized
infrared-like images, the network input) and :func:`same_detections` (targets of two logit stacks).
Used by ``sirst detect --precision auto`` (:mod:`sirst.detect.choose`), ``sirst bench`` and the tests."""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sirst.data.io import to_network_input
from sirst.targets import extract_targets


def synthetic_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthesized infrared-like images ``(size, size)`` float32 in [0, 1] with small targets."""
    if n <= 0:  # the synthesizer's imports (scipy.optimize through sirst.metrics) take 0.1 s
        return []
    from sirst.data.synth import SynthConfig, make_sample

    cfg = SynthConfig(size=size)
    return [make_sample(np.random.default_rng([seed, i]), cfg)[0].astype(np.float32) / 255.0 for i in range(n)]


def network_batch(images: Sequence[np.ndarray], in_channels: int = 3) -> torch.Tensor:
    """Grayscale images -> the normalised network input ``(N, in_channels, H, W)``."""
    return torch.stack([to_network_input(g, in_channels) for g in images])


def _targets(logits: np.ndarray) -> list:
    return extract_targets(logits > 0)


def _same_targets(a: list, b: list, tolerance: float) -> bool:
    """Same number of targets and a one-to-one pairing (in order of the first pixel, then greedily)
    with centroids closer than ``tolerance`` pixels."""
    if len(a) != len(b):
        return False
    left = list(b)
    for t in a:
        dist = [np.hypot(t.centroid[0] - u.centroid[0], t.centroid[1] - u.centroid[1]) for u in left]
        k = int(np.argmin(dist))
        if dist[k] >= tolerance:
            return False
        left.pop(k)
    return True


@dataclass(frozen=True)
class DetectionCheck:
    """How two sets of logits ``(N, H, W)`` compare as detections (components of logit > 0).

    ``identical``: every image has exactly the same targets (pixels, hence area, bbox, centroid).
    ``same_targets``: every image has the same number of targets, pairwise within 1 pixel
    (centroid); what reduced precision keeps while it flips a few border pixels.
    """

    identical: bool
    same_targets: bool
    images_differing: int  # images whose targets are not identical
    targets: int  # targets in the reference run
    pixels_differing: int  # pixels whose decision (logit > 0) differs
    max_abs_logit_diff: float

    def describe(self) -> str:
        if self.identical:
            return f"identical ({self.targets} targets)"
        if self.same_targets:
            return f"same {self.targets} targets, {self.pixels_differing} border px differ"
        return f"DIFFERENT in {self.images_differing} image(s) ({self.pixels_differing} px)"


def same_detections(reference: np.ndarray, other: np.ndarray, tolerance: float = 1.0) -> DetectionCheck:
    """Compare the detections of two logit stacks ``(N, H, W)`` (or ``(N, 1, H, W)``; boolean masks work
    as logits) image by image."""
    a = np.asarray(reference, dtype=np.float32).reshape(-1, *np.shape(reference)[-2:])
    b = np.asarray(other, dtype=np.float32).reshape(a.shape)
    differing, total, same = 0, 0, True
    for x, y in zip(a, b):
        tx, ty = _targets(x), _targets(y)
        total += len(tx)
        if not np.array_equal(x > 0, y > 0):
            differing += 1
            same = same and _same_targets(tx, ty, tolerance)
    return DetectionCheck(
        identical=differing == 0,
        same_targets=same,
        images_differing=differing,
        targets=total,
        pixels_differing=int(((a > 0) != (b > 0)).sum()),
        max_abs_logit_diff=float(np.abs(a - b).max()) if a.size else 0.0,
    )


def pack_masks(masks: np.ndarray) -> str:
    """Boolean masks ``(N, H, W)`` as one ASCII string (bits, zlib, base64) for a JSON file."""
    return base64.b64encode(zlib.compress(np.packbits(np.asarray(masks, bool)).tobytes(), 9)).decode()


def unpack_masks(text: str, shape: Sequence[int]) -> np.ndarray:
    """The masks of shape ``shape`` that :func:`pack_masks` wrote as ``text``."""
    bits = np.frombuffer(zlib.decompress(base64.b64decode(text)), np.uint8)
    return np.unpackbits(bits, count=int(np.prod(shape))).astype(bool).reshape(tuple(shape))
