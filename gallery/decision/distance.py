"""The plain-distance rule: accept the nearest identity within a fixed distance (dlib's 0.6 by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gallery.decision.rule import Decision, Evidence

# dlib's documented threshold for its ResNet descriptors (loss_metric margin 0.04 around 0.6).
DLIB_DISTANCE_THRESHOLD = 0.6


@dataclass(frozen=True)
class DistanceThreshold:
    """Accept the nearest identity when it lies within a fixed distance."""

    threshold: float = DLIB_DISTANCE_THRESHOLD
    kind: ClassVar[str] = "distance_threshold"
    uses_cohort: ClassVar[bool] = False

    def decide(self, evidence: Sequence[Evidence], gallery_size: int) -> Decision:
        if not evidence or evidence[0].distance > self.threshold:
            return Decision("unknown", None, 1.0)
        return Decision("match", 0, 1.0)

    def describe(self) -> str:
        return f"distance <= {self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> DistanceThreshold:
        return DistanceThreshold(threshold=float(data["threshold"]))
