"""MSLSTIPT: multiple subspace learning on a spatial-temporal patch-tensor, weighted Schatten p-norm.

Reference: Sun, Yang & An, "Infrared dim and small target detection via multiple subspace learning
and spatial-temporal patch-tensor model", IEEE TGRS 59(5), 3737-3752, 2021, which builds on Sun,
Yang, Li & An, "Infrared small target detection via spatial-temporal infrared patch-tensor model
and weighted Schatten p-norm minimization", Infrared Physics & Technology 102, 2019.

Model. ``L`` consecutive frames (or, for one image, its patches) are the frontal slices of
``D`` (``n1 x n2 x n3``). The background lies in a union of subspaces spanned by a dictionary
``A`` (``n1 x r x n3``) and the target is sparse::

    min_{Z, E}  ||Z||_{w,Sp}^p + lambda ||E||_1   s.t.  D = A * Z + E

``*`` is the t-product (slice-wise products after an FFT along the third mode) and
``||Z||_{w,Sp}^p = sum_k sum_i w_ki sigma_i(Z^_k)^p`` the weighted Schatten p-norm of the Fourier
slices ``Z^_k``, with the weights ``w = C sqrt(n1 n2) / (sigma + eps)`` of weighted Schatten
p-norm minimisation: large singular values (background structure) are shrunk little, small ones
(noise, target) a lot. The dictionary is learnt from the data ("multiple subspace learning"):
tensor robust PCA (TNN + l1, ``lambda_0 = H / sqrt(max(n1, n2) n3)``) separates a first low-rank
part, whose Fourier-slice singular values are soft-thresholded at ``tau`` and whose skinny t-SVD
``U * S * V^T`` gives ``A = U * S``. Both problems are solved by ADMM (the second with the splitting
``Z = J``); the Schatten-p shrinkage of each singular value is the generalised soft-thresholding
of Zuo et al. (ICCV 2013). The target map is ``max(E, 0)``.

Defaults are the authors' released settings: ``p = 0.8``, ``C = 5``, ``H = 4``, ``tau = 50`` grey
levels, ``L = 6`` frames per tensor, ADMM penalties starting at ``1e-4`` and growing by ``1.2``
(tensor RPCA, at most 800 iterations, tolerance ``1e-8``) and ``1.1`` (MSL, at most 200 iterations,
tolerance ``1e-4``), ``lambda = 1 / sqrt(n3 max(n1, n2))``. They are stated for 8-bit grey levels,
so images in [0, 1] are scaled by 255 and the maps scaled back (as for RIPT/PSTNN).

Two forms:

* :func:`mslstipt_sequence_decompose` (multi-frame, the paper's method): consecutive groups of
  ``L`` whole frames of a video form ``D`` (``H x W x L``): the third mode is time.
* :func:`mslstipt_decompose` (single frame, for SIRST images, as the DNANet paper had to run it):
  a single image has no temporal mode. ``L = 1`` would leave one matrix, the raw image, whose low
  rank is a poor background prior; instead the frames are replaced by the image's patches (40x40,
  step 40, the infrared patch-tensor of the single-frame models): ``D`` is ``p x p x P`` and the
  third mode is the patch index, so the model exploits non-local self-similarity where the video
  form exploits temporal correlation. Everything else (dictionary learning, weighted Schatten
  p-norm, parameters) is unchanged.
"""

from __future__ import annotations

import logging

import numpy as np

from sirst.classical._common import as_image, patch_tensor, reconstruct, soft_threshold
from sirst.classical.low_rank import GREY_LEVELS, Decomposition

logger = logging.getLogger(__name__)

#: The authors' settings, shared by both forms (see the module docstring).
DEFAULTS: dict[str, float] = {
    "p": 0.8,  # Schatten p
    "c": 5.0,  # weight constant C: w = C sqrt(n1 n2) / (sigma + eps)
    "h": 4.0,  # tensor-RPCA lambda_0 = H / sqrt(max(n1, n2) n3)
    "tau": 50.0,  # dictionary truncation (grey levels)
}
FRAMES_PER_TENSOR = 6  # L
_WEIGHT_EPS = 1e-8


# --------------------------------------------------------------------------------------------------
# t-SVD helpers. A real tensor (n1, n2, n3) is handled through its n3 // 2 + 1 non-redundant Fourier
# slices (np.fft.rfft along mode 3, moved to the front: (m, n1, n2)); the other slices are their
# complex conjugates and need no separate work.


