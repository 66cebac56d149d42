"""The one-shot open-set simulation: labelled embeddings in, the searches a door would see out.

A trial enrols one random photo of part of the identities (the gallery) and searches the
gallery with every other photo: photos of enrolled identities are *mated* probes, photos of
identities never enrolled are strangers. Each search keeps what a decision rule may use,
exactly as the Gallery facade will supply it at identify time (see ``gallery.decision``; the
cohort distance is ``gallery.decision.cohort``'s, computed here for all identities at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gallery.decision.cohort import COHORT_SIZE
from gallery.decision.domain import measured_positions, spread

# Candidates kept per search, nearest first: the rule uses the top two, the rest are for reports.
SEARCH_DEPTH = 5


@dataclass(frozen=True)
class Searches:
    """Open-set searches of probes against simulated one-shot galleries.

    Attributes:
        distances: (P, K) distance to the K nearest enrolled identities, ascending (inf pads).
        identities: (P, K) labels of those identities (-1 pads).
        cohort: (P, K) each candidate identity's cohort distance in its gallery (nan if undefined).
        truth: (P,) the probe's own label.
        mated: (P,) the probe's identity is enrolled.
        gallery_size: (P,) number of identities enrolled in the probe's gallery.
        spread: (P,) the domain check's spread of the probe's gallery (``gallery.decision.domain``;
            nan with one person).
    """

    distances: np.ndarray
    identities: np.ndarray
    cohort: np.ndarray
    truth: np.ndarray
    mated: np.ndarray
    gallery_size: np.ndarray
    spread: np.ndarray

    def __len__(self) -> int:
        return len(self.truth)

    @property
    def correct(self) -> np.ndarray:
        """(P,) the nearest enrolled identity is the probe's own."""
        return self.identities[:, 0] == self.truth

    def select(self, mask: np.ndarray) -> Searches:
        """The searches where ``mask`` holds."""
        return Searches(*(getattr(self, f)[mask] for f in _FIELDS))

    @staticmethod
    def concat(parts: Sequence[Searches]) -> Searches:
        """One set of searches from several trials."""
        return Searches(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("distances", "identities", "cohort", "truth", "mated", "gallery_size", "spread")


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances, in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def split_identities(labels: np.ndarray, *, fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split photos by identity into two disjoint halves (a calibration set and a held-out set).

    Identities with one photo and with several are split in the same proportion, so both
    halves hold mated probes.

    Returns:
        Two (n,) boolean masks over the photos.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    first = np.zeros(len(labels), dtype=bool)
    for group in _identity_groups(labels):
        chosen = rng.permutation(group)[: round(len(group) * fraction)]
        first |= np.isin(labels, chosen)
    return first, ~first


def simulate(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    trials: int = 10,
    enrolled_fraction: float = 0.5,
    gallery_size: int | None = None,
    depth: int = SEARCH_DEPTH,
    cohort_size: int = COHORT_SIZE,
    strangers_per_trial: int | None = None,
    seed: int = 0,
    photos: int = 1,
    exact: bool = False,
    variance: float = 0.0,
) -> Searches:
    """Run open-set trials on labelled embeddings: one-shot by default, or several photos per enrolled person.

    Args:
        embeddings: (n, d) one embedding per photo.
        labels: (n,) identity of each photo (any hashable numpy dtype).
        trials: independent galleries drawn (each a new choice of enrolled identities and photos).
        enrolled_fraction: share of identities enrolled (stratified like ``split_identities``).
        gallery_size: if given, enrol this many of those identities instead (for size studies).
        depth: candidates kept per search.
        cohort_size: nearest other identities averaged into each identity's cohort distance.
        strangers_per_trial: if given, search with at most this many stranger photos per trial
            (drawn at random): small galleries leave thousands of strangers, far more than needed.
        seed: seeds the draws; same inputs and seed give the same searches.
        photos: photos enrolled per person: up to this many, keeping one back as a probe from a
            person who has two or more (what a user with a folder per person does), each person
            scored by their variance-corrected template (``gallery.decision.templates``, with
            ``variance`` as s2) as identify scores them; 1 (and not ``exact``): one-shot.
        exact: enrol only people who have at least ``photos`` photos, exactly that many each
            (their other photos are mated probes).
        variance: s2 of the templates (the rule's ``within_variance``).

    Returns:
        All trials' searches, concatenated.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if len(embeddings) != len(labels):
        raise ValueError("embeddings and labels differ in length")
    rng = np.random.default_rng(seed)
    data = _Photos(embeddings, labels)
    if photos == 1 and not exact:
        return Searches.concat(
            [
                _one_trial(data, rng, enrolled_fraction, gallery_size, depth, cohort_size, strangers_per_trial)
                for _ in range(trials)
            ]
        )
    return Searches.concat(
        [
            _templates_trial(
                data,
                rng,
                enrolled_fraction,
                gallery_size,
                depth,
                cohort_size,
                strangers_per_trial,
                (photos, exact),
                variance,
            )
            for _ in range(trials)
        ]
    )


def _identity_groups(labels: np.ndarray) -> list[np.ndarray]:
    identities, counts = np.unique(labels, return_counts=True)
    return [identities[counts >= 2], identities[counts < 2]]


class _Photos:
    """Labelled embeddings indexed once for many trials: identities as codes 0..m-1 (sorted labels)."""

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray) -> None:
        self.embeddings = embeddings
        self.squared_norms = (embeddings * embeddings).sum(axis=1)
        _, self.codes, self.counts = np.unique(labels, return_inverse=True, return_counts=True)
        self.by_identity = np.argsort(self.codes, kind="stable")  # photo indices grouped by identity
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        identities = np.arange(len(self.counts))
        self.groups = [identities[self.counts >= 2], identities[self.counts < 2]]

    def distances(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        squared = (
            self.squared_norms[rows][:, None]
            + self.squared_norms[columns][None, :]
            - 2.0 * (self.embeddings[rows] @ self.embeddings[columns].T)
        )
        return np.sqrt(np.maximum(squared, 0.0))


def _one_trial(
    data: _Photos,
    rng: np.random.Generator,
    enrolled_fraction: float,
    gallery_size: int | None,
    depth: int,
    cohort_size: int,
    strangers_per_trial: int | None,
) -> Searches:
    enrolled = np.concatenate([rng.permutation(g)[: round(len(g) * enrolled_fraction)] for g in data.groups])
    if gallery_size is not None:
        if gallery_size > len(enrolled):
            raise ValueError(f"gallery_size {gallery_size} exceeds the {len(enrolled)} identities available")
        enrolled = rng.permutation(enrolled)[:gallery_size]
    enrolled = np.sort(enrolled)
    # One enrolment photo per enrolled identity, drawn at random among its photos.
    enrolment = data.by_identity[data.starts[enrolled] + rng.integers(0, data.counts[enrolled])]
    is_enrolled, probes = _probes(data, enrolled, enrolment, strangers_per_trial, rng)

    between = data.distances(enrolment, enrolment)
    np.fill_diagonal(between, np.inf)
    k = min(cohort_size, len(enrolment) - 1)
    cohorts = _smallest(between, k).mean(axis=1) if k > 0 else np.full(len(enrolment), np.nan)

    to_gallery = data.distances(probes, enrolment)
    return _searches(data, probes, to_gallery, enrolled, cohorts, is_enrolled, depth, between)


def _templates_trial(
    data: _Photos,
    rng: np.random.Generator,
    enrolled_fraction: float,
    gallery_size: int | None,
    depth: int,
    cohort_size: int,
    strangers_per_trial: int | None,
    enrolling: tuple[int, bool],
    variance: float,
) -> Searches:
    """As ``_one_trial``, with up to (or exactly: ``enrolling``) n photos per enrolled person, scored by template."""
    photos, exact = enrolling
    if exact:
        qualified = np.nonzero(data.counts >= photos)[0]
        half = len(data.counts) // 2
        pool = qualified if len(qualified) <= half else rng.permutation(qualified)[:half]
    else:
        pool = np.concatenate([rng.permutation(g)[: round(len(g) * enrolled_fraction)] for g in data.groups])
    if gallery_size is not None:
        if gallery_size > len(pool):
            raise ValueError(f"gallery_size {gallery_size} exceeds the {len(pool)} identities available")
        pool = rng.permutation(pool)[:gallery_size]
    enrolled = np.sort(pool)
    counts = data.counts[enrolled]
    m = np.full(len(enrolled), photos) if exact else np.where(counts < 2, 1, np.minimum(photos, counts - 1))
    enrolment = np.concatenate(
        [
            rng.permutation(data.by_identity[data.starts[p] : data.starts[p] + c])[:mi]
            for p, c, mi in zip(enrolled, counts, m, strict=True)
        ]
    )
    owner = np.repeat(np.arange(len(enrolled)), m)
    templates = np.zeros((len(enrolled), data.embeddings.shape[1]))
    np.add.at(templates, owner, data.embeddings[enrolment])
    templates /= m[:, None]
    is_enrolled, probes = _probes(data, enrolled, enrolment, strangers_per_trial, rng)

    inverse = 1.0 / m
    between = np.sqrt(
        pairwise_distances(templates, templates) ** 2 + variance * (2.0 - inverse[:, None] - inverse[None, :])
    )
    np.fill_diagonal(between, np.inf)
    k = min(cohort_size, len(enrolled) - 1)
    cohorts = _smallest(between, k).mean(axis=1) if k > 0 else np.full(len(enrolled), np.nan)
    to_gallery = np.sqrt(
        pairwise_distances(data.embeddings[probes], templates) ** 2 + variance * (1.0 - inverse)[None, :]
    )
    return _searches(data, probes, to_gallery, enrolled, cohorts, is_enrolled, depth, between)


def _smallest(matrix: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` smallest values (any order)."""
    if k >= matrix.shape[1]:
        return matrix
    return np.partition(matrix, k - 1, axis=1)[:, :k]


def _nearest_columns(matrix: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` smallest values, ascending by value (ties by column)."""
    if k < matrix.shape[1]:
        candidates = np.argpartition(matrix, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(matrix.shape[1]), matrix.shape)
    values = np.take_along_axis(matrix, candidates, axis=1)
    order = _row_lexsort(values, candidates)
    return np.take_along_axis(candidates, order, axis=1)


def _row_lexsort(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    # Sort each row by value, breaking ties by column, so results do not depend on partition order.
    by_column = np.argsort(columns, axis=1, kind="stable")
    stable = np.argsort(np.take_along_axis(values, by_column, axis=1), axis=1, kind="stable")
    return np.take_along_axis(by_column, stable, axis=1)


def _probes(
    data: _Photos,
    enrolled: np.ndarray,
    enrolment: np.ndarray,
    strangers_per_trial: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Which identities are enrolled (a mask), and the probes: every photo not enrolled, strangers'
    photos thinned to ``strangers_per_trial`` at most."""
    is_enrolled = np.zeros(len(data.counts), dtype=bool)
    is_enrolled[enrolled] = True
    probe_mask = np.ones(len(data.codes), dtype=bool)
    probe_mask[enrolment] = False
    probes = np.nonzero(probe_mask)[0]
    if strangers_per_trial is not None:
        strangers = np.nonzero(~is_enrolled[data.codes[probes]])[0]
        if len(strangers) > strangers_per_trial:
            dropped = rng.choice(strangers, len(strangers) - strangers_per_trial, replace=False)
            probes = np.delete(probes, dropped)
    return is_enrolled, probes


def _searches(
    data: _Photos,
    probes: np.ndarray,
    to_gallery: np.ndarray,
    enrolled: np.ndarray,
    cohorts: np.ndarray,
    is_enrolled: np.ndarray,
    depth: int,
    between: np.ndarray,
) -> Searches:
    """Each probe's ``depth`` nearest enrolled identities (``to_gallery``: probes x enrolled), as a trial's searches.

    ``between``: the enrolled people's distances to each other, for the gallery's spread.
    """
    kept = min(depth, len(enrolled))
    nearest = _nearest_columns(to_gallery, kept)
    distances = np.full((len(probes), depth), np.inf)
    identities = np.full((len(probes), depth), -1, dtype=np.int64)
    cohort = np.full((len(probes), depth), np.nan)
    distances[:, :kept] = np.take_along_axis(to_gallery, nearest, axis=1)
    cohort[:, :kept] = cohorts[nearest]
    identities[:, :kept] = enrolled[nearest]  # identity codes (positions in the sorted labels); -1 pads
    truth = data.codes[probes]
    positions = measured_positions(len(enrolled))
    measured = spread(between[np.ix_(positions, positions)])
    return Searches(
        distances=distances,
        identities=identities,
        cohort=cohort,
        truth=truth,
        mated=is_enrolled[truth],
        gallery_size=np.full(len(probes), len(enrolled)),
        spread=np.full(len(probes), np.nan if measured is None else measured),
    )
