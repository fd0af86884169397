"""Low-rank + sparse decompositions of patch images / patch tensors: IPI, NRAM, RIPT, PSTNN.

The image is cut into overlapping patches (``np.lib.stride_tricks.sliding_window_view``); the
patches form a matrix (columns = vectorised patches) or a tensor (frontal slices = patches). The
clutter background is low rank there, the small target sparse. Each solver iterates until the
relative residual ``||D - B - T||_F / ||D||_F`` is below ``tol`` (RIPT: or its target support
stops changing) or ``max_iter`` is reached; the residual of every iteration goes to ``logging.debug``.
The target map is the target component folded back into the image (overlaps combined as in the
paper, e.g. the median for IPI), clipped at zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sirst.classical._common import (
    PatchGrid,
    as_image,
    extract_patches,
    make_grid,
    normalise01,
    patch_tensor,
    reconstruct,
    soft_threshold,
    structure_tensor_eigs,
)

logger = logging.getLogger(__name__)

# Intensity scale of the reweighted models (RIPT, PSTNN): their reweighting ``1 / (|T| + eps)`` with
# ``eps = 0.01`` was set for 8-bit grey levels, so images in [0, 1] are multiplied by 255 first and
# the maps divided back.
GREY_LEVELS = 255.0


@dataclass(frozen=True)
class Decomposition:
    """Result of a low-rank method.

    Attributes:
        target: ``(H, W)`` float32 target map (the sparse component, clipped at 0).
        background: ``(H, W)`` float32 low-rank background.
        iterations: optimiser iterations run.
        residual: final relative residual.
        converged: ``residual < tol`` within ``max_iter``.
    """

    target: np.ndarray
    background: np.ndarray
    iterations: int
    residual: float
    converged: bool


def _svt(x: np.ndarray, tau: np.ndarray | float) -> np.ndarray:
    """Singular value shrinkage of a matrix ``x`` by (per-singular-value) ``tau``."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    s = np.maximum(s - tau, 0.0)
    keep = s > 0
    return (u[:, keep] * s[keep]) @ vt[keep]


def _finish(
    name: str,
    t_patches: np.ndarray,
    b_patches: np.ndarray,
    grid: PatchGrid,
    reduce: str,
    it: int,
    res: float,
    tol: float,
    converged: bool | None = None,
) -> Decomposition:
    target = np.maximum(reconstruct(t_patches, grid, reduce), 0.0)
    background = reconstruct(b_patches, grid, reduce)
    converged = bool(res < tol) if converged is None else bool(converged)
    if not converged:
        logger.warning("%s: stopped after %d iterations at relative residual %.3g (tol %.3g)", name, it, res, tol)
    return Decomposition(target.astype(np.float32), background.astype(np.float32), it, float(res), converged)


def _log(name: str, it: int, res: float) -> None:
    logger.debug("%s iter %d: relative residual %.3e", name, it, res)


# --------------------------------------------------------------------------------------------------
# IPI


