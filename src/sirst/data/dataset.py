"""The standard SIRST dataset layout and a torch ``Dataset`` over it.

Layout::

    ROOT/images/<id>.<ext>
    ROOT/masks/<id>.<ext>          (or <id>_pixels0.png, as NUAA-SIRST names them)
    ROOT/<split>/train.txt|trainval.txt and test.txt   (e.g. ROOT/50_50/, the DNANet protocol)
    ROOT/trainval.txt and test.txt                     (e.g. NUAA-SIRST's ACM/ALCNet protocol)

Split files hold one id per line, without extension.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sirst.data.io import IMAGE_EXTENSIONS, image_size, read_image, read_mask, to_network_input
from sirst.data.transforms import pad_to_multiple, resize_reference, train_augment

SUBSETS = ("train", "test")


@dataclass(frozen=True)
class SplitFiles:
    """The split files of a dataset: ``train`` (train.txt or trainval.txt) and ``test``."""

    name: str
    train: Path
    test: Path


def resolve_split(root: str | os.PathLike, split: str = "auto") -> SplitFiles:
    """Find the split files. ``split="auto"`` prefers ``50_50/``, then root-level files;
    ``split="root"`` selects the root-level files (``ROOT/train.txt|trainval.txt``, ``ROOT/test.txt``).

    Raises ``FileNotFoundError`` listing where it looked.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    # "root" (the name SplitFiles reports for them) or "" select the root-level split files.
    candidates = ["50_50", ""] if split == "auto" else ["" if split in ("root", "") else split]
    looked = []
    for name in candidates:
        folder = root / name if name else root
        for train_name in ("train.txt", "trainval.txt"):
            train, test = folder / train_name, folder / "test.txt"
            looked.append(str(train))
            if train.is_file() and test.is_file():
                return SplitFiles(name or "root", train, test)
    raise FileNotFoundError(f"{root}: no split files for split {split!r} (looked for {', '.join(looked)} with test.txt)")


def read_ids(path: Path) -> list[str]:
    """Ids from a split file: one per line, blank lines and CR ignored, duplicates rejected."""
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})
    if dupes:
        raise ValueError(f"{path}: duplicate ids {dupes[:5]}")
    return ids


#: NUAA-SIRST names the mask of image ``<id>`` ``<id>_pixels0.png``; every mask lookup also accepts it.
MASK_ID_SUFFIX = "_pixels0"
MASK_SUFFIXES: tuple[str, ...] = ("", MASK_ID_SUFFIX)


def find_file(folder: Path, stem: str, suffixes: tuple[str, ...] = ("",)) -> Path | None:
    """``folder/<stem><suffix><ext>`` for the first suffix and image extension that exists."""
    for suffix in suffixes:
        for ext in IMAGE_EXTENSIONS:
            p = folder / f"{stem}{suffix}{ext}"
            if p.is_file():
                return p
    return None


def locate_pairs(root: Path, ids: list[str], split_file: Path) -> list[tuple[str, Path, Path]]:
    """``(id, image path, mask path)`` for each id; errors name the split file and the id."""
    pairs = []
    for i in ids:
        img = find_file(root / "images", i)
        if img is None:
            raise FileNotFoundError(f"{split_file}: id {i!r} has no image in {root / 'images'}")
        mask = find_file(root / "masks", i, MASK_SUFFIXES)
        if mask is None:
            raise FileNotFoundError(f"{img}: image has no mask ({root / 'masks'}/{i}.png or {i}{MASK_ID_SUFFIX}.png)")
        pairs.append((i, img, mask))
    return pairs


