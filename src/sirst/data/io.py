"""Reading infrared images and masks, and turning them into network inputs.

Infrared data come as 8-bit or 16-bit grayscale, sometimes stored as RGB/RGBA/palette PNGs with
(nearly) equal channels. Everything is read to one float32 channel in [0, 1]: 8-bit / 255,
colour -> luminance (ITU-R 601 weights).

16-bit containers often hold 10-, 12- or 14-bit sensor data; dividing those by 65535 gives an almost
black frame in which nothing is detected. :func:`read_image` therefore maps them to their real
range (see :func:`normalization_range`): the bit depth when the file declares it (TIFF
MaxSampleValue / BitsPerSample), else the smallest of 8/10/12/14/16 bits that holds the frame's
maximum, and robust percentiles when the frame fills less than 1/16 of that range (raw sensor
counts). ``bit_depth=`` or ``value_range=`` force the range; :class:`InputRangeWarning` is issued
when the range used leaves the frame nearly uniform or spans only a few raw levels.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".wmv")
# The paper's code normalises the grayscale image copied to 3 channels with ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Bit depths assumed for integer data in a 16-bit container (the smallest that holds the maximum).
SENSOR_BIT_DEPTHS: tuple[int, ...] = (8, 10, 12, 14, 16)
#: Robust range of a frame: these percentiles ignore dead/hot pixels without clipping small targets
#: away (a target keeps its shape; at most its brightest pixels saturate).
ROBUST_PERCENTILES: tuple[float, float] = (0.5, 99.99)
_NARROW_FRACTION = 1 / 16  # a frame filling less of its bit depth's range is raw counts: stretch it
_FEW_LEVELS = 32  # fewer raw levels than this between low and high: quantisation noise dominates
_UNIFORM_SPREAD = 1 / 32  # normalised robust spread below this: the frame is nearly uniform


class InputRangeWarning(UserWarning):
    """The value range used to normalise an image leaves it nearly uniform, or spans few raw levels."""


def existing_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a ``Path``; ``FileNotFoundError`` (``"<path>: <what> not found"``) when it is no file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


def _open(path: Path) -> Image.Image:
    existing_file(path)
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


def _declared_max(img: Image.Image) -> float | None:
    """The maximum sample value a TIFF declares (MaxSampleValue, or BitsPerSample below 16), if any."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return None
    for tag in (281, 341):  # MaxSampleValue, SMaxSampleValue
        value = tags.get(tag)
        if isinstance(value, (tuple, list)):
            value = value[0] if value else None
        if isinstance(value, (int, float)) and 0 < value < 65535:
            return float(value)
    bits = tags.get(258)  # BitsPerSample
    if isinstance(bits, (tuple, list)):
        bits = bits[0] if bits else None
    if isinstance(bits, int) and 8 < bits < 16:
        return float(2**bits - 1)
    return None


