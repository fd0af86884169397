"""Reading infrared images and masks, and turning them into network inputs.

Infrared data come as 8-bit or 16-bit grayscale, sometimes stored as RGB/RGBA/palette PNGs with
(nearly) equal channels. Everything is read to one float32 channel in [0, 1]: 8-bit / 255,
16-bit / 65535, colour -> luminance (ITU-R 601 weights).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
# The paper's code normalises the grayscale image copied to 3 channels with ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc
    return img


def _to_array(img: Image.Image, path: Path) -> tuple[np.ndarray, float]:
    """Pixel array (H, W) or (H, W, C) and the full-scale value of its type."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.uint16), 65535.0
    if mode == "I":  # Pillow decodes 16-bit PNGs to 32-bit int; anything larger is not a sensor image
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(f"{path}: 32-bit integer image with values outside 0..65535 is not supported")
        return arr.astype(np.uint16), 65535.0
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return arr, 1.0 if arr.max() <= 1.0 else float(arr.max())
    if mode in ("1", "L", "LA", "RGB", "RGBA", "CMYK", "YCbCr"):
        if mode in ("1", "CMYK", "YCbCr"):
            img = img.convert("RGB" if mode != "1" else "L")
        arr = np.asarray(img, dtype=np.uint8)
        return arr, 255.0
    raise ValueError(f"{path}: unsupported image mode {mode!r}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as one float32 channel in [0, 1], shape ``(H, W)``.

    8-bit values are divided by 255, 16-bit by 65535; RGB(A) is converted to luminance and alpha
    dropped. Raises ``FileNotFoundError``/``ValueError`` naming the file for missing, corrupt or
    unsupported files.
    """
    path = Path(path)
    arr, full = _to_array(_open(path), path)
    arr = arr.astype(np.float32)
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # LA / RGBA: drop alpha
            arr = arr[..., :-1]
        arr = arr[..., 0] if arr.shape[2] == 1 else arr @ _LUMA
    return np.ascontiguousarray(arr / full, dtype=np.float32)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image from its header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc
    return h, w


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary mask as ``bool (H, W)``.

    Accepts 0/255, 0/1 or 0/65535 values, in grayscale or colour with equal channels. Any other
    value raises ``ValueError`` naming the file and the values found (a blurred or resized mask
    would silently change the ground truth).
    """
    path = Path(path)
    arr, full = _to_array(_open(path), path)
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):
            arr = arr[..., :-1]
        if arr.shape[2] > 1 and not (arr == arr[..., :1]).all():
            raise ValueError(f"{path}: mask has colour channels that differ; expected a grayscale 0/255 mask")
        arr = arr[..., 0]
    values = np.unique(arr)
    allowed = {0.0, 1.0, float(full)}
    if not set(values.tolist()) <= allowed:
        shown = ", ".join(str(v) for v in values[:6].tolist()) + (" ..." if len(values) > 6 else "")
        raise ValueError(f"{path}: mask is not binary (values {shown}); expected 0 and {int(full)}")
    return arr > 0


def to_network_input(gray: np.ndarray, in_channels: int = 3) -> torch.Tensor:
    """Grayscale ``(H, W)`` in [0, 1] -> normalised network input ``(in_channels, H, W)`` float32.

    The channel is copied ``in_channels`` times and normalised with the ImageNet mean/std (the mean
    of the three for a single channel), as the paper's code does.
    """
    mean, std = _norm_stats(in_channels)
    x = torch.from_numpy(np.array(gray, dtype=np.float32, copy=True))[None].expand(in_channels, -1, -1)
    return (x - mean[:, None, None]) / std[:, None, None]


def from_network_input(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`to_network_input` for display: ``(C, H, W)`` -> ``(H, W)`` in [0, 1]."""
    mean, std = _norm_stats(x.shape[0])
    gray = (x[0] * std[0] + mean[0]).clamp(0, 1)
    return gray.detach().cpu().numpy()


def _norm_stats(in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    if in_channels == 3:
        return torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    mean, std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    return torch.full((in_channels,), mean), torch.full((in_channels,), std)


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8/uint16/bool array as PNG (bool as 0/255), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path)
