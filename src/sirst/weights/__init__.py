"""Weights bundled with the package, so ``sirst detect`` works without downloading anything.

Three DNANet-ResNet18 models trained by us (see MODEL_CARD.md at the repository root for data,
protocol, hardware and measured results), stored in fp16:

- ``general``: ``nuaa`` fine-tuned on both datasets' train splits plus real target-free frames and
  synthesized hard negatives, for scenes none of the data shows; the default.
- ``nuaa``: the paper's protocol on the NUAA-SIRST 50_50 train split (real infrared images).
- ``nudt``: the paper's protocol on the NUDT-SIRST 50_50 train split (real backgrounds, synthesized targets).

Anywhere a checkpoint path is accepted (``--weights``, :func:`sirst.checkpoint.read_checkpoint`),
one of these names selects the bundled file; in Python they are the pretrained tags of the model
registry (``sirst.models.create_model("dnanet", pretrained="nuaa")``). What each was trained on and
its test IoU come from ``cards.json`` next to the files, which ``scripts/model_card.py`` writes from
the same results as MODEL_CARD.md.

This module only locates files: it builds no model (that is :mod:`sirst.checkpoint` and
:mod:`sirst.models`, which import it, never the other way round).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUNDLED",
    "DEFAULT_WEIGHTS",
    "PretrainedInfo",
    "bundled_names",
    "default_weights_path",
    "pretrained_info",
    "resolve_weights",
]

BUNDLED: dict[str, str] = {"general": "dnanet_general.pt", "nuaa": "dnanet_nuaa.pt", "nudt": "dnanet_nudt.pt"}
DEFAULT_WEIGHTS = "general"
#: Model-card facts of each bundled file, written by scripts/model_card.py.
CARDS_FILE = "cards.json"


def bundled_names() -> list[str]:
    """Names of the bundled weights, the default first."""
    return [DEFAULT_WEIGHTS] + sorted(n for n in BUNDLED if n != DEFAULT_WEIGHTS)


def default_weights_path(name: str = DEFAULT_WEIGHTS) -> Path:
    """Path of the bundled weights file ``name`` (the default weights when not given)."""
    if name not in BUNDLED:
        raise ValueError(f"{name}: no bundled weights of that name; bundled: {', '.join(bundled_names())}")
    return Path(__file__).resolve().parent / BUNDLED[name]


def resolve_weights(spec: str | os.PathLike | None) -> Path:
    """The checkpoint file for ``spec``: ``None`` = the default bundled weights, a bundled name
    (``"general"``, ``"nuaa"``, ``"nudt"``) = that file, anything else = a path (an existing file of that name wins).

    Raises ``FileNotFoundError`` when bundled weights are asked for but missing from the installation.
    """
    if spec is not None and (str(spec) not in BUNDLED or Path(spec).exists()):
        return Path(spec)
    path = default_weights_path(DEFAULT_WEIGHTS if spec is None else str(spec))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: bundled weights are missing from this installation; pass --weights")
    return path


@dataclass(frozen=True)
class PretrainedInfo:
    """One pretrained tag of the model registry.

    Attributes:
        model: registry name of the architecture (``"dnanet"``).
        tag: the weights' name (``"nuaa"``); ``create_model(model, pretrained=tag)``.
        trained_on: the datasets whose train splits it learnt from.
        data: what exactly it was trained on (the model card's words).
        test_iou: dataset -> IoU (fraction) on its ``50_50`` test split, exact protocol.
        default: the default weights of ``sirst detect`` and ``sirst eval``.
    """

    model: str
    tag: str
    trained_on: tuple[str, ...]
    data: str
    test_iou: dict[str, float]
    default: bool

    @property
    def spec(self) -> str:
        """``model:tag``, the method spec of ``sirst compare``."""
        return f"{self.model}:{self.tag}"

    def __str__(self) -> str:
        ious = ", ".join(f"{d} {v * 100:.2f}" for d, v in self.test_iou.items())
        return f"{self.spec}{' (default)' if self.default else ''}: trained on {' + '.join(self.trained_on)}; test IoU % {ious}"


def pretrained_info() -> list[PretrainedInfo]:
    """The bundled weights as :class:`PretrainedInfo`, the default first (from ``cards.json``)."""
    path = Path(__file__).resolve().parent / CARDS_FILE
    try:
        cards = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"{path}: model-card facts of the bundled weights are unreadable ({exc})") from None
    return [
        PretrainedInfo(
            model=cards[name]["model"],
            tag=name,
            trained_on=tuple(cards[name]["trained_on"]),
            data=cards[name]["data"],
            test_iou={k: float(v) for k, v in cards[name]["test_iou"].items()},
            default=name == DEFAULT_WEIGHTS,
        )
        for name in bundled_names()
        if name in cards
    ]
