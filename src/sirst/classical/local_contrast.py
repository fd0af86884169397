"""Local contrast measures of the human-visual-system family: TLLCM and WSLCM."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from sirst.classical._common import as_image

# Relative floor of the ratio denominators: keeps dark, flat backgrounds from exploding the ratio.
_EPS_REL = 1e-2

_DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[i, j] = x[i + dy, j + dx]`` with replicated borders, ``(H, W)``.

    Replicated, not reflected: reflecting a brightness ramp at the border would make the border
    pixels brighter than their mirrored "surroundings", i.e. false targets all along the rim.
    """
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return x
    xp = np.pad(x, pad, mode="edge")
    h, w = x.shape
    return xp[pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def _directional_means(img: np.ndarray, cell: int, distance: int) -> np.ndarray:
    """Means of the 8 ``cell`` x ``cell`` cells centred ``distance`` pixels away, ``(8, H, W)``."""
    means = ndimage.uniform_filter(img, size=cell, mode="nearest")
    return np.stack([_shifted(means, dy * distance, dx * distance) for dy, dx in _DIRECTIONS])


def _top_k_mean(img: np.ndarray, cell: int, k: int) -> np.ndarray:
    """Mean of the ``k`` largest values of the ``cell`` x ``cell`` window at each pixel, ``(H, W)``."""
    r = cell // 2
    windows = sliding_window_view(np.pad(img, r, mode="edge"), (cell, cell)).reshape(*img.shape, cell * cell)
    k = min(k, cell * cell)
    top = np.partition(windows, cell * cell - k, axis=-1)[..., cell * cell - k :]
    return top.mean(axis=-1)


def _check_scales(scales: Sequence[int], name: str) -> list[int]:
    out = [int(s) for s in scales]
    if not out or any(s < 1 or s % 2 == 0 for s in out):
        raise ValueError(f"{name}: scales must be odd cell sizes >= 1, got {list(scales)}")
    return out


def _prepare(image: np.ndarray, scales: Sequence[int], name: str) -> tuple[np.ndarray, list[int], float, np.ndarray]:
    """What TLLCM and WSLCM start from: the image, its checked scales, a small epsilon relative to its
    mean level, and the Gaussian-enhanced image (sigma 0.8)."""
    img = as_image(image)
    sizes = _check_scales(scales, name)
    eps = _EPS_REL * max(float(np.abs(img).mean()), 1e-12)
    return img, sizes, eps, ndimage.gaussian_filter(img, sigma=0.8, truncate=2.5)


def tllcm(image: np.ndarray, scales: Sequence[int] = (3, 5, 7, 9), k: int = 9) -> np.ndarray:
    """Multiscale tri-layer local contrast measure (TLLCM).

    Reference: Han, Moradi, Faramarz, Liu, Zhang & Zhao, "A local contrast method for infrared
    small-target detection utilizing a tri-layer window", IEEE GRSL 17(10), 2020 (online 2019).

    The window has three layers around each pixel: the *core* (an ``s`` x ``s`` cell), a *reserve*
    ring of width ``s`` that is ignored (so a target larger than the core does not leak into the
    background estimate) and the *surrounding* layer of 8 cells centred ``2s`` away. The core is
    first Gaussian filtered (matched filter for the target shape) and summarised by the mean of its
    ``k`` largest values ``C_T``; the background is the brightest surrounding cell mean ``B``. The
    measure combines ratio and difference, ``C_T / B * max(0, C_T - B)``, and the multiscale
    response is the maximum over the scales. (A re-implementation from the paper's description;
    the published code was not used.)

    Args:
        image: ``(H, W)`` float image.
        scales: odd core-cell sizes; default 3, 5, 7, 9 as in the paper.
        k: number of largest core values averaged (9: a 3x3 point target).

    Returns:
        ``(H, W)`` float32 non-negative response.
    """
    img, sizes, eps, enhanced = _prepare(image, scales, "tllcm")
    out = np.zeros_like(img)
    for s in sizes:
        c_t = _top_k_mean(enhanced, s, k)
        b = _directional_means(img, s, 2 * s).max(axis=0)
        out = np.maximum(out, c_t / (np.abs(b) + eps) * np.maximum(c_t - b, 0.0))
    return out.astype(np.float32)


def wslcm(image: np.ndarray, scales: Sequence[int] = (3, 5, 7, 9)) -> np.ndarray:
    """Multiscale weighted strengthened local contrast measure (WSLCM).

    Reference: Han, Moradi, Faramarz, Liu, Zhao & Zhang, "Infrared small target detection based on
    the weighted strengthened local contrast measure", IEEE GRSL 18(9), 2021 (online 2020).

    At scale ``s`` the 3x3-cell window has the Gaussian-filtered core mean ``m_T`` and the 8
    adjacent cell means ``m_i`` (cells of ``s`` x ``s`` centred ``s`` away). The strengthened local
    contrast is ``m_T / max_i m_i * max(0, min_i (m_T - m_i))`` (the target must be brighter than
    *every* neighbour cell, which suppresses edges) and the weighting function is the local
    standard deviation of the ``3s`` x ``3s`` window (high on targets, low on flat background, as the
    paper's weighting function). The multiscale response is the maximum over scales.
    (A re-implementation from the paper's description; the published code was not used.)

    Args:
        image: ``(H, W)`` float image.
        scales: odd cell sizes; default 3, 5, 7, 9.

    Returns:
        ``(H, W)`` float32 non-negative response.
    """
    img, sizes, eps, enhanced = _prepare(image, scales, "wslcm")
    out = np.zeros_like(img)
    for s in sizes:
        m_t = ndimage.uniform_filter(enhanced, size=s, mode="reflect")
        m_b = _directional_means(img, s, s)
        slcm = m_t / (np.abs(m_b.max(axis=0)) + eps) * np.maximum((m_t - m_b).min(axis=0), 0.0)
        mean = ndimage.uniform_filter(img, size=3 * s, mode="reflect")
        var = ndimage.uniform_filter(img * img, size=3 * s, mode="reflect") - mean**2
        out = np.maximum(out, slcm * np.sqrt(np.maximum(var, 0.0)))
    return out.astype(np.float32)
