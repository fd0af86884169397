"""Candidate patches: the image and logit context around each target a segmentation network proposes,
the input of a second-stage verifier that tells targets from clutter."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from sirst.targets import component_maxima, label_components

#: Side of the stored context window around a candidate's peak, native pixels.
CONTEXT = 64
#: Logit used outside the frame.
PAD_LOGIT = -20.0


def candidate_windows(image: np.ndarray, logits: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Context windows around candidate peaks.

    Args:
        image: ``(H, W)`` grayscale in [0, 1] (any affine scale: the verifier normalises locally).
        logits: ``(H, W)`` the network's logits.
        peaks: ``(K, 2)`` int (row, col) of each candidate's highest logit.

    Returns:
        ``(K, 2, CONTEXT, CONTEXT)`` float32: the image (edge-padded) and the logits (padded with
        :data:`PAD_LOGIT`), the peak at ``(CONTEXT // 2, CONTEXT // 2)``.
    """
    half = CONTEXT // 2
    img = np.pad(np.asarray(image, np.float32), half, mode="edge")
    lgt = np.pad(np.asarray(logits, np.float32), half, constant_values=PAD_LOGIT)
    out = np.empty((len(peaks), 2, CONTEXT, CONTEXT), np.float32)
    for k, (r, c) in enumerate(np.asarray(peaks, int).reshape(-1, 2)):
        out[k, 0] = img[r : r + CONTEXT, c : c + CONTEXT]
        out[k, 1] = lgt[r : r + CONTEXT, c : c + CONTEXT]
    return out


def candidates(logits: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """The 8-connected components of ``logits > 0``: ``(labels, n, peak (n, 2) int, peak logit (n,))``."""
    labels, n = label_components(logits > 0)
    if n == 0:
        return labels, 0, np.zeros((0, 2), int), np.zeros(0)
    peak, pos = component_maxima(logits, labels, n)
    return labels, n, pos, peak


def candidate_records(image: np.ndarray, logits: np.ndarray, mask: np.ndarray | None) -> list[dict]:
    """One record per candidate (component of ``logits > 0``): ``label`` 1 when its centroid
    matches a target of ``mask`` (the metrics' matching, 3 px), else 0; ``peak_logit``, ``area``,
    ``row``, ``col`` (peak) and ``patch`` ``(2, CONTEXT, CONTEXT)`` float16."""
    from sirst.metrics import match_targets
    from sirst.targets import extract_targets

    labels, n, pos, peak = candidates(logits)
    if n == 0:
        return []
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    hit: set[int] = set()
    if mask is not None and mask.any():
        truth = extract_targets(mask)
        found = ndimage.center_of_mass(np.ones_like(labels), labels, np.arange(1, n + 1))
        pairs = match_targets(np.array([t.centroid for t in truth]), np.array(found, np.float64).reshape(n, 2))
        hit = {int(j) for j in pairs[:, 1]}
    windows = candidate_windows(image, logits, pos).astype(np.float16)
    return [{"label": int(k in hit), "peak_logit": float(peak[k]), "area": int(area[k]), "row": int(pos[k, 0]),
             "col": int(pos[k, 1]), "patch": windows[k]} for k in range(n)]


# ------------------------------------------------------------------------------------------------
# The verifier network
# ------------------------------------------------------------------------------------------------

#: Side of the verifier's input windows.
WINDOW = 32
#: Smallest local contrast scale (robust std) of the image windows: flat 8-bit sky has none.
MIN_SCALE = 2.0 / 255.0


def verifier_input(windows: np.ndarray) -> np.ndarray:
    """Context windows ``(K, 2, CONTEXT, CONTEXT)`` -> verifier input ``(K, 3, WINDOW, WINDOW)`` float32.

    Channel 0: the central ``WINDOW`` pixels of the image; 1: the whole context averaged down to
    ``WINDOW``; both as ``asinh`` of the contrast against the context's median in units of its robust
    standard deviation, so the input does not depend on the image's offset, gain or bit depth. Channel
    2: the central logits, clipped to +-16 and divided by 8.
    """
    windows = np.asarray(windows, np.float32)
    k = len(windows)
    img, lgt = windows[:, 0], windows[:, 1]
    flat = img.reshape(k, -1)
    med = np.median(flat, axis=1)
    mad = np.median(np.abs(flat - med[:, None]), axis=1)
    scale = np.maximum(1.4826 * mad, MIN_SCALE)
    z = np.arcsinh((img - med[:, None, None]) / scale[:, None, None])
    lo, hi = (CONTEXT - WINDOW) // 2, (CONTEXT + WINDOW) // 2
    f = CONTEXT // WINDOW
    ctx = z.reshape(k, WINDOW, f, WINDOW, f).mean(axis=(2, 4))
    return np.stack([z[:, lo:hi, lo:hi], ctx, np.clip(lgt[:, lo:hi, lo:hi], -16, 16) / 8.0], axis=1)


def _verifier_net(width: int = 16):
    import torch.nn as nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, width), *block(width, width), nn.MaxPool2d(2),
        *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),
        *block(2 * width, 4 * width), *block(4 * width, 4 * width),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * width, 1),
    )


