"""Morphological / order-statistic filters: Top-Hat and Max-Median."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sirst.classical._common import as_image


def tophat(image: np.ndarray, size: int = 5, shape: str = "square") -> np.ndarray:
    """White top-hat: the image minus its grey-level opening.

    Reference: Rivest & Fortin, "Detection of dim targets in digital infrared imagery by morphological
    image processing", Optical Engineering 35(7), 1996 (the Top-Hat baseline of the DNANet paper).
    The opening removes bright structures smaller than the structuring element, so targets smaller
    than ``size`` survive in the residual.

    Args:
        image: ``(H, W)`` float image.
        size: side (square) or diameter (disk) of the flat structuring element; default 5 pixels.
        shape: ``"square"`` or ``"disk"``.

    Returns:
        ``(H, W)`` float32 non-negative response.
    """
    img = as_image(image)
    if size < 1:
        raise ValueError(f"tophat: size must be >= 1, got {size}")
    if shape == "square":
        footprint = np.ones((size, size), dtype=bool)
    elif shape == "disk":
        r = (size - 1) / 2.0
        yy, xx = np.mgrid[:size, :size] - r
        footprint = yy**2 + xx**2 <= r**2 + 1e-9
    else:
        raise ValueError(f"tophat: shape must be 'square' or 'disk', got {shape!r}")
    opened = ndimage.grey_opening(img, footprint=footprint, mode="reflect")
    return np.maximum(img - opened, 0.0).astype(np.float32)


def _line_footprints(size: int) -> list[np.ndarray]:
    """Horizontal, vertical and the two diagonal line footprints of length ``size``."""
    eye = np.eye(size, dtype=bool)
    horiz = np.zeros((size, size), dtype=bool)
    horiz[size // 2, :] = True
    return [horiz, horiz.T.copy(), eye, eye[:, ::-1].copy()]


def maxmedian(image: np.ndarray, size: int = 9) -> np.ndarray:
    """Max-Median filter residual.

    Reference: Deshpande, Er, Venkateswarlu & Chan, "Max-mean and max-median filters for detection
    of small targets", Proc. SPIE 3809, 1999. The background is the maximum of the medians along
    the horizontal, vertical and two diagonal lines through each pixel (window ``size`` x ``size``),
    which preserves edges; the response is the image minus that background, clipped at 0.

    Args:
        image: ``(H, W)`` float image.
        size: odd line length (window side), default 9: the line must be more than twice as long
            as the target (3x3 point targets) or the median lands on the target itself.

    Returns:
        ``(H, W)`` float32 non-negative response.
    """
    img = as_image(image)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"maxmedian: size must be an odd number >= 3, got {size}")
    medians = [ndimage.median_filter(img, footprint=fp, mode="reflect") for fp in _line_footprints(size)]
    background = np.max(np.stack(medians), axis=0)
    return np.maximum(img - background, 0.0).astype(np.float32)
