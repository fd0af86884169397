"""The two evaluation protocols as objects: what each one changes, named once.

Every metric takes ``protocol`` as a name (``"exact"``, ``"reference"``) or a :class:`MetricProtocol`
and reads the rule it needs from the object, so no ``if protocol == ...`` chains spread through the
code. See :mod:`sirst.metrics` for what the two protocols mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

__all__ = ["EXACT", "PROTOCOLS", "REFERENCE", "REFERENCE_SIZE", "MetricProtocol", "Protocol", "get_protocol"]

#: Side of the square the reference protocol resizes everything to.
REFERENCE_SIZE: int = 256


@dataclass(frozen=True)
class MetricProtocol:
    """The rules of one evaluation protocol.

    Attributes:
        name: ``"exact"`` or ``"reference"`` (what reports and JSON files print).
        resize_to: side of the square every score map and mask is resized to first (``None``: native size).
        greedy_matching: match targets first-come in label order (public code) instead of the
            maximum one-to-one matching.
        area_value_quirk: false-alarm pixels skip every component whose area equals a matched one's.
        eps_ratios: IoU is ``I / (eps + U)`` and nIoU averages over all images (empty unions count 0).
    """

    name: str
    resize_to: int | None
    greedy_matching: bool
    area_value_quirk: bool
    eps_ratios: bool

    def __str__(self) -> str:
        return self.name


EXACT = MetricProtocol("exact", resize_to=None, greedy_matching=False, area_value_quirk=False, eps_ratios=False)
REFERENCE = MetricProtocol(
    "reference", resize_to=REFERENCE_SIZE, greedy_matching=True, area_value_quirk=True, eps_ratios=True
)
_BY_NAME: dict[str, MetricProtocol] = {p.name: p for p in (EXACT, REFERENCE)}
#: Valid protocol names.
PROTOCOLS: tuple[str, ...] = tuple(_BY_NAME)

#: What a ``protocol`` argument accepts.
Protocol = Union[Literal["exact", "reference"], MetricProtocol]


def get_protocol(protocol: Protocol) -> MetricProtocol:
    """The :class:`MetricProtocol` of a name (or the object itself); a ValueError lists the valid names."""
    if isinstance(protocol, MetricProtocol):
        return protocol
    try:
        return _BY_NAME[protocol]
    except (KeyError, TypeError):
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}") from None