def ipi_decompose(
    image: np.ndarray,
    patch: int = 50,
    step: int = 10,
    lam_scale: float = 1.0,
    tol: float = 1e-7,
    max_iter: int = 500,
    rho: float = 1.5,
) -> Decomposition:
    """Infrared patch-image model solved as robust PCA by the inexact augmented Lagrange multiplier method.

    Reference: Gao, Meng, Yang, Wang, Zhou & Hauptmann, "Infrared patch-image model for small target
    detection in a single image", IEEE TIP 22(12), 2013. Defaults are the paper's: 50x50 patches,
    sliding step 10, ``lambda = L / sqrt(max(m, n))`` with ``L = 1``, stopping at relative residual
    1e-7; overlapping target estimates are combined by the median. (The paper solves the same RPCA
    problem by APG; inexact ALM (Lin et al. 2010) reaches it in far fewer iterations.)

    Args:
        image: ``(H, W)`` float image.

    Returns:
        :class:`Decomposition` with ``(H, W)`` maps.
    """
    img = as_image(image)
    grid = make_grid(img.shape, patch, step)
    p = grid.patch
    d = extract_patches(img, grid).reshape(grid.num_patches, p * p).T  # (p*p, P)
    m, n = d.shape
    lam = lam_scale / np.sqrt(max(m, n))
    norm_d = max(np.linalg.norm(d), 1e-12)
    spec = max(np.linalg.norm(d, 2), 1e-12)
    y = d / max(spec, np.abs(d).max() / lam)  # dual initialisation of Lin et al.
    mu = 1.25 / spec
    b = np.zeros_like(d)
    t = np.zeros_like(d)
    res, it = np.inf, 0
    for it in range(1, max_iter + 1):
        b = _svt(d - t + y / mu, 1.0 / mu)
        t = soft_threshold(d - b + y / mu, lam / mu)
        r = d - b - t
        y = y + mu * r
        mu = min(mu * rho, 1e7 / spec)
        res = float(np.linalg.norm(r) / norm_d)
        _log("ipi", it, res)
        if res < tol:
            break
    shape = (grid.num_patches, p, p)
    return _finish("ipi", t.T.reshape(shape), b.T.reshape(shape), grid, "median", it, res, tol)


def ipi(image: np.ndarray, **kwargs: object) -> np.ndarray:
    """IPI target map ``(H, W)`` float32; see :func:`ipi_decompose` for the method and parameters."""
    return ipi_decompose(image, **kwargs).target  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# NRAM


def nram_decompose(
    image: np.ndarray,
    patch: int = 50,
    step: int = 10,
    gamma: float = 0.002,
    lam_scale: float = 1.0,
    beta_scale: float = 3.0,
    weight_eps: float = 0.04,
    tol: float = 1e-7,
    max_iter: int = 1000,
    rho: float = 1.1,
) -> Decomposition:
    """Non-convex rank approximation minimisation (NRAM) with a reweighted l1 target and an l2,1 edge term.

    Reference: Zhang, Peng, Zhang, Cao & Peng, "Infrared small target detection via non-convex rank
    approximation minimization joint l2,1 norm", Remote Sensing 10(11), 1821, 2018.
    Model: ``min ||B||_gamma + lambda ||W * T||_1 + beta ||E||_{2,1}  s.t. D = B + T + E`` on the
    patch image (50x50 patches, step 10), ``D`` min-max normalised to [0, 1] as the authors do.
    ``||.||_gamma`` is the gamma-norm rank surrogate ``sum (1 + gamma) s_i / (gamma + s_i)``
    (``gamma = 0.002``), minimised by DC programming: weighted singular value thresholding with the
    surrogate's gradient, iterated on the singular values of each step. The parameters are the
    authors' published ones: ``lambda = 1 / sqrt(min(m, n))``, ``beta = 3 / sqrt(min(m, n))``,
    ``W = C / (|T~| + 0.04)`` with ``C = sqrt(min(m, n)) / 2.5`` and ``T~`` the target update's
    argument, ``mu_0 = 3 sqrt(max(m, n))`` growing by 1.1 per iteration, tolerance 1e-7, at most
    1,000 iterations. ``B`` and ``E`` are both background. Solved by ADMM; overlapping patches are
    combined by the median (the authors keep the last patch written).

    Returns:
        :class:`Decomposition` with ``(H, W)`` maps in the image's units.
    """
    img = as_image(image)
    grid = make_grid(img.shape, patch, step)
    p = grid.patch
    raw = extract_patches(img, grid).reshape(grid.num_patches, p * p).T
    low, span = float(raw.min()), float(raw.max() - raw.min())
    d = (raw - low) / span if span > 0 else np.zeros_like(raw)
    m, n = d.shape
    lam = lam_scale / np.sqrt(min(m, n))
    beta = beta_scale / np.sqrt(min(m, n))
    c = np.sqrt(min(m, n)) / 2.5
    norm_d = max(np.linalg.norm(d), 1e-12)
    mu = 3.0 * np.sqrt(max(m, n))
    y = np.zeros_like(d)
    t = np.zeros_like(d)
    e = np.zeros_like(d)
    b = np.zeros_like(d)
    sigma = np.zeros(min(m, n))
    res, it = np.inf, 0
    for it in range(1, max_iter + 1):
        u, s, vt = np.linalg.svd(d - t - e + y / mu, full_matrices=False)
        # DC programming: shrink by the gamma-norm's gradient at the current singular values and
        # repeat until they settle (no new SVD needed); big singular values are barely shrunk.
        for _ in range(100):
            s_new = np.maximum(s - (1.0 + gamma) * gamma / (gamma + sigma[: s.size]) ** 2 / mu, 0.0)
            change = float(np.sum((s_new - sigma[: s.size]) ** 2))
            sigma = s_new
            if change < 1e-6:
                break
        b = (u * sigma) @ vt
        arg = d - b - e + y / mu
        t = soft_threshold(arg, lam * (c / (np.abs(arg) + weight_eps)) / mu)
        e = _prox_l21(d - b - t + y / mu, beta / mu)
        r = d - b - t - e
        y = y + mu * r
        mu *= rho
        res = float(np.linalg.norm(r) / norm_d)
        _log("nram", it, res)
        if res < tol:
            break
    shape = (grid.num_patches, p, p)
    # Back to image units (the normalisation is affine; the offset belongs to the background).
    return _finish("nram", (t * span).T.reshape(shape), (low + (b + e) * span).T.reshape(shape), grid, "median",
                   it, res, tol)


