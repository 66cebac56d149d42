"""The domain check: do this gallery's own people sit as far apart as the calibration photos' did?

A rule learned on one kind of photo (LFW: colour, in the wild) meets others at a site: greyscale
studio shots, a camera's small faces, harsh lighting. There different people sit closer together
(att_orl's median different-person distance 0.756, Extended Yale B's lower still, LFW's 0.816),
so a stranger lands within a fixed distance of someone more often, and a small gallery, whose rule
reads the plain distance, lets more strangers in than the rule promises. Every pair of enrolled
people is a pair of different people from the site's own domain, so the gallery can measure it:

    spread = the median distance between enrolled people's templates (as the rule scores them)

over at most ``MEASURED_PEOPLE`` of them. Calibration records how low that median falls by chance
among galleries of the same size drawn from its own photos (``DomainCheck``: the 5% quantile at
each size); a gallery below it is *crowded*: its faces are closer together than the rule was
learned on, and the stated stranger rate is not expected to hold there. The gallery says so
(``Gallery.info``, the enrolment desk) and identify decides more strictly: it reads every distance
(the candidates', the cohort distances) in units of the gallery's own spread,

    f = reference / sigma,    sigma = (P * spread + K * reference) / (P + K)

with P the measured pairs and K prior pairs at the calibration's ``reference`` (a few pairs say
little, so sigma stays near the reference). A crowded spread lies below the reference, so f > 1:
a match only gets harder. A gallery that is not crowded reads distances as they are (f = 1), so
galleries like the calibration's pay nothing. One person: nothing to measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gallery.decision.rule import Evidence

# People whose pairs are measured, at most (every k-th in a fixed order beyond): the median of
# 1,225 pairs is already steady, and the calibration's chance spread is learned at the same count.
MEASURED_PEOPLE = 50
# Prior pairs at the reference in a crowded gallery's scale (fixed in advance with the domain scale
# it gates: docs/research/stranger-rate-2026-11.md, "a domain scale").
DOMAIN_PAIRS = 10.0


def measured_positions(count: int) -> np.ndarray:
    """Positions, in a fixed order of ``count`` people, whose pairs the check measures: all, or every k-th."""
    if count <= MEASURED_PEOPLE:
        return np.arange(count)
    return np.linspace(0, count - 1, MEASURED_PEOPLE).round().astype(np.int64)


def spread(between: np.ndarray) -> float | None:
    """The median over pairs of a square person-to-person distance matrix (diagonal ignored); None under 2 people."""
    people = len(between)
    if people < 2:
        return None
    return float(np.median(between[np.triu_indices(people, 1)]))


def domain_scale(median: float, measured: int, reference: float, prior_pairs: float = DOMAIN_PAIRS) -> float:
    """f for a crowded gallery: its ``measured`` people ``median`` apart (its spread), against the ``reference``.

    Never below 1: the scale only ever makes a match harder.
    """
    pairs = measured * (measured - 1) / 2
    sigma = (pairs * median + prior_pairs * reference) / (pairs + prior_pairs)
    return max(1.0, reference / sigma)


def in_domain_units(evidence: Sequence[Evidence], scale: float) -> list[Evidence]:
    """The evidence with every distance and cohort distance multiplied by ``scale`` (as a crowded gallery reads it)."""
    if scale == 1.0:
        return list(evidence)
    return [
        Evidence(e.person_id, e.distance * scale, None if e.cohort_distance is None else e.cohort_distance * scale)
        for e in evidence
    ]


@dataclass(frozen=True)
class DomainCheck:
    """How low a gallery's spread falls by chance on the calibration photos, by gallery size.

    Attributes:
        quantile: the share of calibration galleries whose spread falls below the limit (0.05).
        sizes: gallery sizes (people, from 2) the limits were learned at, ascending.
        limits: at each size, the ``quantile`` of the spread over the calibration's galleries.
    """

    quantile: float
    sizes: tuple[int, ...]
    limits: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.sizes or len(self.sizes) != len(self.limits):
            raise ValueError("need one limit per gallery size")
        if list(self.sizes) != sorted(set(self.sizes)) or self.sizes[0] < 2:
            raise ValueError("domain check sizes must start at 2 or more and strictly ascend")
        if not 0.0 < self.quantile < 0.5 or min(self.limits) <= 0:
            raise ValueError("a domain check needs a quantile in (0, 0.5) and positive limits")

    def limit(self, people: int) -> float | None:
        """The limit for a gallery of ``people``: the largest table size at or below it (None below the table).

        The limit rises with size (a median of more pairs strays less), so holding the last
        row's beyond it, or a smaller size's between rows, can only raise fewer alarms.
        """
        at_or_below = [limit for size, limit in zip(self.sizes, self.limits, strict=True) if size <= people]
        return at_or_below[-1] if at_or_below else None

    def to_dict(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "sizes": list(self.sizes), "limits": list(self.limits)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> DomainCheck:
        return DomainCheck(
            float(data["quantile"]), tuple(int(s) for s in data["sizes"]), tuple(float(v) for v in data["limits"])
        )
