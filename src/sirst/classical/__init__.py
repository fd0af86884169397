"""The traditional (non-learned) baselines of the DNANet paper's Table II.

Every method is a function ``image (H, W) float -> response map (H, W) float32`` where larger means
more target-like (for the low-rank methods: the target component of the decomposition). Look them
up by name with :func:`get_method`; :func:`list_methods` gives the valid names.

MSLSTIPT (Sun, Liu, Hu, Li & Wang, "Infrared small target detection via spatial-temporal infrared
patch-tensor model and weighted Schatten p-norm minimization" / multi-subspace learning and
spatial-temporal patch-tensor, 2020) is a *multi-frame* method: its tensor stacks patches from a
sequence of consecutive frames and the multi-subspace prior is learnt across them. On the single
frames of NUAA-/NUDT-SIRST the temporal dimension has length one and the model degenerates to a
single-frame patch-tensor model that is already represented here by RIPT/PSTNN, so it is listed as
unsupported (see :data:`UNSUPPORTED`) rather than reported under a name it would not deserve.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sirst.classical.local_contrast import tllcm, wslcm
from sirst.classical.low_rank import Decomposition, ipi, ipi_decompose, nram, nram_decompose, pstnn, pstnn_decompose, ript, ript_decompose
from sirst.classical.morphology import maxmedian, tophat

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
)

UNSUPPORTED: dict[str, str] = {
    "mslstipt": (
        "MSLSTIPT is a multi-frame method (spatial-temporal patch tensor over consecutive frames); "
        "single-frame SIRST images have no temporal dimension, where it reduces to the single-frame "
        "patch-tensor models ript/pstnn"
    ),
}


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
    "get_method",
    "ipi",
    "ipi_decompose",
    "list_methods",
    "maxmedian",
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