def _to_fourier(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.fft.rfft(x, axis=2), 2, 0)


def _from_fourier(xf: np.ndarray, n3: int) -> np.ndarray:
    return np.fft.irfft(np.moveaxis(xf, 0, 2), n=n3, axis=2)


def _svt_fourier(xf: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular value soft-thresholding of every Fourier slice: ``(U, shrunk s, V^H)``."""
    u, s, vh = np.linalg.svd(xf, full_matrices=False)
    return u, np.maximum(s - tau, 0.0), vh


def generalised_soft_threshold(sigma: np.ndarray, lam: np.ndarray | float, p: float, iterations: int = 3) -> np.ndarray:
    """Minimiser of ``0.5 (x - sigma)^2 + lam x^p`` over ``x >= 0``, elementwise (GST, Zuo et al. 2013).

    Args:
        sigma: non-negative values (singular values), any shape.
        lam: weight, broadcastable to ``sigma``.
        p: exponent in (0, 1].

    Returns:
        Array of ``sigma``'s shape: 0 below the threshold
        ``(2 lam (1 - p))^(1 / (2 - p)) + lam p (2 lam (1 - p))^((p - 1) / (2 - p))``, otherwise the
        fixed point of ``x = sigma - lam p x^(p - 1)`` reached from ``x = sigma``.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), sigma.shape)
    if p >= 1.0:
        return np.maximum(sigma - lam, 0.0)
    base = 2.0 * lam * (1.0 - p)
    with np.errstate(divide="ignore"):
        thr = base ** (1.0 / (2.0 - p)) + lam * p * base ** ((p - 1.0) / (2.0 - p))
    thr = np.where(lam > 0, thr, 0.0)
    keep = sigma > thr
    x = sigma.copy()
    for _ in range(iterations):
        x = np.where(keep, sigma - lam * p * np.maximum(x, 1e-300) ** (p - 1.0), 0.0)
    return np.where(keep, np.maximum(x, 0.0), 0.0)


def _prox_wsnm(xf: np.ndarray, c: float, p: float, beta: float) -> np.ndarray:
    """Proximal step of ``(1 / beta) ||.||_{w,Sp}^p`` on Fourier slices ``(m, a, b)``; the weights
    ``c / (sigma + eps)`` come from the singular values of the argument (one reweighting step)."""
    u, s, vh = np.linalg.svd(xf, full_matrices=False)
    s = generalised_soft_threshold(s, c / (s + _WEIGHT_EPS) / beta, p)
    return (u * s[:, None, :]) @ vh


def _rel(a: np.ndarray, ref: float) -> float:
    return float(np.linalg.norm(a)) / ref


