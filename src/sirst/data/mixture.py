"""Training sources beyond one labelled split: real target-free frames and synthesized hard samples.

A general-purpose detector has to stay silent on the clutter of scenes it never saw (cloud and
coast edges, HUD graphics, buildings and lamps, hot pixels, sensor noise). Two datasets supply
that, both yielding the items of :class:`sirst.data.SirstDataset` (``image`` (C, H, W) normalised,
``mask`` (1, H, W) in {0, 1}, ``id``, ``size``) so they mix with labelled splits in one
``ConcatDataset``:

* :class:`NegativeFrames`: crops of real frames that contain no target, at several scales (a large
  frame is seen by ``sirst detect`` at its native resolution, so training crops must not all be
  shrunk the way the paper's long-side rescale shrinks them). Masks are empty.
* :class:`SynthStream`: samples drawn by the synthesizer on the fly, half of them with hard-negative
  clutter (:func:`sirst.data.synth.make_hard_sample`), optionally composited onto real target-free
  frames, so targets are also learnt in real clutter.

Like ``SirstDataset`` in train mode, item ``i`` of epoch ``e`` is a pure function of
``(seed, e, i)``: training stays reproducible and exactly resumable.

A source is written as ``ROOT`` or ``ROOT:IDS`` where ``IDS`` is a split file (relative to ROOT or
absolute) listing the frames to use; without it, ``ROOT/all.txt`` or every image in ``ROOT/images``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from torch.utils.data import Dataset

from sirst.data.dataset import make_item
from sirst.data.io import IMAGE_EXTENSIONS, read_image

# Decorrelate the streams of the different sources that share one seed and epoch.
_NEGATIVE_STREAM = 7_001
_SYNTH_STREAM = 7_002


def parse_source(spec: str) -> tuple[Path, Path | None]:
    """``"ROOT"`` or ``"ROOT:IDS"`` -> (root, ids file or None). ``IDS`` may be relative to ROOT."""
    root, _, ids = str(spec).partition(":")
    root_path = Path(root)
    if not ids:
        return root_path, None
    ids_path = Path(ids)
    if not ids_path.is_absolute() and not ids_path.is_file():
        ids_path = root_path / ids
    return root_path, ids_path


def frame_paths(spec: str) -> list[Path]:
    """The image files a source spec names; a clear error for a missing folder, file or id."""
    from sirst.data.dataset import find_file, read_ids

    root, ids_file = parse_source(spec)
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder (source {spec!r})")
    if ids_file is None and (root / "all.txt").is_file():
        ids_file = root / "all.txt"
    if ids_file is None:
        paths = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    else:
        if not ids_file.is_file():
            raise FileNotFoundError(f"{ids_file}: ids file of source {spec!r} not found")
        paths = []
        for i in read_ids(ids_file):
            p = find_file(images, i)
            if p is None:
                raise FileNotFoundError(f"{ids_file}: id {i!r} has no image in {images}")
            paths.append(p)
    if not paths:
        raise FileNotFoundError(f"{root}: source {spec!r} names no images")
    return paths


def _scaled_crop(
    frame: np.ndarray,
    rng: np.random.Generator,
    crop: int,
    scale: tuple[float, float],
    around: tuple[int, int] | None = None,
) -> np.ndarray:
    """A ``crop`` x ``crop`` window of ``frame`` (H, W) seen at a log-uniform scale in ``scale``
    (2 = enlarged twice); frames smaller than the window are zero-padded, as the paper pads. With
    ``around`` = (row, col) the window holds that pixel at a random place inside its middle 3/4."""
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    h, w = frame.shape
    side = max(8, int(round(crop / s)))
    ch, cw = min(side, h), min(side, w)
    if around is None:
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
    else:
        y = int(np.clip(around[0] - int(rng.integers(ch // 8, ch - ch // 8 + 1)), 0, h - ch))
        x = int(np.clip(around[1] - int(rng.integers(cw // 8, cw - cw // 8 + 1)), 0, w - cw))
    window = frame[y : y + ch, x : x + cw].astype(np.float32)
    oh, ow = max(1, int(round(ch * crop / side))), max(1, int(round(cw * crop / side)))
    interp = cv2.INTER_AREA if oh < ch else cv2.INTER_LINEAR
    window = cv2.resize(window, (ow, oh), interpolation=interp)
    out = np.zeros((crop, crop), np.float32)
    out[: min(oh, crop), : min(ow, crop)] = window[:crop, :crop]
    return out


def bright_spots(frame: np.ndarray, count: int = 32, size: int = 9, spacing: int = 16) -> np.ndarray:
    """The ``count`` strongest small bright structures of a uint8 frame ``(H, W)``: ``(K, 2)`` int rows/cols.

    Local maxima (at least ``spacing`` px apart) of the white top-hat with a ``size`` x ``size``
    ellipse: what is brighter than its surroundings and smaller than the element, which is what a
    small-target detector is tempted by (lamps, lit windows, glints, hot pixels). Zero responses
    are left out, so a flat frame has none.
    """
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    response = cv2.morphologyEx(np.ascontiguousarray(frame, dtype=np.uint8), cv2.MORPH_TOPHAT, element)
    response = response.astype(np.float32)
    peaks = (response == cv2.dilate(response, np.ones((spacing, spacing), np.uint8))) & (response > 0)
    # A flat-topped blob is a plateau of equal maxima: one spot per plateau, at its centroid.
    n, labels, _, centroids = cv2.connectedComponentsWithStats(peaks.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros((0, 2), np.int64)
    strength = ndimage.maximum(response, labels, np.arange(1, n))
    order = np.argsort(-np.asarray(strength), kind="stable")[:count]
    return np.floor(centroids[1:][order][:, ::-1] + 0.5).astype(np.int64)


def read_mined_spots(paths: list[str] | list[Path]) -> dict[str, np.ndarray]:
    """Places where a detector fired on target-free frames, keyed by frame id: ``(K, 2)`` int rows/cols.

    Each file is a CSV with at least the columns ``image``, ``x`` (column) and ``y`` (row), such as
    the ``detections.csv`` that ``sirst detect FRAMES --min-peak 0`` writes: every detection on a
    target-free frame is a false alarm worth training against (hard-negative mining). Rows without
    a target (a frame with no detection) are skipped.
    """
    import csv

    found: dict[str, list[tuple[int, int]]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file of mined false alarms not found")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"image", "x", "y"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: no column(s) {', '.join(sorted(missing))} (need image, x, y)")
            for line, row in enumerate(reader, start=2):
                if not row["x"]:
                    continue
                try:
                    x, y = float(row["x"]), float(row["y"])
                except ValueError:
                    raise ValueError(f"{path}: line {line}: x/y are not numbers") from None
                found.setdefault(Path(row["image"]).stem, []).append((int(round(y)), int(round(x))))
    return {k: np.asarray(v, np.int64).reshape(-1, 2) for k, v in found.items()}


def _flip_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's photometric part: horizontal flip p=0.5, Gaussian blur sigma U[0,1) with p=0.5."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        sigma = float(rng.random())
        if sigma > 0.05:
            image = cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.ascontiguousarray(image, dtype=np.float32)


class _FrameCache:
    """Decoded frames kept as uint8 (a 1280x1024 frame is 1.3 MB) so each is decoded once per process."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._frames: dict[int, np.ndarray] = {}
        self._spots: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, k: int) -> np.ndarray:
        if k not in self._frames:
            self._frames[k] = np.round(read_image(self.paths[k]) * 255).astype(np.uint8)
        return self._frames[k]

    def spots(self, k: int) -> np.ndarray:
        """:func:`bright_spots` of frame ``k``, computed once."""
        if k not in self._spots:
            self._spots[k] = bright_spots(self.get(k))
        return self._spots[k]

    def __getstate__(self) -> dict[str, Any]:  # workers decode for themselves
        return {"paths": self.paths, "_frames": {}, "_spots": {}}