def _robust(arr: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(arr, ROBUST_PERCENTILES)
    return float(lo), float(hi)


def normalization_range(
    arr: np.ndarray,
    full: float,
    declared_max: float | None = None,
    bit_depth: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> tuple[float, float, str]:
    """The raw values ``(low, high)`` that map to 0 and 1, and how they were chosen.

    Args:
        arr: raw pixel values (any shape).
        full: the full-scale value of the container (255 for 8-bit, 65535 for 16-bit, 1 for float).
        declared_max: the maximum the file declares (TIFF tags), if any.
        bit_depth: force ``(0, 2**bit_depth - 1)``.
        value_range: force ``(low, high)``.

    Returns:
        ``(low, high, how)`` with ``how`` one of ``"forced"``, ``"bit depth N"``, ``"declared"``,
        ``"percentiles"``, ``"full scale"``. 8-bit data always use ``(0, 255)`` unless forced.
    """
    if value_range is not None:
        return float(value_range[0]), float(value_range[1]), "forced"
    if bit_depth is not None:
        return 0.0, float(2**bit_depth - 1), f"bit depth {bit_depth} (forced)"
    if full == 255.0:
        return 0.0, 255.0, "bit depth 8"
    if full == 1.0:  # float data: as they are when already in [0, 1], else their robust range
        if arr.size == 0 or (float(arr.min()) >= 0.0 and float(arr.max()) <= 1.0):
            return 0.0, 1.0, "full scale"
        lo, hi = _robust(arr)
        return lo, hi, "percentiles"
    if declared_max is not None:
        return 0.0, declared_max, "declared"
    top = float(arr.max()) if arr.size else 0.0
    bits = next((b for b in SENSOR_BIT_DEPTHS if top <= 2**b - 1), 16)
    high = float(2**bits - 1)
    lo, hi = _robust(arr)
    if hi - lo >= _NARROW_FRACTION * high or hi <= lo:  # a constant frame has nothing to stretch
        return 0.0, high, f"bit depth {bits}"
    return lo, hi, "percentiles"


def read_image(
    path: str | os.PathLike,
    *,
    bit_depth: int | None = None,
    value_range: tuple[float, float] | None = None,
    full_scale: bool = False,
) -> np.ndarray:
    """Read an image as one float32 channel in [0, 1], shape ``(H, W)``.

    8-bit values are divided by 255. Integer data in 16-bit containers are mapped to their real
    range (:func:`normalization_range`): 12-bit data in a 16-bit PNG read the same as their 8-bit
    version. RGB(A) is converted to luminance and alpha dropped.

    Args:
        path: the image file.
        bit_depth: the data's bit depth (``value / (2**bit_depth - 1)``), overriding the automatic range.
        value_range: raw ``(low, high)`` mapped to 0 and 1 (values outside are clipped).
        full_scale: divide by the container's maximum (255 / 65535) as stored, e.g. for score maps.

    Raises ``FileNotFoundError``/``ValueError`` naming the file for missing, corrupt or unsupported
    files; warns (:class:`InputRangeWarning`) when the range used leaves the frame nearly uniform.
    """
    path = Path(path)
    if bit_depth is not None and not 1 <= bit_depth <= 16:
        raise ValueError(f"bit depth must be in 1..16, got {bit_depth}")
    if value_range is not None and not (all(math.isfinite(v) for v in value_range) and value_range[1] > value_range[0]):
        raise ValueError(f"input range must be finite MIN < MAX, got {value_range[0]} {value_range[1]}")
    img = _open(path)
    declared = _declared_max(img)
    arr, full = _to_array(img, path)
    is_float = arr.dtype.kind == "f"
    arr = arr.astype(np.float32)
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # LA / RGBA: drop alpha
            arr = arr[..., :-1]
        arr = arr[..., 0] if arr.shape[2] == 1 else arr @ _LUMA
    if full_scale:
        return np.ascontiguousarray(arr / full, dtype=np.float32)
    return normalize_raw(arr, full, is_float=is_float, declared_max=declared, bit_depth=bit_depth,
                         value_range=value_range, name=str(path))


def normalize_raw(
    arr: np.ndarray,
    full: float,
    *,
    is_float: bool = False,
    declared_max: float | None = None,
    bit_depth: int | None = None,
    value_range: tuple[float, float] | None = None,
    name: str = "image",
) -> np.ndarray:
    """Raw single-channel values ``(H, W)`` -> float32 in [0, 1] with :func:`normalization_range`.

    ``full`` is the container's full-scale value (255, 65535); ``name`` prefixes warnings.
    """
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi, how = normalization_range(arr, 1.0 if is_float else full, declared_max, bit_depth, value_range)
    if full == 255.0 and not is_float and (lo, hi) == (0.0, 255.0):
        return np.ascontiguousarray(arr / 255.0, dtype=np.float32)  # bit-identical to earlier releases
    if hi <= lo:
        warnings.warn(f"{name}: the image is constant ({lo:g}); it reads as all zeros", InputRangeWarning, stacklevel=3)
        return np.zeros(arr.shape, np.float32)
    out = np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    _warn_if_tiny(name, out, lo, hi, how, integer=not is_float)
    return np.ascontiguousarray(out)


def _warn_if_tiny(path: str, out: np.ndarray, lo: float, hi: float, how: str, integer: bool) -> None:
    """Warn when the normalised frame is nearly uniform or was stretched from a few raw levels."""
    if out.size == 0:
        return
    a, b = _robust(out)
    where = f"range {lo:g}..{hi:g} ({how})"
    if b - a < _UNIFORM_SPREAD:
        warnings.warn(f"{path}: the frame is nearly uniform in the {where}; targets will likely be missed "
                      "(set the range with --input-range MIN MAX or --bit-depth N)", InputRangeWarning, stacklevel=4)
    elif integer and hi - lo < _FEW_LEVELS:
        warnings.warn(f"{path}: the {where} spans only {hi - lo:g} raw levels; the stretched frame is mostly "
                      "quantisation noise (set the range with --input-range MIN MAX)", InputRangeWarning, stacklevel=4)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image from its header, without decoding the pixels."""
    path = existing_file(path)
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
