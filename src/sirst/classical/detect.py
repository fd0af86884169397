"""Classical detection on images, image sequences (folders) and videos: ``sirst classical-detect``.

Each input is a sequence: a video's frames, a folder's images in name order, or one image. Every
frame's response map is normalised by its maximum and binarised like the evaluation does (Eq. 13 or a
fixed threshold, :mod:`sirst.classical.threshold`); with ``mslstipt`` a sequence of two frames or more
is decomposed together (the multi-frame form).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sirst.data.io import VIDEO_EXTENSIONS

__all__ = ["DetectSummary", "detect_sequences", "read_sequences"]


def read_sequences(inputs: list[str]) -> list[tuple[str, list[str], np.ndarray]]:
    """Each input as a sequence ``(name, frame ids, frames (N, H, W) float in [0, 1])``: a video's
    frames, a folder's images (sorted by name, one sequence), or one image file."""
    from sirst.data.io import IMAGE_EXTENSIONS, read_image

    out = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ValueError(f"{path}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            frames = [read_image(f) for f in files]
            if len({f.shape for f in frames}) != 1:
                raise ValueError(f"{path}: a sequence needs frames of one size, got {sorted({f.shape for f in frames})}")
            out.append((path.name, [f.stem for f in files], np.stack(frames)))
        elif path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            import cv2

            cap = cv2.VideoCapture(str(path))
            frames = []
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0)
            cap.release()
            if not frames:
                raise ValueError(f"{path}: cannot read any frame of the video")
            out.append((path.stem, [f"{path.stem}_f{k:06d}" for k in range(len(frames))], np.stack(frames)))
        elif path.is_file():
            out.append((path.stem, [path.stem], read_image(path)[None]))
        else:
            raise ValueError(f"{path}: no such file or folder")
    return out


@dataclass(frozen=True)
class DetectSummary:
    """What :func:`detect_sequences` wrote: frame and target counts, the CSV and the masks folder."""

    frames: int
    targets: int
    csv_path: Path
    masks_dir: Path


def detect_sequences(method: str, inputs: list[str], out: str | os.PathLike, threshold: str | float = "adaptive",
                     frames_per_tensor: int = 6, log: Callable[[str], None] = print) -> DetectSummary:
    """Run classical ``method`` on every input (see :func:`read_sequences`) and write
    ``OUT/detections.csv`` (``sequence, frame, target, x, y, area, peak_score``; x the column, y the row)
    and ``OUT/masks/<frame>.png``; ``log`` gets one line per sequence."""
    from sirst.classical import get_method, mslstipt_sequence
    from sirst.classical.threshold import binarise, normalise_response, parse_threshold
    from sirst.data.io import write_png
    from sirst.targets import extract_targets

    fn = get_method(method)
    fixed = parse_threshold(threshold)
    sequences = read_sequences(inputs)
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    n_frames = n_targets = 0
    with open(out / "detections.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["sequence", "frame", "target", "x", "y", "area", "peak_score"])
        for name, ids, frames in sequences:
            start = time.perf_counter()
            if method.lower() == "mslstipt" and len(frames) >= 2:  # the multi-frame form
                maps = mslstipt_sequence(frames, frames_per_tensor=frames_per_tensor)
            else:
                maps = np.stack([fn(f) for f in frames])
            log(f"{name}: {len(frames)} frame(s), {method} in {time.perf_counter() - start:.1f} s")
            for fid, response in zip(ids, maps):
                score = normalise_response(response)
                binary = binarise(score, fixed)
                write_png(out / "masks" / f"{fid}.png", binary.astype(np.uint8) * 255)
                for k, t in enumerate(extract_targets(binary, score)):
                    wr.writerow([name, fid, k, f"{t.centroid[1]:.2f}", f"{t.centroid[0]:.2f}", t.area, f"{t.peak:.4f}"])
                    n_targets += 1
                n_frames += 1
    return DetectSummary(n_frames, n_targets, out / "detections.csv", out / "masks")
