"""Learning the domain check (``gallery.decision.domain``) from labelled calibration photos."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gallery.calibration.protocol import pairwise_distances
from gallery.decision.domain import MEASURED_PEOPLE, DomainCheck, domain_scale, spread
from gallery.decision.normalised import NormalisedDistance
from gallery.decision.rule import DecisionRule

# The share of the calibration's own galleries the check calls crowded (its false alarms in domain).
DOMAIN_QUANTILE = 0.05
# Galleries drawn per size to place that quantile.
DOMAIN_GALLERIES = 1000


def gallery_spreads(
    embeddings: np.ndarray, labels: np.ndarray, people: int, galleries: int, rng: np.random.Generator
) -> np.ndarray:
    """The spread of ``galleries`` one-shot galleries of ``people`` drawn from these photos (one random photo each).

    A gallery larger than the check measures is measured on ``MEASURED_PEOPLE`` of its people,
    as the check does: so many drawn at random.
    """
    labels = np.asarray(labels)
    identities = np.unique(labels)
    photos_of = [np.nonzero(labels == identity)[0] for identity in identities]
    drawn = min(people, MEASURED_PEOPLE)
    values = np.empty(galleries)
    for g in range(galleries):
        chosen = rng.choice(len(identities), drawn, replace=False)
        photos = [photos_of[i][rng.integers(len(photos_of[i]))] for i in chosen]
        values[g] = spread(pairwise_distances(embeddings[photos], embeddings[photos]))
    return values


def learn_domain_check(
    embeddings: np.ndarray,
    labels: np.ndarray,
    sizes: Sequence[int],
    *,
    quantile: float = DOMAIN_QUANTILE,
    galleries: int = DOMAIN_GALLERIES,
    seed: int = 0,
) -> DomainCheck | None:
    """The check's limits at each of ``sizes`` from 2 up to the identities available (None: fewer than 2 identities).

    Sizes past ``MEASURED_PEOPLE`` are measured on that many people, so they add nothing: the
    table stops at the last size within it and ``DomainCheck.limit`` holds that row beyond.
    """
    embeddings = np.asarray(embeddings, np.float64)
    available = len(np.unique(labels))
    usable = [s for s in sorted(set(sizes)) if 2 <= s <= min(available, MEASURED_PEOPLE)]
    if not usable:
        return None
    rng = np.random.default_rng(seed)
    limits = [float(np.quantile(gallery_spreads(embeddings, labels, s, galleries, rng), quantile)) for s in usable]
    # A median of more pairs strays less, so the limits rise with size; where chance says otherwise,
    # the smaller size keeps the lower limit (fewer alarms, never more than the quantile's).
    rising = np.minimum.accumulate(np.asarray(limits)[::-1])[::-1]
    return DomainCheck(quantile, tuple(usable), tuple(float(v) for v in rising))


def search_scales(rule: DecisionRule, spreads: np.ndarray, gallery_sizes: np.ndarray) -> np.ndarray:
    """(P,) the scale identify reads each simulated search's distances at (``gallery.decision.domain``).

    ``spreads`` and ``gallery_sizes``: each search's gallery's (``Searches.spread``, ``Searches.gallery_size``).
    1 wherever the gallery is not crowded, or the rule has no domain check.
    """
    scales = np.ones(len(spreads))
    if not isinstance(rule, NormalisedDistance) or rule.domain is None:
        return scales
    check, reference = rule.domain, rule.reference
    for size in np.unique(gallery_sizes):
        limit = check.limit(int(size))
        if limit is None:
            continue
        at_size = (gallery_sizes == size) & (spreads < limit)
        measured = min(int(size), MEASURED_PEOPLE)
        scales[at_size] = [domain_scale(float(m), measured, reference) for m in spreads[at_size]]
    return scales
