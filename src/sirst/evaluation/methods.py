"""Methods as the harness sees them: an image in, a score map and the binary prediction out.

A :class:`Method` has a ``name``, a ``kind`` (``"classical"`` or ``"network"``), the label of its
threshold and the thresholds of its Pd-Fa curve, and two steps: ``respond(image)``, the timed work of
the method itself (a classical response map, or a network's probabilities), and ``output(response)``,
the score the curves sweep and the prediction the metrics score. Classical responses are divided by
their maximum and binarised with the DNANet paper's adaptive threshold (Eq. 13,
:mod:`sirst.classical.threshold`) or a fixed one; networks at probability 0.5.

Methods are written as specs, parsed in one place (:func:`parse_methods`, :func:`build_methods`):
a classical name (``tophat``), ``all`` (every classical method) or ``dnanet:WEIGHTS`` with WEIGHTS a
bundled tag (``dnanet:nuaa``) or a checkpoint path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "CURVE_THRESHOLDS",
    "NETWORK_CURVE_THRESHOLDS",
    "ClassicalMethod",
    "Method",
    "MethodOutput",
    "NetworkMethod",
    "build_methods",
    "parse_method",
    "parse_methods",
]

# Curve thresholds on the normalised response / probability.
CURVE_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.0, 1.0, 0.05), 2))
#: Probability thresholds of a network's Pd-Fa curve: evenly spaced in logit from -9 to 9 (1.2e-4 to
#: 1 - 1.2e-4, 0.5 included). A trained network's probabilities sit near 0 and 1, so evenly spaced
#: probabilities would bunch the curve into a few points.
NETWORK_CURVE_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in 1.0 / (1.0 + np.exp(-np.linspace(-9.0, 9.0, 37))))


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


@runtime_checkable
class Method(Protocol):
    """What the harness needs from a method (see the module docstring)."""

    name: str
    kind: str
    threshold: str
    curve_thresholds: tuple[float, ...]

    def respond(self, image: np.ndarray) -> np.ndarray: ...

    def output(self, response: np.ndarray) -> MethodOutput: ...

    def __call__(self, image: np.ndarray) -> MethodOutput: ...


class ClassicalMethod:
    """A baseline of :mod:`sirst.classical`, binarised with Eq. 13 (``threshold="adaptive"``) or a
    fixed threshold in [0, 1) on the response divided by its maximum."""

    kind = "classical"
    curve_thresholds = CURVE_THRESHOLDS

    def __init__(self, name: str, threshold: str | float = "adaptive") -> None:
        from sirst.classical import get_method
        from sirst.classical.threshold import parse_threshold

        self._fn = get_method(name)
        self.name = name.strip().lower()
        self.fixed = parse_threshold(threshold)
        self.threshold = "adaptive" if self.fixed is None else str(self.fixed)

    def respond(self, image: np.ndarray) -> np.ndarray:
        """``image`` ``(H, W)`` float in [0, 1] -> the raw response map ``(H, W)``."""
        return self._fn(image)

    def output(self, response: np.ndarray) -> MethodOutput:
        from sirst.classical.threshold import binarise, normalise_response

        score = normalise_response(np.asarray(response, dtype=np.float32))
        return MethodOutput(score=score, pred=binarise(score, self.fixed))

    def __call__(self, image: np.ndarray) -> MethodOutput:
        return self.output(self.respond(image))


class NetworkMethod:
    """A network checkpoint run through :class:`sirst.inference.Detector`; prediction = probability > 0.5."""

    kind = "network"
    threshold = "0.5"
    curve_thresholds = NETWORK_CURVE_THRESHOLDS

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", name: str | None = None) -> None:
        from sirst.checkpoint import model_from_checkpoint
        from sirst.inference import Detector
        from sirst.weights import resolve_weights

        path = resolve_weights(weights)  # a path, or a bundled name (nuaa, nudt)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: network weights not found")
        self.path = path
        # No global torch.set_grad_enabled(False) here: callers go on training (sirst experiment);
        # the Detector runs under inference_mode.
        self.detector = Detector(model_from_checkpoint(path, device), device=device)
        self.name = name or path.stem

    def respond(self, image: np.ndarray) -> np.ndarray:
        """``image`` ``(H, W)`` float in [0, 1] -> target probabilities ``(H, W)`` float32."""
        return np.asarray(self.detector.predict_scores([image])[0], dtype=np.float32)

    def output(self, response: np.ndarray) -> MethodOutput:
        return MethodOutput(score=response, pred=response > 0.5)

    def __call__(self, image: np.ndarray) -> MethodOutput:
        return self.output(self.respond(image))


def parse_methods(spec: str) -> list[str]:
    """``"tophat,ipi,dnanet:W.pt"`` -> names; ``all`` expands to every classical method.

    Raises ``ValueError`` naming the entry (and the valid classical names) for a bad one, and
    ``FileNotFoundError`` for network weights that do not exist.
    """
    from sirst.classical import get_method, list_methods
    from sirst.weights import resolve_weights

    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.lower() == "all":
            names.extend(list_methods())
        elif ":" in part:
            kind, weights = part.split(":", 1)
            if kind.lower() != "dnanet" or not weights:
                raise ValueError(f"{part}: network entries are written dnanet:WEIGHTS")
            if not resolve_weights(weights).is_file():
                raise FileNotFoundError(f"{weights}: network weights not found (from --methods entry {part!r})")
            names.append(f"dnanet:{weights}")
        else:
            get_method(part)
            names.append(part.lower())
    if not names:
        raise ValueError(f"{spec!r}: --methods lists no method")
    return names


def parse_method(name: str, device: str = "cpu", threshold: str | float = "adaptive") -> ClassicalMethod | NetworkMethod:
    """The method of one parsed spec (:func:`parse_methods`): ``dnanet:WEIGHTS`` (named so) or a
    classical name (at ``threshold``)."""
    if name.startswith("dnanet:"):
        return NetworkMethod(name.split(":", 1)[1], device, name=name)
    return ClassicalMethod(name, threshold)


def build_methods(weights: list[str], methods: str | None, device: str = "cpu") -> list[ClassicalMethod | NetworkMethod]:
    """Networks from ``weights`` (``PATH`` or ``LABEL=PATH``, named by the label or the file stem)
    then the methods of a ``--methods`` spec, as ``sirst visualize`` takes them.

    Raises ``ValueError`` for an empty selection or duplicate names.
    """
    out: list[ClassicalMethod | NetworkMethod] = []
    for w in weights:
        label, sep, path = w.partition("=")
        out.append(NetworkMethod(path, device, label) if sep and label else NetworkMethod(w, device))
    if methods:
        for name in parse_methods(methods):
            method = parse_method(name, device)
            if isinstance(method, NetworkMethod):  # visualize names networks by their file
                method.name = method.path.stem
            out.append(method)
    if not out:
        raise ValueError("no method to show: give --weights and/or --methods")
    names = [m.name for m in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"method names must be unique, got {dupes} twice; label networks with --weights LABEL=PATH")
    return out
