"""The Detector: grayscale images of any size -> probability maps and targets (padding or tiling,
batched inference, the confidence gate, 8-connected components of ``probability > threshold`` with
centroid, area, bounding box and peak score).

Memory is bounded by pixels, not by image count: one forward pass holds at most ``max_pixels``
input pixels (DNANet needs ~1.75 GB of activations per million pixels on the CPU), and frames
larger than that are tiled. Frames up to ``max_pixels`` (512x512 by default) run whole and match
``sirst eval`` exactly. Tiled frames do not: DNANet's channel attention pools over its whole input,
so a tile sees other statistics than the frame, and detections close to the threshold can appear,
vanish or split. Tolerance, tested on cluttered mosaics of the sample images with the bundled
``nuaa`` weights (centroids < 3 px apart count as the same target): 384x384 in 256-pixel tiles,
13 of 14 targets agree both ways and 37 of 301 mask pixels differ; 768x768 in the default
512-pixel tiles, 72 of 80 targets found plus 1 extra, 53 of 829 mask pixels differ; in 720-pixel
tiles (``--max-pixels 524288``), all 80 found plus 2 extra, 8 of 829 pixels differ. With the default
``general`` weights, 384x384 in 256-pixel tiles: 4 of 5 targets agree both ways, 8 of 275 mask pixels
differ. Larger tiles agree better: ``--max-pixels`` trades memory for agreement.

Coordinates: ``x`` is the column and ``y`` the row, in pixels from the centre of the top-left
pixel; bounding boxes are ``[x0, x1) x [y0, y1)`` (start inclusive, end exclusive).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from scipy.special import expit

from sirst.data.io import to_network_input
from sirst.detect.optimize import OptimizedModel, in_channels_of, optimize_for_inference
from sirst.targets import Target, extract_targets
from sirst.verify import Verifier, confirm_targets

#: Input pixels per forward pass (N x H x W after padding): DNANet peaks at ~1.75 GB of activations per
#: million pixels on the CPU (ONNX Runtime ~1.9 GB), so 2**18 keeps `sirst detect` under 1.5 GB RSS
#: for any frame size: a 3840x2160 frame peaks at 0.92 GB (torch) and 1.13 GB (ONNX Runtime); 2**19
#: measured 1.49 GB and 1.76 GB.
DEFAULT_MAX_PIXELS = 2**18


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


class Detector:
    """Run a segmentation network on grayscale images of any size.

    Args:
        model: a network (``nn.Module`` in eval mode) or any callable mapping a normalised
            ``(N, C, H, W)`` tensor to logits ``(N, 1, H, W)``, with an optional ``size_divisor``.
        device: where the network runs.
        threshold: probability above which a pixel is a target (0.5 = logit 0).
        tile: ``None`` (default): frames of up to ``max_pixels`` pixels run whole, larger ones in
            the largest square tiles that fit ``max_pixels``; an int: frames whose side exceeds
            ``tile`` run in ``tile`` x ``tile`` tiles; ``0``: never tile. Logits are averaged
            where tiles overlap.
        overlap: overlap of neighbouring tiles in pixels.
        batch_size: most images (or tiles) per forward pass.
        max_pixels: most input pixels per forward pass (the batch is cut by pixels as well as by
            count); a single frame larger than this runs alone only when tiling is off.
        optimize: run an ``nn.Module`` through :func:`sirst.detect.optimize.optimize_for_inference`
            (a BN-folded, channels_last, inference-mode copy; logits equal to ~1e-5). Other
            callables are used as they are.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast (with ``optimize``).
        compile: ``torch.compile`` the network (with ``optimize``; slow first call per input size).
        min_peak: per-target confidence gate, a logit: targets (components of ``logit > 0``) whose
            peak logit is not above it are dropped from every output
            (:func:`sirst.targets.gate_weak_components`). ``None`` (default): the gate bundled with
            the weights (``model.min_peak_logit``, set by ``model_from_checkpoint``; else 0, no gate).
        verifier: the second stage (:class:`sirst.verify.Verifier`) that drops the targets passing
            the gate whose image and logits around the peak look like clutter. ``None`` (default):
            the weights' own (``model.verifier``, set by ``model_from_checkpoint``), if any.
        verify: ``False`` runs without any verifier (the network's targets, gated by ``min_peak``).
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device = "cpu",
        threshold: float = 0.5,
        tile: int | None = None,
        overlap: int = 64,
        batch_size: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        optimize: bool = True,
        precision: str = "fp32",
        compile: bool = False,
        min_peak: float | None = None,
        verifier: Verifier | None = None,
        verify: bool = True,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
        if batch_size < 1 or max_pixels < 1 or overlap < 0:
            raise ValueError(f"batch_size and max_pixels must be >= 1 and overlap >= 0, got {batch_size}, "
                             f"{max_pixels}, {overlap}")
        self.divisor = int(getattr(model, "size_divisor", 1))
        self.max_pixels = int(max_pixels)
        self.auto_tile = tile is None
        if tile is None:
            side = math.isqrt(self.max_pixels)
            tile = side - side % self.divisor
        self.tile = tile - tile % self.divisor if tile else 0
        if tile and (self.tile <= 0 or overlap >= self.tile):
            what = f"max_pixels {max_pixels} gives tiles of {self.tile}" if self.auto_tile else f"tile ({tile})"
            raise ValueError(f"{what}: tiles must be a multiple of {self.divisor} larger than overlap ({overlap})")
        self.device = torch.device(device)
        self.in_channels = in_channels_of(model)
        # Read before optimize_for_inference replaces the model by a copy.
        self.min_peak = float(getattr(model, "min_peak_logit", 0.0) if min_peak is None else min_peak)
        self.verifier = (verifier or getattr(model, "verifier", None)) if verify else None
        if isinstance(model, nn.Module) and not isinstance(model, OptimizedModel):
            if optimize:
                model = optimize_for_inference(model, self.device, precision=precision, compile=compile)
            else:
                model = model.to(self.device).eval()
        self.model = model
        self.threshold = threshold
        self.overlap = overlap
        self.batch_size = batch_size
        #: How the network runs (e.g. the inference path chosen by ``sirst detect``), for the outputs.
        self.description: dict[str, object] = {"path": "torch-" + precision if isinstance(model, nn.Module)
                                               else type(model).__name__, "batch_size": batch_size}

    # -- low level -------------------------------------------------------------------------------

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(batch.to(self.device))
            if isinstance(out, (list, tuple)):
                out = out[-1]
            return out[:, 0].float().cpu()

    def _padded_shape(self, h: int, w: int) -> tuple[int, int]:
        return h + (-h) % self.divisor, w + (-w) % self.divisor

    def _padded_input(self, gray: np.ndarray) -> torch.Tensor:
        h, w = gray.shape
        ph, pw = self._padded_shape(h, w)
        return to_network_input(np.pad(gray, ((0, ph - h), (0, pw - w))), self.in_channels)

    def needs_tiles(self, h: int, w: int) -> bool:
        """Whether an ``h`` x ``w`` frame is processed in tiles."""
        if not self.tile:
            return False
        if self.auto_tile:
            ph, pw = self._padded_shape(h, w)
            return ph * pw > self.max_pixels
        return max(h, w) > self.tile

    def _windows(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """``(y, x, height, width)`` of the pieces an ``h`` x ``w`` frame is run in."""
        if not self.needs_tiles(h, w):
            return [(0, 0, h, w)]
        return [(y, x, min(self.tile, h), min(self.tile, w))
                for y in tile_starts(h, self.tile, self.overlap) for x in tile_starts(w, self.tile, self.overlap)]

    def predict_logits(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Logit maps ``(H, W)`` float32 for grayscale images ``(H, W)`` in [0, 1] of any sizes.

        Pieces of the same padded shape share forward passes of at most ``batch_size`` pieces and
        ``max_pixels`` pixels; inputs are built only when their batch runs (bounded memory). Targets
        that fail the confidence gate (``min_peak``) or the verifier come back at ``sirst.targets.GATED_LOGIT``.
        """
        sums = [np.zeros(g.shape, np.float32) for g in images]
        counts = [np.zeros(g.shape, np.float32) for g in images]
        by_shape: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = {}
        for k, gray in enumerate(images):
            for y, x, th, tw in self._windows(*gray.shape):
                by_shape.setdefault(self._padded_shape(th, tw), []).append((k, y, x, th, tw))
        for (ph, pw), pieces in by_shape.items():
            per_pass = max(1, min(self.batch_size, self.max_pixels // (ph * pw)))
            for start in range(0, len(pieces), per_pass):
                chunk = pieces[start : start + per_pass]
                batch = torch.stack([self._padded_input(images[k][y : y + th, x : x + tw]) for k, y, x, th, tw in chunk])
                logits = self._forward(batch).numpy()
                del batch
                for (k, y, x, th, tw), out in zip(chunk, logits):
                    sums[k][y : y + th, x : x + tw] += out[:th, :tw]
                    counts[k][y : y + th, x : x + tw] += 1
        for k in range(len(images)):
            sums[k] /= counts[k]
        # The gate and the verifier run on the stitched frame, so a target cut by tile borders is judged whole.
        return [confirm_targets(s, image, self.min_peak, self.verifier) for s, image in zip(sums, images)]

    # -- public ----------------------------------------------------------------------------------

    def predict_scores(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probability maps ``(H, W)`` float32 in [0, 1] for grayscale images ``(H, W)``."""
        return [expit(logit).astype(np.float32) for logit in self.predict_logits(images)]

    def detect(self, images: list[np.ndarray], keep_scores: bool = False) -> list[list[Target]] | list[Detection]:
        """Targets of each image (8-connected components above the threshold); with ``keep_scores``,
        a :class:`Detection` per image (its targets, probability map and mask)."""
        found = []
        for score in self.predict_scores(images):
            mask = score > self.threshold
            targets = extract_targets(mask, score)
            found.append(Detection(targets, score, mask) if keep_scores else targets)
        return found


@dataclass
class Detection:
    """What :meth:`Detector.detect` finds in one image with ``keep_scores``: the targets, the
    probability map ``(H, W)`` float32 and the mask ``scores > threshold``."""

    targets: list[Target]
    scores: np.ndarray
    mask: np.ndarray
