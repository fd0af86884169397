"""What the harness scores a method on: the images of a dataset split, or any list of image/mask files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sample", "load_samples"]


@dataclass(frozen=True)
class Sample:
    """One test image: its id and the image/mask files."""

    id: str
    image: Path
    mask: Path


def load_samples(root: str | os.PathLike, split: str = "auto", subset: str = "test", max_images: int | None = None) -> list[Sample]:
    """The samples of ``subset`` (``train``/``test``) of the dataset at ``root``, in split-file order."""
    from sirst.data.dataset import locate_pairs, read_ids, resolve_split

    if subset not in ("train", "test"):
        raise ValueError(f"{subset}: subset must be 'train' or 'test'")
    files = resolve_split(root, split)
    split_file = getattr(files, subset)
    ids = read_ids(split_file)
    if not ids:
        raise ValueError(f"{split_file}: split file lists no images")
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"--max-images must be >= 1, got {max_images}")
        ids = ids[:max_images]
    return [Sample(i, img, mask) for i, img, mask in locate_pairs(Path(root), ids, split_file)]
