"""An identity's cohort distance, which learned rules normalise by: what identify computes from gallery searches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# An identity's cohort distance: the mean distance to its this many nearest other enrolled identities.
COHORT_SIZE = 10


def cohort_distance(distances_to_others: np.ndarray, size: int = COHORT_SIZE) -> float:
    """An identity's cohort distance: mean of its ``size`` smallest distances to other identities.

    Args:
        distances_to_others: distances from the identity to other enrolled identities (each
            identity once, at its nearest face pair); any order.
        size: how many nearest others to average; fewer are used when fewer are enrolled.

    Returns:
        The mean, or nan when no other identity is enrolled.
    """
    others = np.sort(np.asarray(distances_to_others, dtype=np.float64).ravel())[:size]
    return float(others.mean()) if len(others) else float("nan")


def cohort_from_searches(
    person_id: int, hits_per_face: Sequence[Sequence[tuple[int, float]]], size: int = COHORT_SIZE
) -> float:
    """A person's cohort distance from people searches of each of their enrolled faces.

    Search each of the person's faces for its ``size + 1`` nearest *people* (each person once, at
    their nearest face; the person finds themself). A person within the true ``size`` nearest
    others is then found by the face that is nearest them, so the result is exact.

    Args:
        person_id: the person whose cohort distance this is (their own hits are skipped).
        hits_per_face: per enrolled face, (person_id, distance) of the nearest people.
        size: as in ``cohort_distance``.

    Returns:
        ``cohort_distance`` of the person-to-person distances found; nan if nobody else is enrolled.
    """
    nearest: dict[int, float] = {}
    for hits in hits_per_face:
        for other, distance in hits:
            if other != person_id:
                nearest[other] = min(distance, nearest.get(other, np.inf))
    return cohort_distance(np.fromiter(nearest.values(), dtype=np.float64, count=len(nearest)), size)