class NegativeFrames(Dataset):
    """Crops of real target-free frames: hard negatives with empty masks.

    Args:
        source: ``ROOT`` or ``ROOT:IDS`` (see the module docstring).
        length: crops per epoch (train) or in all (eval); frames are visited in turn.
        mode: ``"train"``: a fresh random crop per (epoch, index) at a log-uniform scale in
            ``scale``, flipped and blurred as the paper augments; ``"eval"``: fixed crops at the
            native scale (the same every call), for validation.
        crop_size: side of the square crops.
        hard_p: in train mode, the fraction of crops placed on one of the frame's
            :func:`bright_spots` rather than anywhere: random crops of a large frame rarely hold
            the few lamps and glints a detector fires on.
        mined: places a detector fired on, by frame id (:func:`read_mined_spots`): the hard crops of
            a frame that has some sit on them instead of on its bright spots (a detector's false
            alarms on real clutter are mostly not the strongest bright spots).
    """

    def __init__(
        self,
        source: str,
        length: int,
        crop_size: int = 256,
        scale: tuple[float, float] = (0.5, 2.0),
        mode: str = "train",
        in_channels: int = 3,
        seed: int = 0,
        hard_p: float = 0.0,
        mined: dict[str, np.ndarray] | None = None,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if length < 1:
            raise ValueError(f"{source}: length must be >= 1, got {length}")
        if not 0.0 <= hard_p <= 1.0:
            raise ValueError(f"{source}: hard_p must be in [0, 1], got {hard_p}")
        self.frames = _FrameCache(frame_paths(source))
        self.length, self.crop_size, self.scale, self.mode = int(length), int(crop_size), scale, mode
        self.in_channels, self.seed, self.epoch, self.hard_p = in_channels, seed, 0, float(hard_p)
        mined = mined or {}
        self.mined = [mined.get(p.stem, np.zeros((0, 2), np.int64)) for p in self.frames.paths]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        k = index % len(self.frames)
        frame = self.frames.get(k).astype(np.float32) / 255.0
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, self.epoch, index, _NEGATIVE_STREAM])
            around = None
            if self.hard_p > 0 and rng.random() < self.hard_p:  # no extra draw at 0: old runs resume exactly
                # Mined places, where a model really erred, replace the model-free proxy where there are some.
                spots = self.mined[k] if len(self.mined[k]) else self.frames.spots(k)
                if len(spots):
                    around = tuple(int(v) for v in spots[int(rng.integers(0, len(spots)))])
            image = _flip_blur(_scaled_crop(frame, rng, self.crop_size, self.scale, around), rng)
        else:
            rng = np.random.default_rng([self.seed, index, _NEGATIVE_STREAM])
            image = _scaled_crop(frame, rng, self.crop_size, (1.0, 1.0))
        mask = np.zeros(image.shape, bool)
        return make_item(image, mask, f"{self.frames.paths[k].stem}#{index}", self.in_channels)


