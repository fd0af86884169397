"""How the classical baselines turn a response map into a prediction: divided by its maximum, then
thresholded with the DNANet paper's Eq. 13 (adaptive, per image) or a fixed value."""

from __future__ import annotations

import numpy as np

__all__ = ["adaptive_threshold", "binarise", "normalise_response", "parse_threshold"]


def adaptive_threshold(g: np.ndarray) -> float:
    """Adaptive threshold of the DNANet paper, Eq. 13: ``max(0.7 * max(G), 0.5 * std(G) + mean(G))``.

    Args:
        g: score map of any shape (usually ``(H, W)``).
    """
    g = np.asarray(g, dtype=np.float64)
    if g.size == 0:
        raise ValueError("adaptive_threshold: empty score map")
    return float(max(0.7 * g.max(), 0.5 * g.std() + g.mean()))


def normalise_response(response: np.ndarray) -> np.ndarray:
    """A classical response map ``(H, W)`` divided by its maximum (all zeros if the maximum is <= 0)."""
    response = np.asarray(response, dtype=np.float32)
    peak = float(response.max())
    return response / peak if peak > 0 else np.zeros_like(response)


def binarise(score: np.ndarray, fixed: float | None = None) -> np.ndarray:
    """The prediction ``(H, W)`` bool that the metrics score: ``score > t`` with ``t`` the adaptive
    threshold of Eq. 13 (:func:`adaptive_threshold`) or ``fixed``."""
    thr = adaptive_threshold(score) if fixed is None else fixed
    return np.asarray(score) > thr


def parse_threshold(value: str | float) -> float | None:
    """``"adaptive"`` -> ``None``; a number in [0, 1) -> that float; anything else ValueError."""
    if isinstance(value, str):
        if value.strip().lower() == "adaptive":
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value}: --threshold must be 'adaptive' or a number in [0, 1)") from None
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{value}: --threshold must be 'adaptive' or a number in [0, 1)")
    return float(value)
