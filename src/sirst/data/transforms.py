"""Training augmentation and evaluation preprocessing of the paper's code, on numpy arrays.

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample's augmentation is a
pure function of (dataset seed, epoch, index): training is reproducible and resumable whatever the
number of DataLoader workers.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def train_augment(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    base_size: int = 256,
    crop_size: int = 256,
    blur_p: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference augmentation: flip, long-side rescale, zero pad, random crop, Gaussian blur.

    1. horizontal flip with p = 0.5;
    2. the long side is resized to a random integer in [0.5, 2] x ``base_size`` keeping the aspect
       ratio (image bilinear, mask nearest with pixel-centre sampling, so both stay aligned);
    3. zero padding at the bottom/right up to ``crop_size`` where a side is shorter;
    4. a random ``crop_size`` crop;
    5. a Gaussian blur of the image (sigma uniform in [0, 1)) with probability ``blur_p``.

    Args: ``image`` float32 (H, W), ``mask`` bool (H, W). Returns (crop, crop) arrays of the same types.
    """
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    h, w = image.shape
    long_side = int(rng.integers(int(base_size * 0.5), int(base_size * 2.0) + 1))
    if h > w:
        oh, ow = long_side, max(1, int(w * long_side / h + 0.5))
    else:
        ow, oh = long_side, max(1, int(h * long_side / w + 0.5))
    image = cv2.resize(np.ascontiguousarray(image), (ow, oh), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(np.ascontiguousarray(mask, dtype=np.uint8), (ow, oh), interpolation=cv2.INTER_NEAREST_EXACT)
    ph, pw = max(0, crop_size - oh), max(0, crop_size - ow)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
    h, w = image.shape
    y = int(rng.integers(0, h - crop_size + 1))
    x = int(rng.integers(0, w - crop_size + 1))
    image = image[y : y + crop_size, x : x + crop_size]
    mask = mask[y : y + crop_size, x : x + crop_size]
    if rng.random() < blur_p:
        sigma = float(rng.random())
        if sigma > 0.05:  # below this the kernel is a delta
            image = cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, dtype=bool)


def pad_to_multiple(array: np.ndarray, multiple: int = 16) -> np.ndarray:
    """Zero-pad the last two axes at the bottom/right to multiples of ``multiple``."""
    h, w = array.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return array
    pad = [(0, 0)] * (array.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(array, pad)


def resize_reference(image: np.ndarray, mask: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The reference protocol's test preprocessing: image bilinear, mask nearest, to ``size x size``.

    Uses Pillow's resampling, as the public code does (its bilinear filter antialiases when shrinking).
    """
    image = np.asarray(Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (size, size), Image.BILINEAR), dtype=np.float32)
    mask = np.asarray(Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).resize((size, size), Image.NEAREST))
    return image, mask.astype(bool)