def _prox_l21(g: np.ndarray, tau: float) -> np.ndarray:
    """Column-wise shrinkage: the proximal operator of ``tau * ||.||_{2,1}``."""
    col = np.linalg.norm(g, axis=0)
    return g * (np.maximum(col - tau, 0.0) / np.maximum(col, 1e-12))


def nram(image: np.ndarray, **kwargs: object) -> np.ndarray:
    """NRAM target map ``(H, W)`` float32; see :func:`nram_decompose`."""
    return nram_decompose(image, **kwargs).target  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# RIPT


def _unfold(x: np.ndarray, mode: int) -> np.ndarray:
    return np.moveaxis(x, mode, 0).reshape(x.shape[mode], -1)


def _fold(mat: np.ndarray, mode: int, shape: tuple[int, ...]) -> np.ndarray:
    moved = (shape[mode],) + tuple(s for i, s in enumerate(shape) if i != mode)
    return np.moveaxis(mat.reshape(moved), 0, mode)


def ript_decompose(
    image: np.ndarray,
    patch: int = 30,
    step: int = 10,
    lam_scale: float = 1.0,
    h: float = 1.0,
    eps: float = 0.01,
    grey_levels: float = GREY_LEVELS,
    tol: float = 1e-7,
    max_iter: int = 500,
    rho: float = 1.5,
    stop_on_support: bool = True,
) -> Decomposition:
    """Reweighted infrared patch-tensor model (RIPT).

    Reference: Dai & Wu, "Reweighted infrared patch-tensor model with both nonlocal and local
    priors for single-frame small target detection", IEEE JSTARS 10(8), 2017.
    Patches (30x30, step 10) are stacked as the frontal slices of ``D`` (``I x J x P``). Model
    (element-wise reweighted higher-order RPCA):
    ``min sum_i ||B_(i)||_* + lambda ||W * T||_1  s.t. D = B + T`` (the nuclear norms of the three
    unfoldings, the nonlocal prior) with ``lambda = L / sqrt(min(I, J, P))``, ``L = lam_scale = 1``,
    and the entry-wise weights ``W = W_ls / (|T| + eps)``: ``W_ls = exp(h * N(l1 - l2))`` is the
    local structure weight (``l1 >= l2`` the eigenvalues of the structure tensor, ``N`` min-max
    normalisation: edges, where ``l1 >> l2``, are penalised; ``h = 1``), ``1 / (|T| + eps)``
    (``eps = 0.01``) the sparsity-enhancing reweighting, updated every iteration.

    The image is scaled to ``grey_levels`` (255: the 8-bit grey levels the paper's ``eps`` is
    relative to). In [0, 1] units ``eps`` would be 255 times larger relative to the target
    amplitude and the reweighting could no longer tell a target entry from an empty one: almost
    every target then stays in the low-rank part (that was a bug of an earlier version, which also
    rescaled the weights to a minimum of 1).

    Solved by ADMM with one copy ``B_i`` of the background per unfolding (``D = B_i + T``),
    penalty ``mu`` starting at ``1 / (5 std(D))`` and growing by ``rho``. It stops when the
    relative residual ``max_i ||D - B_i - T||_F / ||D||_F`` is below ``tol`` or, with
    ``stop_on_support``, when the number of non-zero target entries no longer changes (the paper's
    additional convergence condition for target detection). Overlaps are combined by the median.

    Returns:
        :class:`Decomposition` with ``(H, W)`` maps (in the units of ``image``).
    """
    img, grid, d = patch_tensor(image, patch, step, grey_levels)  # (I, J, P)
    l1, l2 = structure_tensor_eigs(img)
    w_ls = np.exp(h * np.moveaxis(extract_patches(normalise01(l1 - l2), grid), 0, -1))
    lam = lam_scale / np.sqrt(min(d.shape))
    norm_d = max(np.linalg.norm(d), 1e-12)
    mu = 1.0 / (5.0 * max(float(d.std()), 1e-12))
    t = np.zeros_like(d)
    bs = [d.copy() for _ in range(3)]
    ys = [np.zeros_like(d) for _ in range(3)]
    weights = w_ls
    res, it, support, stable = np.inf, 0, -1, False
    for it in range(1, max_iter + 1):
        bs = [_fold(_svt(_unfold(d - t + ys[k] / mu, k), 1.0 / mu), k, d.shape) for k in range(3)]
        # T minimises the three quadratic terms together: the mean, shrunk by lambda W / (3 mu).
        mean = sum(d - bs[k] + ys[k] / mu for k in range(3)) / 3.0
        t = soft_threshold(mean, lam * weights / (3.0 * mu))
        rs = [d - bs[k] - t for k in range(3)]
        for k in range(3):
            ys[k] = ys[k] + mu * rs[k]
        mu = min(mu * rho, 1e10)
        weights = w_ls / (np.abs(t) + eps)
        res = max(float(np.linalg.norm(r)) for r in rs) / norm_d
        nonzero = int(np.count_nonzero(t))
        logger.debug("ript iter %d: non-zero target entries %d, relative residual %.3e", it, nonzero, res)
        stable = stop_on_support and nonzero == support and nonzero > 0
        if res < tol or stable:
            break
        support = nonzero
    b = sum(bs) / 3.0
    return _finish(
        "ript", np.moveaxis(t, -1, 0) / grey_levels, np.moveaxis(b, -1, 0) / grey_levels, grid, "median", it, res, tol,
        converged=res < tol or stable,
    )


