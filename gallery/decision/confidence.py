"""Match confidence at identify time: a monotone map from a rule's margin to the probability the match is right.

The curve is fitted offline (``gallery.calibration.confidence.fit_confidence``) and stored with
the rule; here it is only read and evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, overload

import numpy as np


@dataclass(frozen=True)
class ConfidenceCurve:
    """P(match is right) as a non-increasing piecewise-linear function of the margin.

    The margin is log(ratio) - log(threshold): negative inside the acceptance region.
    """

    margins: tuple[float, ...]  # ascending knots
    probabilities: tuple[float, ...]  # non-increasing, in [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR] when fitted

    @overload
    def __call__(self, margin: float) -> np.float64: ...

    @overload
    def __call__(self, margin: np.ndarray) -> np.ndarray: ...

    def __call__(self, margin: float | np.ndarray) -> np.float64 | np.ndarray:
        """Probability at ``margin``; flat beyond the end knots."""
        return np.interp(margin, self.margins, self.probabilities)

    def to_dict(self) -> dict[str, Any]:
        return {"margins": list(self.margins), "probabilities": list(self.probabilities)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ConfidenceCurve:
        return ConfidenceCurve(tuple(map(float, data["margins"])), tuple(map(float, data["probabilities"])))