def tensor_rpca(
    d: np.ndarray, lam: float, mu: float = 1e-4, rho: float = 1.2, mu_max: float = 1e10, tol: float = 1e-8, max_iter: int = 800
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Tensor robust PCA ``min ||L||_TNN + lam ||E||_1  s.t.  D = L + E`` by ADMM (Lu et al. 2019).

    Args:
        d: ``(n1, n2, n3)`` real tensor.

    Returns:
        ``(L, E, iterations, relative residual)``; ``L`` and ``E`` have ``d``'s shape.
    """
    n3 = d.shape[2]
    norm_d = max(float(np.linalg.norm(d)), 1e-12)
    low = np.zeros_like(d)
    e = np.zeros_like(d)
    y = np.zeros_like(d)
    res, it = np.inf, 0
    for it in range(1, max_iter + 1):
        u, s, vh = _svt_fourier(_to_fourier(d - e + y / mu), 1.0 / mu)
        low = _from_fourier((u * s[:, None, :]) @ vh, n3)
        e = soft_threshold(d - low + y / mu, lam / mu)
        r = d - low - e
        y = y + mu * r
        mu = min(mu * rho, mu_max)
        res = _rel(r, norm_d)
        logger.debug("mslstipt trpca iter %d: relative residual %.3e", it, res)
        if res < tol:
            break
    return low, e, it, res


def learn_dictionary(low: np.ndarray, tau: float) -> np.ndarray:
    """The dictionary ``A = U * S`` of the skinny t-SVD of ``low`` after soft-thresholding its
    Fourier-slice singular values at ``tau``, as Fourier slices ``(n3 // 2 + 1, n1, r)`` (``r``: the
    largest number of singular values left in a slice, at least 1)."""
    u, s, _ = _svt_fourier(_to_fourier(low), tau)
    r = max(1, int((s > 0).sum(axis=1).max()))
    return u[:, :, :r] * s[:, None, :r]


def msl_decompose(
    d: np.ndarray,
    a_f: np.ndarray,
    c: float,
    p: float,
    lam: float,
    beta: float = 1e-4,
    rho: float = 1.1,
    beta_max: float = 1e8,
    tol: float = 1e-4,
    max_iter: int = 200,
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Solve ``min ||Z||_{w,Sp}^p + lam ||E||_1  s.t.  D = A * Z + E`` by ADMM with ``Z = J``.

    Args:
        d: ``(n1, n2, n3)`` real tensor.
        a_f: dictionary as Fourier slices ``(n3 // 2 + 1, n1, r)`` (:func:`learn_dictionary`).
        c: weight constant (already multiplied by ``sqrt(n1 n2)``).

    Returns:
        ``(background A * Z, E, iterations, residual)``, tensors of ``d``'s shape; the residual is
        the larger of ``||D - A*J - E|| / ||D||`` and ``||J - Z|| / ||J||``.
    """
    n3 = d.shape[2]
    r = a_f.shape[2]
    norm_d = max(float(np.linalg.norm(d)), 1e-12)
    a_h = np.conj(np.swapaxes(a_f, 1, 2))  # (m, r, n1): the tensor transpose, slice-wise
    # (I + A^H A)^-1 per slice: the J-step's normal equations do not change during the iterations.
    inv = np.linalg.inv(np.eye(r)[None] + a_h @ a_f)
    shape_f = (a_f.shape[0], r, d.shape[1])
    z = np.zeros(shape_f, dtype=complex)
    y1 = np.zeros(shape_f, dtype=complex)
    e = np.zeros_like(d)
    y2 = np.zeros_like(d)
    background = np.zeros_like(d)
    res, it = np.inf, 0
    for it in range(1, max_iter + 1):
        rhs = z - y1 / beta + a_h @ _to_fourier(d - e + y2 / beta)
        j = inv @ rhs
        z = _prox_wsnm(j + y1 / beta, c, p, beta)
        background = _from_fourier(a_f @ j, n3)
        e = soft_threshold(d - background + y2 / beta, lam / beta)
        r2 = d - background - e
        r1 = j - z
        y1 = y1 + beta * r1
        y2 = y2 + beta * r2
        beta = min(beta * rho, beta_max)
        res = max(_rel(r2, norm_d), float(np.linalg.norm(r1)) / max(float(np.linalg.norm(j)), 1e-12))
        logger.debug("mslstipt msl iter %d: residual %.3e", it, res)
        if res < tol:
            break
    return background, e, it, res


def decompose_tensor(
    d: np.ndarray,
    p: float = DEFAULTS["p"],
    c: float = DEFAULTS["c"],
    h: float = DEFAULTS["h"],
    tau: float = DEFAULTS["tau"],
    max_iter: int = 200,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray, int, float, bool]:
    """Dictionary learning then MSL on one ``(n1, n2, n3)`` tensor in grey levels.

    Returns:
        ``(background, target, MSL iterations, residual, converged)``; the target is ``max(E, 0)``.
    """
    n1, n2, n3 = d.shape
    low, _, _, _ = tensor_rpca(d, h / np.sqrt(max(n1, n2) * n3))
    a_f = learn_dictionary(low, tau)
    background, e, it, res = msl_decompose(d, a_f, c * np.sqrt(n1 * n2), p, 1.0 / np.sqrt(n3 * max(n1, n2)),
                                           tol=tol, max_iter=max_iter)
    converged = res < tol
    if not converged:
        logger.warning("mslstipt: stopped after %d iterations at residual %.3g (tol %.3g)", it, res, tol)
    return background, np.maximum(e, 0.0), it, res, converged


# --------------------------------------------------------------------------------------------------
# The two forms


def mslstipt_decompose(
    image: np.ndarray,
    patch: int = 40,
    step: int = 40,
    grey_levels: float = GREY_LEVELS,
    **params: float,
) -> Decomposition:
    """Single-frame MSLSTIPT: the model on the patch-tensor of one image.

    The image's ``patch x patch`` patches (sliding step ``step``, the last one flush with the
    border) are the frontal slices of ``D`` (``patch x patch x P``): the temporal mode of the
    sequence model becomes the patch index (see the module docstring for why not ``L = 1``).
    Overlapping pixels (only the border-flush patches overlap at the default step) are averaged.

    Args:
        image: ``(H, W)`` float image.
        **params: ``p``, ``c``, ``h``, ``tau``, ``max_iter``, ``tol`` of :func:`decompose_tensor`.

    Returns:
        :class:`~sirst.classical.low_rank.Decomposition` with ``(H, W)`` maps in the image's units.
    """
    img, grid, d = patch_tensor(image, patch, step, grey_levels)  # (p, p, P)
    background, target, it, res, ok = decompose_tensor(d, **params)  # type: ignore[arg-type]
    t = reconstruct(np.moveaxis(target, -1, 0), grid, "mean") / grey_levels
    b = reconstruct(np.moveaxis(background, -1, 0), grid, "mean") / grey_levels
    return Decomposition(np.maximum(t, 0.0).astype(np.float32), b.astype(np.float32), it, float(res), bool(ok))


def mslstipt(image: np.ndarray, **kwargs: object) -> np.ndarray:
    """Single-frame MSLSTIPT target map ``(H, W)`` float32; see :func:`mslstipt_decompose`."""
    return mslstipt_decompose(image, **kwargs).target  # type: ignore[arg-type]


def mslstipt_sequence_decompose(
    frames: np.ndarray,
    frames_per_tensor: int = FRAMES_PER_TENSOR,
    grey_levels: float = GREY_LEVELS,
    **params: float,
) -> Decomposition:
    """Multi-frame MSLSTIPT on consecutive frames.

    The frames are cut into consecutive groups of ``frames_per_tensor`` (``L = 6``); each group is
    one spatial-temporal tensor ``H x W x L`` (frames as frontal slices) decomposed on its own.
    When the frame count is not a multiple of ``L`` the last group is the last ``L`` frames (its
    already covered frames keep their first result); fewer than ``L`` frames form one group.

    Args:
        frames: ``(N, H, W)`` float frames in time order (``N >= 2``).
        **params: ``p``, ``c``, ``h``, ``tau``, ``max_iter``, ``tol`` of :func:`decompose_tensor`.

    Returns:
        :class:`~sirst.classical.low_rank.Decomposition` whose ``target`` and ``background`` are
        ``(N, H, W)`` float32; ``iterations`` is the largest over the groups, ``residual`` the
        worst, ``converged`` whether every group converged.
    """
    arr = np.asarray(frames)
    if arr.ndim != 3 or arr.shape[0] < 2:
        raise ValueError(f"mslstipt: expected (N, H, W) frames with N >= 2, got shape {arr.shape}")
    if frames_per_tensor < 2:
        raise ValueError(f"mslstipt: frames_per_tensor must be >= 2, got {frames_per_tensor}")
    stack = np.stack([as_image(f, f"frame {i}") for i, f in enumerate(arr)]) * grey_levels
    n = stack.shape[0]
    size = min(frames_per_tensor, n)
    starts = list(range(0, n - size + 1, size))
    if starts[-1] + size < n:
        starts.append(n - size)
    target = np.zeros_like(stack)
    background = np.zeros_like(stack)
    done = np.zeros(n, dtype=bool)
    iters, worst, all_ok = 0, 0.0, True
    for s in starts:
        d = np.moveaxis(stack[s : s + size], 0, -1)  # (H, W, L)
        b, t, it, res, ok = decompose_tensor(d, **params)  # type: ignore[arg-type]
        new = ~done[s : s + size]
        target[s : s + size][new] = np.moveaxis(t, -1, 0)[new]
        background[s : s + size][new] = np.moveaxis(b, -1, 0)[new]
        done[s : s + size] = True
        iters, worst, all_ok = max(iters, it), max(worst, res), all_ok and ok
    return Decomposition((target / grey_levels).astype(np.float32), (background / grey_levels).astype(np.float32),
                         iters, float(worst), all_ok)


def mslstipt_sequence(frames: np.ndarray, **kwargs: object) -> np.ndarray:
    """Multi-frame MSLSTIPT target maps ``(N, H, W)`` float32; see :func:`mslstipt_sequence_decompose`."""
    return mslstipt_sequence_decompose(frames, **kwargs).target  # type: ignore[arg-type]