def ript(image: np.ndarray, **kwargs: object) -> np.ndarray:
    """RIPT target map ``(H, W)`` float32; see :func:`ript_decompose`."""
    return ript_decompose(image, **kwargs).target  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# PSTNN


def _prox_pstnn(x: np.ndarray, tau: float, keep: int) -> np.ndarray:
    """Proximal operator of ``tau * PSTNN`` for a real ``(n1, n2, n3)`` tensor.

    t-SVD: FFT along the third mode, then every frontal slice's singular values except the
    ``keep`` largest are shrunk by ``tau`` (the partial sum of singular values is minimised), then
    the inverse FFT. The per-slice SVDs are batched in one ``np.linalg.svd`` call.
    """
    xf = np.fft.fft(x, axis=2)
    slices = np.moveaxis(xf, 2, 0)  # (n3, n1, n2)
    u, s, vt = np.linalg.svd(slices, full_matrices=False)
    shrunk = s.copy()
    shrunk[:, keep:] = np.maximum(s[:, keep:] - tau, 0.0)
    out = (u * shrunk[:, None, :]) @ vt
    return np.real(np.fft.ifft(np.moveaxis(out, 0, 2), axis=2))


def pstnn_decompose(
    image: np.ndarray,
    patch: int = 40,
    step: int = 40,
    lam_scale: float = 0.6,
    keep: int = 1,
    eps: float = 0.01,
    grey_levels: float = GREY_LEVELS,
    tol: float = 1e-7,
    max_iter: int = 500,
    rho: float = 1.05,
    mu0: float = 1e-2,
) -> Decomposition:
    """Partial sum of the tensor nuclear norm (PSTNN) with a local-prior-weighted l1 target.

    Reference: Zhang & Peng, "Infrared small target detection based on partial sum of the tensor
    nuclear norm", Remote Sensing 11(4), 382, 2019. Defaults are the paper's: 40x40 patches,
    step 40, ``lambda = 0.6 / sqrt(max(n1, n2) * n3)``, ``mu0 = 1e-2``, ``rho = 1.05``, tolerance
    1e-7. Model: ``min ||B||_PSTNN + lambda ||W * T||_1  s.t. D = B + T`` where the PSTNN keeps the
    ``keep`` largest singular values of every Fourier slice unpenalised. The weights are
    ``W = 1 / (W_p * (|T| + eps))``, ``eps = 0.01``, with the local prior ``W_p`` the normalised
    structure-tensor corner strength ``l1 * l2 / (l1 + l2)`` (targets are corners, edges are not)
    and the reweighting ``1 / (|T| + eps)``, updated every iteration. As for RIPT the image is
    scaled to ``grey_levels`` (255) first, the scale ``eps`` refers to. Solved by ADMM; patches do
    not overlap at the default step (overlaps: mean).

    Returns:
        :class:`Decomposition` with ``(H, W)`` maps (in the units of ``image``).
    """
    img, grid, d = patch_tensor(image, patch, step, grey_levels)  # (p, p, P)
    l1, l2 = structure_tensor_eigs(img)
    corner = normalise01(l1 * l2 / np.maximum(l1 + l2, 1e-12))
    # Floor: flat regions (corner strength 0) get a huge but finite weight.
    prior = np.maximum(np.moveaxis(extract_patches(corner, grid), 0, -1), 1e-12)
    n1, n2, n3 = d.shape
    lam = lam_scale / np.sqrt(max(n1, n2) * n3)
    norm_d = max(np.linalg.norm(d), 1e-12)
    mu = mu0
    y = np.zeros_like(d)
    t = np.zeros_like(d)
    weights = np.ones_like(d)
    res, it = np.inf, 0
    for it in range(1, max_iter + 1):
        b = _prox_pstnn(d - t + y / mu, 1.0 / mu, keep)
        t = soft_threshold(d - b + y / mu, lam * weights / mu)
        r = d - b - t
        y = y + mu * r
        mu = min(mu * rho, 1e10)
        weights = 1.0 / (prior * (np.abs(t) + eps))
        res = float(np.linalg.norm(r) / norm_d)
        _log("pstnn", it, res)
        if res < tol:
            break
    return _finish(
        "pstnn", np.moveaxis(t, -1, 0) / grey_levels, np.moveaxis(b, -1, 0) / grey_levels, grid, "mean", it, res, tol
    )


def pstnn(image: np.ndarray, **kwargs: object) -> np.ndarray:
    """PSTNN target map ``(H, W)`` float32; see :func:`pstnn_decompose`."""
    return pstnn_decompose(image, **kwargs).target  # type: ignore[arg-type]
