"""identify's decision for the faces of one photo: people searched and scored as the rule in force reads them.

A rule with a within-person variance scores each person by their photo-count-corrected template
(``gallery.decision.templates``); ``Candidate.distance`` is then that score. Otherwise (the plain
distance rule, a learned rule stored before issue 12) a person is scored by their nearest photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gallery.cohorts import CohortDistances, scored_variance
from gallery.decision import DecisionRule, Evidence, within_verify
from gallery.decision.domain import in_domain_units
from gallery.results import Candidate, IdentifiedFace
from gallery.vision.pipeline import Face

# Identities searched per face at least: a learned rule reads the nearest three (runner-up, and the
# third to tell whether the top two are rivals; see gallery.decision.normalised).
EVIDENCE_DEPTH = 3


def decide_faces(
    people: CohortDistances,
    rule: DecisionRule,
    found: Sequence[Face],
    live: Sequence[bool],
    *,
    top_k: int,
    gallery_size: int,
    verify_threshold: float,
    scale: float = 1.0,
) -> list[IdentifiedFace]:
    """One result per face of ``found``: ``not_live`` where ``live`` is False, else the rule's decision.

    A match also needs verify's 1:1 threshold (``within_verify``): a door never says a name that
    ``verify`` would reject for the same face. In a gallery the domain check calls crowded the rule
    reads every distance multiplied by its ``scale`` (``DomainStatus.scale``, ``gallery.decision.domain``);
    verify's threshold reads them as they are.
    """
    searched = [face.embedding for face, is_live in zip(found, live, strict=True) if is_live]
    depth, variance = max(top_k, EVIDENCE_DEPTH), scored_variance(rule)
    hits = iter(people.templates.search(np.stack(searched), depth, variance) if searched else [])
    results = []
    for face, is_live in zip(found, live, strict=True):
        if not is_live:
            results.append(IdentifiedFace(face.box, (), None, "not_live", 1.0, rule.describe()))
            continue
        candidates = tuple(Candidate(h.name, h.person_id, h.distance) for h in next(hits))
        decision = rule.decide(in_domain_units(evidence(people, candidates, rule), scale), gallery_size)
        if decision.index is not None:
            chosen = candidates[decision.index]
            nearest = (
                chosen.distance
                if variance is None
                else people.templates.nearest_photo(chosen.person_id, face.embedding)
            )
            decision = within_verify(decision, nearest, verify_threshold)
        match = candidates[decision.index] if decision.index is not None else None
        results.append(
            IdentifiedFace(face.box, candidates[:top_k], match, decision.outcome, decision.confidence, rule.describe())
        )
    return results


def evidence(people: CohortDistances, candidates: Sequence[Candidate], rule: DecisionRule) -> list[Evidence]:
    """What the rule reads: each candidate's distance, and the nearest two's cohort distances if it uses them.

    The candidates' distances must be scored as the rule scores people (``decide_faces`` does);
    cohort distances are computed the same way (templates for a rule with a within-person variance).
    """
    variance = scored_variance(rule)
    return [
        Evidence(c.person_id, c.distance, people.of(c.person_id, variance) if rule.uses_cohort and rank < 2 else None)
        for rank, c in enumerate(candidates)
    ]