def lone_pixel_spike(image: np.ndarray, labels: np.ndarray, n: int, half: int = 15,
                     among: np.ndarray | None = None) -> np.ndarray:
    """How much each component's brightest image pixel stands above its eight neighbours, as a share of
    its height above the local background: ``(peak - max(neighbours)) / (peak - median of the
    (2 * half + 1)^2 window)``, ``(n,)``. About 1 for a lone hot pixel; real targets are spread by the
    optics' blur (NUAA-SIRST and NUDT-SIRST training targets: at most 0.62, 99 % under 0.55).

    Args:
        image: ``(H, W)`` grayscale.
        labels: ``(H, W)`` component labels ``1..n``.
        among: ``(n,)`` bool: measure only these components (the others get 0).
    """
    image = np.asarray(image, np.float32)
    peaks, pos = component_maxima(image, labels, n)
    out = np.zeros(n)
    for k in np.flatnonzero(np.ones(n, bool) if among is None else among):
        r, c = pos[k]
        around = image[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].copy()
        around[r - max(0, r - 1), c - max(0, c - 1)] = -np.inf  # the peak itself
        top = float(around.max()) if around.size > 1 else float(peaks[k])
        background = float(np.median(image[max(0, r - half) : r + half + 1, max(0, c - half) : c + half + 1]))
        out[k] = (peaks[k] - top) / max(peaks[k] - background, MIN_SCALE)
    return out


class Verifier:
    """The second stage of detection: a small CNN that scores each candidate target (a component of
    ``logits > 0``) from the image and logits around its peak, and drops those scoring at or below
    ``threshold``. A cascade: the confidence gate drops weak candidates first, and candidates whose
    peak logit exceeds ``sure_logit`` are kept unscored (the network is rarely that sure of clutter,
    and a second stage trained on few scenes should not overrule it there). With ``max_spike``, any
    candidate whose brightest image pixel stands alone (:func:`lone_pixel_spike` above it: a hot or
    defective sensor pixel, which the optics' blur would have spread were it a target) is dropped too.

    Args:
        state: ``{"state_dict": ..., "width": int, "threshold": float, "sure_logit": float | None,
            "max_spike": float | None}`` as stored in a checkpoint under ``"verifier"`` (weights in any
            float dtype; no ``sure_logit``: every candidate is scored; no ``max_spike``: no lone-pixel check).
        where: names the source in errors.
    """

    def __init__(self, state: dict, where: str = "checkpoint") -> None:
        try:
            self.width = int(state["width"])
            self.threshold = float(state["threshold"])
            sure = state.get("sure_logit")
            self.sure_logit = float(sure) if sure is not None else math.inf
            spike = state.get("max_spike")
            self.max_spike = float(spike) if spike is not None else math.inf
            net = _verifier_net(self.width)
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()})
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{where}: its verifier entry cannot be loaded ({type(exc).__name__}: {exc})") from None
        self.net = net.eval()

    def state(self, half: bool = True) -> dict:
        """The checkpoint entry (fp16 weights by default)."""
        sd = {k: v.half() if half and v.is_floating_point() else v for k, v in self.net.state_dict().items()}
        return {"state_dict": sd, "width": self.width, "threshold": self.threshold,
                "sure_logit": None if math.isinf(self.sure_logit) else self.sure_logit,
                "max_spike": None if math.isinf(self.max_spike) else self.max_spike}

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities ``(K,)`` that the candidates of :func:`candidate_windows` ``(K, 2, C, C)`` are targets."""
        import torch

        if len(windows) == 0:
            return np.zeros(0, np.float32)
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(verifier_input(windows)))[:, 0]
        return torch.sigmoid(logits).numpy()

    def gate(self, image: np.ndarray, logits: np.ndarray, min_peak: float = 0.0) -> np.ndarray:
        """``logits`` ``(H, W)`` with the candidates the verifier rejects set to
        :data:`sirst.targets.GATED_LOGIT` (a copy when any is; kept targets keep their exact masks).

        ``image``: the ``(H, W)`` frame the logits were predicted from, grayscale in [0, 1].
        ``min_peak``: the confidence gate, applied first on the same components (as
        :func:`sirst.targets.gate_weak_components` would; only its survivors are verified)."""
        from sirst.targets import GATED_LOGIT

        labels, n, pos, peak = candidates(logits)
        if n == 0:
            return logits
        drop = peak <= min_peak if min_peak > 0 else np.zeros(n, bool)
        unsure = ~drop & (peak <= self.sure_logit)
        if unsure.any():
            drop[unsure] = self.score_windows(candidate_windows(image, logits, pos[unsure])) <= self.threshold
        if math.isfinite(self.max_spike) and not drop.all():
            drop |= lone_pixel_spike(image, labels, n, among=~drop) > self.max_spike
        reject = np.concatenate([[False], drop])[labels]
        if not reject.any():
            return logits
        out = np.array(logits, copy=True)
        out[reject] = GATED_LOGIT
        return out


def confirm_targets(logits: np.ndarray, image: np.ndarray | None, min_peak: float,
                    verifier: Verifier | None) -> np.ndarray:
    """The stages after the network, as detection and evaluation apply them: the confidence gate
    (:func:`sirst.targets.gate_weak_components`), then the ``verifier`` if any, on ``logits`` ``(H, W)``
    of the grayscale frame ``image`` ``(H, W)`` (read only by a verifier); dropped targets come back
    at ``GATED_LOGIT``."""
    from sirst.targets import gate_weak_components

    if verifier is None:
        return gate_weak_components(logits, min_peak)
    return verifier.gate(image, logits, min_peak=min_peak)
