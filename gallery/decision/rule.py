"""What a decision rule is: the evidence it reads, the decision it returns, and the protocol every rule meets.

The facade gathers the evidence (a probe's nearest identities, and their cohort distances for
rules that read them) and asks the rule in force to decide; ``gallery.decision`` holds the
rules themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# "not_live" is the facade's, not a rule's: the liveness check vetoed the face before any search.
Outcome = Literal["match", "unknown", "ambiguous", "not_live"]


@dataclass(frozen=True)
class Evidence:
    """What the gallery knows about one candidate identity for one probe face."""

    person_id: int
    distance: float  # Euclidean distance from the probe to the identity's nearest enrolled face
    # Mean distance from the identity to its 10 nearest other enrolled identities
    # (gallery.decision.cohort.cohort_distance); learned rules normalise by it.
    cohort_distance: float | None = None


@dataclass(frozen=True)
class Decision:
    """A rule's answer for one probe face."""

    outcome: Outcome
    index: int | None  # position in the evidence list of the matched identity, when outcome == "match"
    confidence: float  # probability that a match is right; for unknown, that the probe is a stranger


class DecisionRule(Protocol):
    """A decision rule: what ``identify`` asks, and what ``calibrate`` learns and stores.

    ``kind`` and ``uses_cohort`` are read-only: a rule's kind names its stored format
    (``gallery.decision.records.rule_from_dict``), and both are fixed per rule class.
    """

    @property
    def kind(self) -> str: ...

    @property
    def uses_cohort(self) -> bool:
        """The rule reads ``Evidence.cohort_distance`` of the two nearest identities.

        The facade computes it only for rules that do: a few extra searches per probe, cached
        per gallery state.
        """
        ...

    def decide(self, evidence: Sequence[Evidence], gallery_size: int) -> Decision: ...

    def describe(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def within_verify(decision: Decision, nearest_photo: float, verify_threshold: float) -> Decision:
    """A match only if verify would also accept the face as that person; otherwise ``unknown``.

    identify (FPIR at the gallery's size) and verify (a 1:1 FMR) are calibrated for different
    error rates: in a gallery of one to a few people identify's learned threshold is the looser
    (0.59 against 0.53 shipped), so without this a door could say "Ada" for a face that
    ``verify("Ada")`` rejects. A door must not be more permissive than the 1:1 check, so the
    match stands only when the matched person's nearest enrolled photo (verify's distance) is
    within ``verify_threshold``. The ``unknown`` keeps the rule's evidence: its confidence that
    the face is nobody enrolled is 1 - the match's.
    """
    if decision.outcome != "match" or nearest_photo <= verify_threshold:
        return decision
    return Decision("unknown", None, 1.0 - decision.confidence)
