"""Evaluating a decision rule on labelled embeddings: the one-shot open-set simulation, scored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gallery.calibration.domain import search_scales
from gallery.calibration.fit import STRENGTHS
from gallery.calibration.metrics import failure_rates, fnir_at_fpir, open_set_rates, rank_one
from gallery.calibration.protocol import Searches, simulate
from gallery.decision.confidence import ConfidenceCurve
from gallery.decision.domain import in_domain_units
from gallery.decision.normalised import NormalisedDistance
from gallery.decision.rule import DecisionRule, Evidence, within_verify

TARGET_FPIRS = (0.01, 0.003)


@dataclass(frozen=True)
class AtTarget:
    """The FNIR each rule reaches on this data at one FPIR, its threshold set on this data's strangers."""

    target_fpir: float
    rule_fnir: float  # the rule in force, its own score with the threshold moved to this target
    distance_fnir: float  # the best single distance threshold
    distance_threshold: float
    normalised_fnir: float  # the normalised-distance rule, strength and threshold chosen on this data


@dataclass(frozen=True)
class Evaluation:
    """How a rule does on labelled photos, and what was possible on them."""

    rule: str  # the rule in force, in words
    fpir: float  # the rule in force: strangers accepted as someone
    fnir: float  # the rule in force: enrolled people not matched to themselves
    ambiguous_rate: float  # share of searches the rule called ambiguous
    rank_one: float
    fte: float
    fta: float
    gallery_size: int
    identities: int
    photos: int
    mated_searches: int
    stranger_searches: int
    targets: tuple[AtTarget, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evidence_for(searches: Searches, index: int) -> list[Evidence]:
    """The evidence the Gallery facade would hand a rule for one simulated search."""
    kept = np.isfinite(searches.distances[index])
    return [
        Evidence(
            person_id=int(identity),
            distance=float(distance),
            cohort_distance=None if np.isnan(cohort) else float(cohort),
        )
        for identity, distance, cohort in zip(
            searches.identities[index][kept], searches.distances[index][kept], searches.cohort[index][kept], strict=True
        )
    ]


def apply_rule(
    rule: DecisionRule, searches: Searches, verify_threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``rule.decide`` on every search, exactly as identify would (with ``within_verify`` when given its threshold).

    The simulation enrols one photo per person, so a candidate's distance is verify's distance too.
    In a gallery the domain check calls crowded the rule reads the distances scaled, as identify does.

    Returns:
        (outcome, matched): (P,) outcome strings and (P,) the matched identity (-1 if none).
    """
    outcomes = np.empty(len(searches), dtype=object)
    matched = np.full(len(searches), -1, dtype=np.int64)
    scales = search_scales(rule, searches.spread, searches.gallery_size)
    for i in range(len(searches)):
        evidence = evidence_for(searches, i)
        decision = rule.decide(in_domain_units(evidence, float(scales[i])), int(searches.gallery_size[i]))
        if verify_threshold is not None and decision.index is not None:
            decision = within_verify(decision, evidence[decision.index].distance, verify_threshold)
        outcomes[i] = decision.outcome
        if decision.outcome == "match" and decision.index is not None:
            matched[i] = evidence[decision.index].person_id
    return outcomes, matched


def evaluate(
    embeddings: np.ndarray,
    labels: np.ndarray,
    rule: DecisionRule,
    *,
    verify_threshold: float | None = None,
    failures: Sequence[Any] = (),
    targets: Sequence[float] = TARGET_FPIRS,
    trials: int = 10,
    enrolled_fraction: float = 0.5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Score ``rule`` by the one-shot open-set simulation on labelled embeddings.

    Args:
        embeddings: (n, d) one embedding per photo with a face.
        labels: (n,) the identity of each.
        rule: the rule in force.
        verify_threshold: verify's threshold in force, which a match must pass too (as identify
            applies it, ``within_verify``); None: the rule alone.
        failures: the identity of every photo in which no face was found (for FTE and FTA).
        targets: FPIRs at which to report each rule's FNIR, thresholds set on this data (``AtTarget``).
        trials: galleries drawn (each enrols one random photo of ``enrolled_fraction`` of the identities).
        seed: seeds the simulation.
        progress: called with (trials done, trials total).
    """
    labels = np.asarray(labels)
    parts = []
    for trial in range(trials):
        parts.append(simulate(embeddings, labels, trials=1, enrolled_fraction=enrolled_fraction, seed=seed + trial))
        if progress:
            progress(trial + 1, trials)
    searches = Searches.concat(parts)
    outcomes, matched = apply_rule(rule, searches, verify_threshold)
    accepted = outcomes == "match"
    fpir, _ = open_set_rates(accepted, searches.correct, searches.mated)
    fnir = float(1.0 - (matched == searches.truth)[searches.mated].mean()) if searches.mated.any() else float("nan")
    every_label = np.concatenate([labels, np.asarray(list(failures), dtype=labels.dtype)])
    has_face = np.concatenate([np.ones(len(labels), bool), np.zeros(len(failures), bool)])
    fte, fta = failure_rates(every_label, has_face)
    normalised = rule if isinstance(rule, NormalisedDistance) else None
    return Evaluation(
        rule=rule.describe(),
        fpir=fpir,
        fnir=fnir,
        ambiguous_rate=float((outcomes == "ambiguous").mean()),
        rank_one=rank_one(searches.correct, searches.mated),
        fte=fte,
        fta=fta,
        gallery_size=int(searches.gallery_size[0]),
        identities=len(np.unique(labels)),
        photos=len(labels) + len(failures),
        mated_searches=int(searches.mated.sum()),
        stranger_searches=int((~searches.mated).sum()),
        targets=tuple(_at(searches, target, normalised) for target in targets),
    )


def _at(searches: Searches, target: float, rule: NormalisedDistance | None) -> AtTarget:
    distance = fnir_at_fpir(-searches.distances[:, 0], searches.correct, searches.mated, target)
    # The rule in force ranks searches by its margin (a distance rule by the distance itself).
    own_score = (
        -rule.margins(searches.distances, searches.cohort, searches.gallery_size) if rule else -searches.distances[:, 0]
    )
    in_force = fnir_at_fpir(own_score, searches.correct, searches.mated, target)
    reference = rule.reference if rule else float(np.nanmedian(searches.distances[:, 1]))
    scorer = NormalisedDistance(
        sizes=(1,), thresholds=(1.0,), strengths=(1.0,), reference=reference, confidence=_UNUSED
    )
    # The best strength for this data, each with its threshold set on this data's strangers.
    normalised = min(
        fnir_at_fpir(
            -scorer.log_ratios(searches.distances[:, 0], searches.distances[:, 1], searches.cohort[:, 0], strength),
            searches.correct,
            searches.mated,
            target,
        ).fnir
        for strength in STRENGTHS
    )
    return AtTarget(target, in_force.fnir, distance.fnir, -distance.threshold, normalised)


_UNUSED = ConfidenceCurve((0.0,), (0.5,))  # only the ratio is used here