class SynthStream(Dataset):
    """Synthesized samples drawn on the fly: ``length`` per epoch, new ones every epoch.

    A fraction ``hard_p`` carries hard-negative clutter (half of those with no target at all); with
    ``backgrounds`` (a source spec of real target-free frames) a fraction ``real_p`` of the samples is
    composited onto scaled crops of those frames instead of a procedural background.
    """

    def __init__(
        self,
        length: int,
        crop_size: int = 256,
        hard_p: float = 0.5,
        backgrounds: str | None = None,
        real_p: float = 0.5,
        in_channels: int = 3,
        seed: int = 0,
    ) -> None:
        if length < 1:
            raise ValueError(f"synthesized samples per epoch must be >= 1, got {length}")
        self.length, self.crop_size, self.hard_p, self.real_p = int(length), int(crop_size), hard_p, real_p
        self.frames = _FrameCache(frame_paths(backgrounds)) if backgrounds else None
        self.in_channels, self.seed, self.epoch = in_channels, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        from sirst.data.synth import SynthConfig, make_hard_sample, make_sample

        rng = np.random.default_rng([self.seed, self.epoch, index, _SYNTH_STREAM])
        config = SynthConfig(size=self.crop_size)
        background = None
        if self.frames is not None and rng.random() < self.real_p:
            frame = self.frames.get(int(rng.integers(0, len(self.frames)))).astype(np.float32) / 255.0
            background = np.clip(_scaled_crop(frame, rng, self.crop_size, (0.5, 2.0)), 0.0, 1.0)
        if rng.random() < self.hard_p:
            image8, mask, _ = make_hard_sample(rng, config, negative_p=0.5, background=background)
        else:
            image8, mask, _ = make_sample(rng, config, background=background)
        image = image8.astype(np.float32) / 255.0
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return make_item(np.ascontiguousarray(image), mask, f"synth-{self.epoch}-{index}", self.in_channels)


def source_label(spec: str | os.PathLike) -> str:
    """A short name for a source in logs: the folder name plus the ids file, if any."""
    root, ids = parse_source(str(spec))
    return root.name + (f":{ids.name}" if ids is not None else "")
