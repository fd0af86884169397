"""Shared helpers of the classical methods: input checks, patch images, structure-tensor priors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage


def as_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check and convert an input image to a finite float64 ``(H, W)`` array."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (H, W) image, got shape {arr.shape}")
    if arr.shape[0] < 3 or arr.shape[1] < 3:
        raise ValueError(f"{name}: image {arr.shape} is too small (need at least 3x3)")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: image contains NaN or infinite values")
    return arr


def window_starts(length: int, patch: int, step: int) -> np.ndarray:
    """Start offsets of sliding windows along one axis, the last one flush with the border.

    The papers slide with ``step`` from 0; we add a last window ending at the border so that every
    pixel is covered (otherwise the right/bottom rim would get no target estimate).
    """
    starts = np.arange(0, length - patch + 1, step)
    if starts[-1] != length - patch:
        starts = np.append(starts, length - patch)
    return starts


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of a patch image/tensor come from.

    Attributes:
        shape: ``(H, W)`` of the image.
        patch: patch side (clamped to the image size).
        rows, cols: ``(Pr,)``, ``(Pc,)`` patch start offsets.
    """

    shape: tuple[int, int]
    patch: int
    rows: np.ndarray
    cols: np.ndarray

    @property
    def num_patches(self) -> int:
        return int(self.rows.size * self.cols.size)


def make_grid(shape: tuple[int, int], patch: int, step: int) -> PatchGrid:
    """Patch grid of an ``(H, W)`` image; the patch is clamped to ``min(H, W)`` for small images."""
    if patch < 1 or step < 1:
        raise ValueError(f"patch size and step must be >= 1, got patch={patch}, step={step}")
    p = min(patch, shape[0], shape[1])
    return PatchGrid(shape, p, window_starts(shape[0], p, step), window_starts(shape[1], p, step))


def extract_patches(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """All patches of ``grid``: ``(P, p, p)`` (a copy), row-major over the patch positions."""
    view = sliding_window_view(image, (grid.patch, grid.patch))
    return view[np.ix_(grid.rows, grid.cols)].reshape(-1, grid.patch, grid.patch).copy()


def reconstruct(patches: np.ndarray, grid: PatchGrid, reduce: str = "median") -> np.ndarray:
    """Fold ``(P, p, p)`` patches back into an ``(H, W)`` image, combining overlaps by ``reduce``.

    ``reduce`` is ``"median"`` (IPI), ``"mean"`` or ``"min"``. Vectorised: every patch pixel gets its
    flat image index; sorting by index gives each pixel's contributions a rank, which places them in
    a ``(K, H*W)`` stack (NaN where a pixel has fewer than ``K`` contributions).
    """
    h, w = grid.shape
    p = grid.patch
    rr = grid.rows[:, None, None, None] + np.arange(p)[None, None, :, None]
    cc = grid.cols[None, :, None, None] + np.arange(p)[None, None, None, :]
    idx = (rr * w + cc).reshape(-1)
    vals = patches.reshape(-1)
    if reduce == "mean":
        total = np.bincount(idx, weights=vals, minlength=h * w)
        count = np.bincount(idx, minlength=h * w)
        return (total / np.maximum(count, 1)).reshape(h, w)
    order = np.argsort(idx, kind="stable")
    idx_s, vals_s = idx[order], vals[order]
    first = np.searchsorted(idx_s, idx_s, side="left")
    rank = np.arange(idx_s.size) - first
    stack = np.full((int(rank.max()) + 1, h * w), np.nan)
    stack[rank, idx_s] = vals_s
    if reduce == "median":
        out = np.nanmedian(stack, axis=0)
    elif reduce == "min":
        out = np.nanmin(stack, axis=0)
    else:
        raise ValueError(f"reduce must be 'median', 'mean' or 'min', got {reduce!r}")
    return out.reshape(h, w)


def structure_tensor_eigs(image: np.ndarray, sigma_grad: float = 0.6, sigma_tensor: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``(l1 >= l2)`` of the smoothed structure tensor, each ``(H, W)``."""
    g = ndimage.gaussian_filter(image, sigma_grad)
    gy, gx = np.gradient(g)
    jxx = ndimage.gaussian_filter(gx * gx, sigma_tensor)
    jxy = ndimage.gaussian_filter(gx * gy, sigma_tensor)
    jyy = ndimage.gaussian_filter(gy * gy, sigma_tensor)
    half_tr = (jxx + jyy) / 2.0
    disc = np.sqrt(np.maximum(((jxx - jyy) / 2.0) ** 2 + jxy**2, 0.0))
    return half_tr + disc, np.maximum(half_tr - disc, 0.0)


def normalise01(x: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] (all zeros for a constant array)."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def soft_threshold(x: np.ndarray, tau: np.ndarray | float) -> np.ndarray:
    """Elementwise shrinkage ``sign(x) * max(|x| - tau, 0)`` (prox of ``tau * |.|_1``)."""
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)


def patch_tensor(image: np.ndarray, patch: int, step: int, scale: float) -> tuple[np.ndarray, PatchGrid, np.ndarray]:
    """The patch-tensor models' input: ``(img, grid, d)`` with ``img`` the ``(H, W)`` image times
    ``scale`` (the grey levels their ``eps`` refers to), its patch grid, and the patches stacked as
    the frontal slices of ``d`` ``(p, p, P)``."""
    img = as_image(image) * scale
    grid = make_grid(img.shape, patch, step)
    return img, grid, np.moveaxis(extract_patches(img, grid), 0, -1)
