"""How the classical baselines turn a response map into a prediction: the DNANet paper's Eq. 13."""

from __future__ import annotations

import numpy as np

__all__ = ["adaptive_threshold"]


def adaptive_threshold(g: np.ndarray) -> float:
    """Adaptive threshold of the DNANet paper, Eq. 13: ``max(0.7 * max(G), 0.5 * std(G) + mean(G))``.

    Args:
        g: score map of any shape (usually ``(H, W)``).
    """
    g = np.asarray(g, dtype=np.float64)
    if g.size == 0:
        raise ValueError("adaptive_threshold: empty score map")
    return float(max(0.7 * g.max(), 0.5 * g.std() + g.mean()))
