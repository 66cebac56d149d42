"""The decision rule: from a probe's nearest identities to match, unknown or ambiguous.

This module is the one replaceable place where gallery decides; the facade gathers
evidence and asks the rule in force (stored in the gallery's settings by ``calibrate``, else
the learned default of ``gallery.calibration.default_rule``) to decide.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# dlib's documented threshold for its ResNet descriptors (loss_metric margin 0.04 around 0.6).
DLIB_DISTANCE_THRESHOLD = 0.6

# "not_live" is the facade's, not a rule's: the liveness check vetoed the face before any search.
Outcome = Literal["match", "unknown", "ambiguous", "not_live"]


@dataclass(frozen=True)
class Evidence:
    """What the gallery knows about one candidate identity for one probe face."""

    person_id: int
    distance: float  # Euclidean distance from the probe to the identity's nearest enrolled face
    # Mean distance from the identity to its 10 nearest other enrolled identities
    # (gallery.calibration.protocol.cohort_distance); learned rules normalise by it.
    cohort_distance: float | None = None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    index: int | None  # position in the evidence list of the matched identity, when outcome == "match"
    confidence: float  # probability that a match is right; for unknown, that the probe is a stranger


class DecisionRule(Protocol):
    kind: str
    # The rule reads ``Evidence.cohort_distance`` of the two nearest identities (the facade
    # computes it only for rules that do: a few extra searches per probe, cached per gallery state).
    uses_cohort: bool

    def decide(self, evidence: Sequence[Evidence], gallery_size: int) -> Decision: ...

    def describe(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DistanceThreshold:
    """Accept the nearest identity when it lies within a fixed distance."""

    threshold: float = DLIB_DISTANCE_THRESHOLD
    kind: str = "distance_threshold"
    uses_cohort = False

    def decide(self, evidence: Sequence[Evidence], gallery_size: int) -> Decision:
        if not evidence or evidence[0].distance > self.threshold:
            return Decision("unknown", None, 1.0)
        return Decision("match", 0, 1.0)

    def describe(self) -> str:
        return f"distance <= {self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold}


def rule_fingerprint(rule: DecisionRule) -> str:
    """A short stable id of a rule's parameters: the audit log records it instead of the whole rule."""
    canonical = json.dumps(rule.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def rule_from_dict(data: dict[str, Any]) -> DecisionRule:
    """Rebuild a stored rule."""
    if data.get("kind") == DistanceThreshold.kind:
        return DistanceThreshold(threshold=float(data["threshold"]))
    from gallery.calibration.rules import NormalisedDistance  # learned rules: numpy only, imported on demand

    if data.get("kind") == NormalisedDistance.kind:
        return NormalisedDistance.from_dict(data)
    raise ValueError(f"unknown decision rule kind {data.get('kind')!r}")
