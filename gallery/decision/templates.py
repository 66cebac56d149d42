"""A person's score from several photos: the distance to their template, corrected for how many photos it holds.

Scoring a person by their *nearest* enrolled photo gives a stranger one chance per photo: with
m photos each, a gallery calibrated on one photo per person accepts several times its target of
strangers (issue 12: 1% at one photo, 3-4% at 3-5, 6-8% at 9-10). The *mean* of the photos alone
is worse: it sits closer to everyone, strangers included. The variance-corrected template

    d'^2 = ||probe - mean||^2 + s2 * (1 - 1/m)

adds back what a one-photo template carries and an m-photo mean has averaged away: a photo's own
scatter around its person, s2 (learned by calibrate: half the mean squared same-person distance),
less the s2/m that remains in the mean. A stranger's expected squared distance to any person is
then what it is at one photo, so the one-photo calibration holds whatever m; at m = 1 it *is* the
nearest-photo distance. Between two people (cohort distances) the same reasoning gives
``c'^2 = ||mean_a - mean_b||^2 + s2 * (2 - 1/m_a - 1/m_b)``.
"""

from __future__ import annotations

import numpy as np


def template_distances(probe: np.ndarray, means: np.ndarray, counts: np.ndarray, variance: float) -> np.ndarray:
    """(P,) corrected distances from one probe (d,) to P templates (P, d) of ``counts`` (P,) photos each."""
    squared = np.sum((np.asarray(means, np.float64) - np.asarray(probe, np.float64)) ** 2, axis=-1)
    return np.sqrt(squared + variance * (1.0 - 1.0 / np.asarray(counts, np.float64)))


def between_templates(
    mean: np.ndarray, count: int, others: np.ndarray, other_counts: np.ndarray, variance: float
) -> np.ndarray:
    """(P,) corrected distances from one person's template to P others' (for cohort distances)."""
    squared = np.sum((np.asarray(others, np.float64) - np.asarray(mean, np.float64)) ** 2, axis=-1)
    counts = np.asarray(other_counts, np.float64)
    return np.sqrt(squared + variance * (2.0 - 1.0 / count - 1.0 / counts))


def within_variance(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """s2: the mean squared distance of a photo from its person's mean, as half the mean squared same-person distance.

    Every same-person pair counts once (people with more photos weigh more, as they do in a
    gallery); 0.0 when nobody has two photos.
    """
    labels = np.asarray(labels)
    total, pairs = 0.0, 0
    for label in np.unique(labels):
        group = np.asarray(embeddings[labels == label], np.float64)
        m = len(group)
        if m < 2:
            continue
        # Sum over pairs of ||x_i - x_j||^2 = m * sum_i ||x_i - mean||^2.
        total += m * float(np.sum((group - group.mean(axis=0)) ** 2))
        pairs += m * (m - 1) // 2
    return total / pairs / 2.0 if pairs else 0.0