def load_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Image float32 (H, W) in [0, 1] and mask bool (H, W); a size mismatch is an error."""
    image = read_image(image_path)
    mask = read_mask(mask_path)
    if image.shape != mask.shape:
        raise ValueError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                         f"{image_path.name} size {image.shape[1]}x{image.shape[0]} (WxH)")
    return image, mask


class SirstDataset(Dataset):
    """Images and masks of one subset of a dataset in the standard layout.

    Args:
        root: dataset folder.
        split: split folder name (``"50_50"``), ``"root"`` for root-level files, or ``"auto"``.
        subset: ``"train"`` or ``"test"``.
        mode: ``"train"`` (augmented ``crop_size`` crops) or ``"eval"`` (native size padded to a
            multiple of 16 with ``protocol="exact"``; ``base_size`` square with ``"reference"``).
        seed: seed of the augmentation; with :meth:`set_epoch`, sample ``i`` of epoch ``e`` is
            augmented with ``numpy.random.default_rng([seed, e, i])``.

    Items: ``{"image": (C, H, W) float32 normalised, "mask": (1, H, W) float32 in {0, 1},
    "id": str, "size": (H0, W0)}`` where ``size`` is the size before evaluation padding.

    Image and mask sizes are checked from the file headers at construction, so a mismatch is
    reported before training starts.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "auto",
        subset: str = "train",
        mode: str = "train",
        crop_size: int = 256,
        base_size: int = 256,
        in_channels: int = 3,
        protocol: str = "exact",
        seed: int = 0,
        check_sizes: bool = True,
    ) -> None:
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if protocol not in ("exact", "reference"):
            raise ValueError(f"protocol must be 'exact' or 'reference', got {protocol!r}")
        self.root = Path(root)
        self.split = resolve_split(self.root, split)
        split_file = self.split.train if subset == "train" else self.split.test
        self.pairs = locate_pairs(self.root, read_ids(split_file), split_file)
        if check_sizes:
            for _, img, mask in self.pairs:
                if image_size(img) != image_size(mask):
                    (h, w), (mh, mw) = image_size(img), image_size(mask)
                    raise ValueError(f"{mask}: mask size {mw}x{mh} differs from image {img.name} size {w}x{h} (WxH)")
        self.subset, self.mode, self.protocol = subset, mode, protocol
        self.crop_size, self.base_size, self.in_channels = crop_size, base_size, in_channels
        self.seed, self.epoch = seed, 0

    @property
    def ids(self) -> list[str]:
        return [p[0] for p in self.pairs]

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before each training epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw image (H, W) float32 and mask (H, W) bool of item ``index``."""
        _, img, mask = self.pairs[index]
        return load_pair(img, mask)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample_id = self.pairs[index][0]
        image, mask = self.load(index)
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, mask = train_augment(image, mask, rng, self.base_size, self.crop_size)
            return make_item(image, mask, sample_id, self.in_channels)
        return eval_item(image, mask, sample_id, self.in_channels, self.protocol, self.base_size)


def make_item(image: np.ndarray, mask: np.ndarray, sample_id: str, in_channels: int,
              size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The dataset item of a grayscale ``image`` (H, W) in [0, 1] and ``mask`` (H, W):
    ``{"image": (C, H, W) normalised, "mask": (1, H, W) float in {0, 1}, "id", "size"}``;
    ``size`` (before any padding) defaults to the image's."""
    h, w = size if size is not None else image.shape
    return {
        "image": to_network_input(image, in_channels).contiguous(),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
        "id": sample_id,
        "size": (int(h), int(w)),
    }


def eval_item(image: np.ndarray, mask: np.ndarray, sample_id: str, in_channels: int, protocol: str = "exact",
              base_size: int = 256) -> dict[str, Any]:
    """The evaluation item of a raw image (H, W) and mask: native size padded to a multiple of 16
    (``"exact"``, ``size`` = the native size) or resized to ``base_size`` squared (``"reference"``)."""
    if protocol == "reference":
        image, mask = resize_reference(image, mask, base_size)
        return make_item(image, mask, sample_id, in_channels)
    return make_item(pad_to_multiple(image), pad_to_multiple(mask), sample_id, in_channels, size=image.shape)


def pad_collate(samples: list[dict[str, Any]], multiple: int = 16) -> dict[str, Any]:
    """Stack samples of possibly different sizes, zero-padding at the bottom/right.

    Images and masks are padded to the largest H and W of the batch rounded up to ``multiple``.
    Returns ``{"image": (N, C, H, W), "mask": (N, 1, H, W), "id": list[str], "size": list[(H0, W0)]}``;
    crop predictions back to ``size`` before computing metrics.
    """
    h = max(s["image"].shape[-2] for s in samples)
    w = max(s["image"].shape[-1] for s in samples)
    h, w = h + (-h) % multiple, w + (-w) % multiple

    def pad(t: torch.Tensor, value: torch.Tensor | float = 0.0) -> torch.Tensor:
        out = t.new_empty((*t.shape[:-2], h, w))
        out[...] = value
        out[..., : t.shape[-2], : t.shape[-1]] = t
        return out

    # Images pad with the normalised value of a black pixel, like the raw-image padding of eval mode.
    black = to_network_input(np.zeros((1, 1), np.float32), samples[0]["image"].shape[0])
    return {
        "image": torch.stack([pad(s["image"], black) for s in samples]),
        "mask": torch.stack([pad(s["mask"]) for s in samples]),
        "id": [s["id"] for s in samples],
        "size": [tuple(s["size"]) for s in samples],
    }
