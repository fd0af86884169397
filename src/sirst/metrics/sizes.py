"""Target-size classes, defined once for the metrics, the synthesizer and the figures.

The DNANet paper (NUDT-SIRST) describes point, spot and extended targets without giving pixel
limits. Following the SPIE definition of a small target (at most 0.15% of the image, about 9x9
pixels in a 256x256 image) a ground-truth component of area ``a`` is ``point`` when a <= 9 (3x3),
``spot`` when 10 <= a <= 81 (9x9) and ``extended`` when a > 81.
"""

from __future__ import annotations

import numpy as np

__all__ = ["POINT_MAX_AREA", "SIZE_CLASSES", "SIZE_SUBSETS", "SPOT_MAX_AREA", "size_class", "size_class_name"]

SIZE_CLASSES: tuple[str, ...] = ("point", "spot", "extended")
POINT_MAX_AREA: int = 9
SPOT_MAX_AREA: int = 81
#: Image subsets of the size-subset Pd-Fa curves: images whose targets are all of a class up to
#: point, up to spot, and all images (the DNANet paper's Fig. 9).
SIZE_SUBSETS: tuple[str, ...] = ("point", "point+spot", "all")


def size_class(area: np.ndarray) -> np.ndarray:
    """Size-class index (0 point, 1 spot, 2 extended; see :data:`SIZE_CLASSES`) of target areas.

    Args:
        area: ``(n,)`` pixel counts.

    Returns:
        ``(n,)`` int64 class indices.
    """
    area = np.asarray(area)
    return (area > POINT_MAX_AREA).astype(np.int64) + (area > SPOT_MAX_AREA).astype(np.int64)


def size_class_name(area: int) -> str:
    """``"point"``, ``"spot"`` or ``"extended"`` for one target of ``area`` pixels."""
    return SIZE_CLASSES[int(size_class(np.asarray([area]))[0])]
