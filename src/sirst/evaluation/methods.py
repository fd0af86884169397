"""Methods as the harness sees them: a sample in, a score map and the binary prediction out.

A :class:`Method` has a ``name``, a ``kind`` (``"classical"``, ``"network"`` or ``"saved"``), the label
of its threshold and the thresholds of its Pd-Fa curve, and three steps: ``read(sample)``, the input of
the method (the sample's image; for saved predictions, the map saved for the sample's id),
``respond(input)``, the timed work of the method itself (a classical response map, a network's
probabilities; nothing for saved maps), and ``output(response)``, the score the curves sweep and the
prediction the metrics score. Classical responses are divided by their maximum and binarised with the
DNANet paper's adaptive threshold (Eq. 13, :mod:`sirst.classical.threshold`) or a fixed one; networks
at probability 0.5; saved maps at 0.5 or a fixed threshold.

Methods are written as specs, parsed in one place (:func:`parse_methods`, :func:`build_methods`):
a classical name (``tophat``), ``all`` (every classical method), ``dnanet:WEIGHTS`` with WEIGHTS a
bundled tag (``dnanet:nuaa``) or a checkpoint path, or ``preds:DIR``: a folder of saved score maps or
masks named by image id (``DIR/<id>.png`` or ``.npy``; ``sirst detect``'s ``masks/`` or ``scores/``, or
another tool's output).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from sirst.evaluation.samples import Sample

__all__ = [
    "CURVE_THRESHOLDS",
    "NETWORK_CURVE_THRESHOLDS",
    "ClassicalMethod",
    "Method",
    "MethodOutput",
    "NetworkMethod",
    "SavedMethod",
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

    def read(self, sample: Sample) -> np.ndarray: ...

    def respond(self, image: np.ndarray) -> np.ndarray: ...

    def output(self, response: np.ndarray) -> MethodOutput: ...

    def __call__(self, image: np.ndarray) -> MethodOutput: ...


class _MethodBase:
    """What the methods share: ``read`` gives the sample's image (saved predictions read their own
    map instead), calling the method runs ``respond`` then ``output``."""

    def read(self, sample: Sample) -> np.ndarray:
        """The sample's image, ``(H, W)`` float32 in [0, 1] (:func:`sirst.data.io.read_image`)."""
        from sirst.data.io import read_image

        return read_image(sample.image)

    def __call__(self, image: np.ndarray) -> MethodOutput:
        return self.output(self.respond(image))  # type: ignore[attr-defined]


class ClassicalMethod(_MethodBase):
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


class NetworkMethod(_MethodBase):
    """A network checkpoint run through :class:`sirst.detect.Detector`; prediction = probability > 0.5."""

    kind = "network"
    threshold = "0.5"
    curve_thresholds = NETWORK_CURVE_THRESHOLDS

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", name: str | None = None) -> None:
        from sirst.checkpoint import model_from_checkpoint
        from sirst.detect import Detector
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


class SavedMethod(_MethodBase):
    """Saved predictions: the map of each sample read from ``folder/<id>.png`` or ``<id>.npy`` (score maps
    or binary masks, as :func:`sirst.evaluation.saved.read_map` reads them: PNG scaled to [0, 1]), cut at
    ``threshold``: a number in [0, 1), or ``"adaptive"``, the default, which means 0.5 here (Eq. 13 is for
    classical response maps; saved maps are probabilities or masks). The map must have its image's size.
    """

    kind = "saved"
    curve_thresholds = NETWORK_CURVE_THRESHOLDS

    def __init__(self, folder: str | os.PathLike, threshold: str | float = "adaptive", name: str | None = None) -> None:
        from sirst.classical.threshold import parse_threshold

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: folder of saved predictions not found")
        fixed = parse_threshold(threshold)
        self.fixed = 0.5 if fixed is None else fixed
        self.threshold = str(self.fixed)
        self.name = name or f"preds:{self.folder}"

    def read(self, sample: Sample) -> np.ndarray:
        """The map saved for ``sample.id``: ``(H, W)`` float32."""
        from sirst.evaluation.saved import MAP_SUFFIXES, read_map

        found = [p for p in (self.folder / f"{sample.id}{s}" for s in MAP_SUFFIXES) if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{self.folder / (sample.id + '.png')}: no saved prediction (.png or .npy) for "
                                    f"image {sample.image}")
        if len(found) > 1:
            raise ValueError(f"{found[0]}: image {sample.id} has two saved predictions ({found[1].name} too)")
        return read_map(found[0])

    def respond(self, image: np.ndarray) -> np.ndarray:
        """The saved map is the response: nothing to compute."""
        return image

    def output(self, response: np.ndarray) -> MethodOutput:
        score = np.asarray(response, dtype=np.float32)
        return MethodOutput(score=score, pred=score > self.fixed)


def parse_methods(spec: str) -> list[str]:
    """``"tophat,ipi,dnanet:W.pt,preds:DIR"`` -> names; ``all`` expands to every classical method.

    Raises ``ValueError`` naming the entry (and the valid classical names) for a bad one, and
    ``FileNotFoundError`` for network weights or prediction folders that do not exist.
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
            kind, value = part.split(":", 1)
            kind = kind.lower()
            if kind not in ("dnanet", "preds") or not value:
                raise ValueError(f"{part}: entries with a colon are dnanet:WEIGHTS (a network) or preds:DIR "
                                 "(saved predictions)")
            if kind == "dnanet" and not resolve_weights(value).is_file():
                raise FileNotFoundError(f"{value}: network weights not found (from --methods entry {part!r})")
            if kind == "preds" and not Path(value).is_dir():
                raise FileNotFoundError(f"{value}: folder of saved predictions not found (from --methods entry {part!r})")
            names.append(f"{kind}:{value}")
        else:
            get_method(part)
            names.append(part.lower())
    if not names:
        raise ValueError(f"{spec!r}: --methods lists no method")
    return names


def parse_method(name: str, device: str = "cpu", threshold: str | float = "adaptive") -> Method:
    """The method of one parsed spec (:func:`parse_methods`), named by it: ``dnanet:WEIGHTS`` (on
    ``device``), ``preds:DIR`` or a classical name (both at ``threshold``)."""
    if name.startswith("dnanet:"):
        return NetworkMethod(name.split(":", 1)[1], device, name=name)
    if name.startswith("preds:"):
        return SavedMethod(name.split(":", 1)[1], threshold, name=name)
    return ClassicalMethod(name, threshold)


def build_methods(weights: list[str], methods: str | None, device: str = "cpu") -> list[Method]:
    """Networks from ``weights`` (``PATH`` or ``LABEL=PATH``, named by the label or the file stem)
    then the methods of a ``--methods`` spec, as ``sirst visualize`` takes them.

    Raises ``ValueError`` for an empty selection or duplicate names.
    """
    out: list[Method] = []
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
