"""Detection on one's own images: padding or tiling, batched inference, targets, CSV and overlays.

``Detector`` turns grayscale images of any size into probability maps and targets (8-connected
components of ``probability > threshold`` with centroid, area, bounding box and peak score).
``run_detection`` walks files, folders and videos and writes ``detections.csv``, ``masks/`` and
``overlays/``.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from scipy.special import expit

from sirst.data.io import IMAGE_EXTENSIONS, read_image, to_network_input, write_png
from sirst.optimize import in_channels_of, optimize_for_inference
from sirst.targets import Target, extract_targets

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".wmv")
CSV_COLUMNS = ("image", "target", "x", "y", "area", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "peak_score")


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
        tile: images whose side exceeds ``tile`` are processed in overlapping ``tile`` x ``tile``
            tiles (bounded memory) and the logits averaged over overlaps; ``0`` disables tiling.
        overlap: overlap of neighbouring tiles in pixels.
        batch_size: images (or tiles) per forward pass.
        optimize: run an ``nn.Module`` through :func:`sirst.optimize.optimize_for_inference`
            (a BN-folded, channels_last, inference-mode copy; logits equal to ~1e-5). Other
            callables are used as they are.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast (with ``optimize``).
        compile: ``torch.compile`` the network (with ``optimize``; slow first call per input size).
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device = "cpu",
        threshold: float = 0.5,
        tile: int = 512,
        overlap: int = 64,
        batch_size: int = 8,
        optimize: bool = True,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
        self.device = torch.device(device)
        self.divisor = int(getattr(model, "size_divisor", 1))
        self.in_channels = in_channels_of(model)
        if isinstance(model, nn.Module):
            if optimize:
                model = optimize_for_inference(model, self.device, precision=precision, compile=compile)
            else:
                model = model.to(self.device).eval()
        self.model = model
        self.threshold = threshold
        self.tile = tile - tile % self.divisor if tile else 0
        if tile and (self.tile <= 0 or overlap >= self.tile):
            raise ValueError(f"tile ({tile}) must be a multiple of {self.divisor} larger than overlap ({overlap})")
        self.overlap = overlap
        self.batch_size = max(1, batch_size)

    # -- low level -------------------------------------------------------------------------------

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(batch.to(self.device))
            if isinstance(out, (list, tuple)):
                out = out[-1]
            return out[:, 0].float().cpu()

    def _padded_input(self, gray: np.ndarray) -> torch.Tensor:
        h, w = gray.shape
        ph, pw = (-h) % self.divisor, (-w) % self.divisor
        return to_network_input(np.pad(gray, ((0, ph), (0, pw))), self.in_channels)

    def predict_logits(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Logit maps ``(H, W)`` float32 for grayscale images ``(H, W)`` in [0, 1] of any sizes."""
        results: list[np.ndarray | None] = [None] * len(images)
        pieces: list[tuple[int, int, int, torch.Tensor]] = []  # (image index, y, x, input)
        for k, gray in enumerate(images):
            h, w = gray.shape
            if self.tile and max(h, w) > self.tile:
                for y in tile_starts(h, self.tile, self.overlap):
                    for x in tile_starts(w, self.tile, self.overlap):
                        pieces.append((k, y, x, self._padded_input(gray[y : y + self.tile, x : x + self.tile])))
            else:
                pieces.append((k, 0, 0, self._padded_input(gray)))
        sums = [np.zeros(g.shape, np.float32) for g in images]
        counts = [np.zeros(g.shape, np.float32) for g in images]
        # Same-shape pieces share a forward pass.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for idx, piece in enumerate(pieces):
            by_shape.setdefault(tuple(piece[3].shape), []).append(idx)
        for idxs in by_shape.values():
            for start in range(0, len(idxs), self.batch_size):
                chunk = [pieces[i] for i in idxs[start : start + self.batch_size]]
                logits = self._forward(torch.stack([p[3] for p in chunk])).numpy()
                for (k, y, x, _), out in zip(chunk, logits):
                    th = min(sums[k].shape[0] - y, out.shape[0])
                    tw = min(sums[k].shape[1] - x, out.shape[1])
                    sums[k][y : y + th, x : x + tw] += out[:th, :tw]
                    counts[k][y : y + th, x : x + tw] += 1
        for k in range(len(images)):
            results[k] = sums[k] / counts[k]
        return results  # type: ignore[return-value]

    # -- public ----------------------------------------------------------------------------------

    def predict_scores(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probability maps ``(H, W)`` float32 in [0, 1] for grayscale images ``(H, W)``."""
        return [expit(logit).astype(np.float32) for logit in self.predict_logits(images)]

    def detect(self, images: list[np.ndarray]) -> list[list[Target]]:
        """Targets of each image (8-connected components above the threshold)."""
        return [extract_targets(s > self.threshold, s) for s in self.predict_scores(images)]


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


@dataclass
class InputItem:
    """One image to process: an id and a loader (deferred so errors are reported per item)."""

    id: str
    source: str
    load: Callable[[], np.ndarray]


def _video_frames(path: Path) -> Iterator[InputItem]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open video")
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
            yield InputItem(f"{path.stem}_f{index:06d}", f"{path}#{index}", lambda g=gray: g)
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise ValueError(f"{path}: video has no readable frames")


def iter_inputs(inputs: Iterable[str | os.PathLike], on_error: Callable[[str], None]) -> Iterator[InputItem]:
    """Images, folders (sorted, recursive) and videos as :class:`InputItem` s.

    Ids are file stems (``<video>_f000123`` for video frames), made unique with ``_2``, ``_3``...
    A missing path, an empty folder or an unreadable video is passed to ``on_error`` and skipped.
    """
    used: set[str] = set()

    def unique(stem: str) -> str:
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        return name

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                on_error(f"{path}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            for f in files:
                yield InputItem(unique(f.stem), str(f), lambda f=f: read_image(f))
        elif path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            try:
                for item in _video_frames(path):
                    item.id = unique(item.id)
                    yield item
            except ValueError as exc:
                on_error(str(exc))
        elif path.is_file():
            yield InputItem(unique(path.stem), str(path), lambda p=path: read_image(p))
        else:
            on_error(f"{path}: no such file or folder")


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def draw_overlay(gray: np.ndarray, targets: list[Target]) -> np.ndarray:
    """The image as 8-bit RGB ``(H, W, 3)`` with each target circled in red and numbered."""
    import cv2

    rgb = cv2.cvtColor(np.clip(gray * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    scale = max(1, round(max(gray.shape) / 512))
    for k, t in enumerate(targets):
        r0, c0, r1, c1 = t.bbox
        radius = int(max(r1 - r0, c1 - c0) / 2 + 5 * scale)
        centre = (int(round(t.centroid[1])), int(round(t.centroid[0])))
        cv2.circle(rgb, centre, radius, (255, 40, 40), scale, cv2.LINE_AA)
        cv2.putText(rgb, str(k), (centre[0] + radius, max(centre[1] - radius, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * scale, (255, 220, 0), 1, cv2.LINE_AA)
    return rgb


@dataclass
class DetectionSummary:
    """What :func:`run_detection` did."""

    out_dir: Path
    images: int = 0
    targets: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "detections.csv"


def run_detection(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    detector: Detector,
    write_overlays: bool = True,
    progress: bool = True,
) -> DetectionSummary:
    """Detect targets in every input and write ``detections.csv``, ``masks/``, ``overlays/``.

    An unreadable image (or missing path, empty folder, bad video) is reported by name on stderr and
    in ``errors.txt``, and the rest are processed; ``summary.images == 0`` means everything failed.
    CSV columns: image, target, x, y (centroid, x = column), area, bbox_x0, bbox_y0, bbox_x1,
    bbox_y1 (exclusive ends), peak_score (probability).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if write_overlays:
        (out / "overlays").mkdir(parents=True, exist_ok=True)
    summary = DetectionSummary(out)

    def report(message: str) -> None:
        summary.errors.append(message)
        print(f"sirst detect: skipped {message}", file=sys.stderr)

    items = iter_inputs(inputs, report)
    with open(summary.csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        bar = tqdm(desc="detect", unit="img", disable=not progress)
        while True:
            chunk: list[tuple[InputItem, np.ndarray]] = []
            for item in items:
                try:
                    chunk.append((item, item.load()))
                except (ValueError, FileNotFoundError) as exc:
                    # read_image's messages start with the path; prefix it when they do not.
                    message = str(exc)
                    report(message if message.startswith(item.source) else f"{item.source}: {message}")
                if len(chunk) == detector.batch_size:
                    break
            if not chunk:
                break
            scores = detector.predict_scores([g for _, g in chunk])
            for (item, gray), score in zip(chunk, scores):
                binary = score > detector.threshold
                targets = extract_targets(binary, score)
                for k, t in enumerate(targets):
                    r0, c0, r1, c1 = t.bbox
                    writer.writerow([item.id, k, f"{t.centroid[1]:.2f}", f"{t.centroid[0]:.2f}", t.area,
                                     c0, r0, c1, r1, f"{t.peak:.4f}"])
                write_png(out / "masks" / f"{item.id}.png", binary)
                if write_overlays:
                    write_png(out / "overlays" / f"{item.id}.png", draw_overlay(gray, targets))
                summary.images += 1
                summary.targets += len(targets)
            bar.update(len(chunk))
        bar.close()
    errors_file = out / "errors.txt"
    if summary.errors:
        errors_file.write_text("\n".join(summary.errors) + "\n")
    elif errors_file.exists():  # a stale list from an earlier run into the same folder would mislead
        errors_file.unlink()
    return summary
