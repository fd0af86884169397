"""Methods as the visualisation sees them: image in, score map and the binary prediction out.

The binarisation is the one ``sirst eval-method`` / ``sirst compare`` score: classical responses
are divided by their maximum and thresholded with the adaptive threshold of the DNANet paper
(Eq. 13), networks at logit 0 (probability 0.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MethodOutput:
    """One method's output on one image.

    Attributes:
        score: ``(H, W)`` float32 in [0, 1]: the normalised response (classical) or the probability
            (network); the Pd-Fa curves sweep thresholds on it.
        pred: ``(H, W)`` bool, the prediction the metrics score.
    """

    score: np.ndarray
    pred: np.ndarray


class ClassicalMethod:
    """A baseline of :mod:`sirst.classical`, binarised with the adaptive threshold (Eq. 13)."""

    kind = "classical"

    def __init__(self, name: str) -> None:
        from sirst.classical import get_method

        self._fn = get_method(name)
        self.name = name.strip().lower()

    def __call__(self, image: np.ndarray) -> MethodOutput:
        """``image`` ``(H, W)`` float in [0, 1] -> :class:`MethodOutput`."""
        from sirst.classical.evaluate import binarise, normalise_response

        score = normalise_response(self._fn(image))
        return MethodOutput(score=score, pred=binarise(score))


class NetworkMethod:
    """A network checkpoint run through :class:`sirst.inference.Detector`; prediction = logit > 0."""

    kind = "network"

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", name: str | None = None) -> None:
        from sirst.checkpoint import model_from_checkpoint
        from sirst.inference import Detector

        from sirst.weights import resolve_weights

        path = resolve_weights(weights)  # a path, or a bundled name (nuaa, nudt)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: network weights not found")
        self.detector = Detector(model_from_checkpoint(path, device), device=device)
        self.name = name or path.stem

    def __call__(self, image: np.ndarray) -> MethodOutput:
        from scipy.special import expit

        logits = self.detector.predict_logits([image])[0]
        return MethodOutput(score=expit(logits).astype(np.float32), pred=logits > 0)


def build_methods(weights: list[str], methods: str | None, device: str = "cpu") -> list[ClassicalMethod | NetworkMethod]:
    """Networks from ``weights`` (``PATH`` or ``LABEL=PATH``) then the methods of a ``--methods`` spec
    (classical names, ``all``, or ``dnanet:WEIGHTS`` as ``sirst compare`` accepts).

    Raises ``ValueError`` for an empty selection or duplicate names.
    """
    from sirst.cli.classical import parse_methods

    out: list[ClassicalMethod | NetworkMethod] = []
    for w in weights:
        label, sep, path = w.partition("=")
        out.append(NetworkMethod(path, device, label) if sep and label else NetworkMethod(w, device))
    if methods:
        for name in parse_methods(methods):
            if name.startswith("dnanet:"):
                out.append(NetworkMethod(name.split(":", 1)[1], device))
            else:
                out.append(ClassicalMethod(name))
    if not out:
        raise ValueError("no method to show: give --weights and/or --methods")
    names = [m.name for m in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"method names must be unique, got {dupes} twice; label networks with --weights LABEL=PATH")
    return out
