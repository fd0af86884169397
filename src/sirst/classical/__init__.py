"""The traditional (non-learned) baselines of the DNANet paper's Table II.

Every method is a function ``image (H, W) float -> response map (H, W) float32`` where larger means
more target-like (for the low-rank methods: the target component of the decomposition). Look them
up by name with :func:`get_method`; :func:`list_methods` gives the valid names.

MSLSTIPT (Sun, Yang & An, TGRS 2021) is a multi-frame method; :func:`mslstipt` is its single-frame
form for SIRST images (the temporal mode of its tensor becomes the patch index of one image) and
:func:`mslstipt_sequence` the multi-frame form on consecutive video frames, see
:mod:`sirst.classical.mslstipt`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sirst.classical.local_contrast import tllcm, wslcm
from sirst.classical.low_rank import Decomposition, ipi, ipi_decompose, nram, nram_decompose, pstnn, pstnn_decompose, ript, ript_decompose
from sirst.classical.morphology import maxmedian, tophat
from sirst.classical.mslstipt import mslstipt, mslstipt_decompose, mslstipt_sequence, mslstipt_sequence_decompose
from sirst.classical.threshold import adaptive_threshold

Method = Callable[[np.ndarray], np.ndarray]

# Immutable name -> function table (order = the paper's Table II order).
_METHODS: tuple[tuple[str, Method], ...] = (
    ("tophat", tophat),
    ("maxmedian", maxmedian),
    ("wslcm", wslcm),
    ("tllcm", tllcm),
    ("ipi", ipi),
    ("nram", nram),
    ("ript", ript),
    ("pstnn", pstnn),
    ("mslstipt", mslstipt),
)

#: Methods of the paper's Table II that are not available, with the reason (none at present).
UNSUPPORTED: dict[str, str] = {}


def list_methods() -> list[str]:
    """Names of the available methods, in the paper's table order."""
    return [name for name, _ in _METHODS]


def get_method(name: str) -> Method:
    """The method function for ``name`` (case-insensitive).

    Raises:
        ValueError: unknown or unsupported name; the message lists the valid names.
    """
    key = name.strip().lower()
    for n, fn in _METHODS:
        if n == key:
            return fn
    if key in UNSUPPORTED:
        raise ValueError(f"{name}: unsupported classical method: {UNSUPPORTED[key]}")
    raise ValueError(f"{name}: unknown classical method; valid names: {', '.join(list_methods())}")


__all__ = [
    "Decomposition",
    "Method",
    "UNSUPPORTED",
    "adaptive_threshold",
    "get_method",
    "ipi",
    "ipi_decompose",
    "list_methods",
    "maxmedian",
    "mslstipt",
    "mslstipt_decompose",
    "mslstipt_sequence",
    "mslstipt_sequence_decompose",
    "nram",
    "nram_decompose",
    "pstnn",
    "pstnn_decompose",
    "ript",
    "ript_decompose",
    "tllcm",
    "tophat",
    "wslcm",
]
