"""Each enrolled person's template and cohort distance, as learned rules read them, cached until the faces change."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from gallery.decision.cohort import COHORT_SIZE, cohort_distance, cohort_from_searches
from gallery.decision.domain import domain_scale, measured_positions, spread
from gallery.decision.normalised import NormalisedDistance
from gallery.decision.rule import DecisionRule
from gallery.decision.templates import between_templates, template_distances
from gallery.results import DomainStatus
from gallery.store import SearchHit, Store

# A rule scoring templates ranks people by their corrected template distance, which can differ
# from the order of their nearest photos (what the index searches): a person of m photos whose
# template lies at d' has a photo within about sqrt(d'^2 + s2/m). Searching this many times
# deeper (and at least MIN_DEPTH people) by nearest photo, then re-ranking, keeps every person
# whose template is among the nearest in the candidates.
DEPTH_FACTOR = 4
MIN_DEPTH = 20


def scored_variance(rule: object) -> float | None:
    """The within-person variance a rule scores templates with; None: it scores nearest photos."""
    variance = getattr(rule, "within_variance", None)
    return None if variance is None else float(variance)


class PersonTemplates:
    """Each person's template: the mean of their enrolled descriptors and how many there are.

    Read from the store on demand and kept until the store's generation moves (any face added
    or removed, by any process). Safe to share between threads.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._generation = -1
        self._values: dict[int, tuple[np.ndarray, int]] = {}

    def of(self, person_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(means (P, d) float64, counts (P,)) of these people; a person without faces has count 0."""
        generation = self._store.generation()
        with self._lock:
            if generation != self._generation:
                self._generation, self._values = generation, {}
            known = {p: self._values[p] for p in person_ids if p in self._values}
        missing = [p for p in dict.fromkeys(person_ids) if p not in known]
        for person, vectors in (self._store.indexed_embeddings_of(missing) if missing else {}).items():
            # Removed since the search that named them: no faces, a zero mean of the right length, count 0.
            mean = np.asarray(vectors, np.float64).mean(axis=0) if len(vectors) else np.zeros(vectors.shape[1])
            value = (mean, len(vectors))
            known[person] = value
            with self._lock:
                if generation == self._generation:
                    self._values[person] = value
        return (
            np.stack([known[p][0] for p in person_ids]) if person_ids else np.zeros((0, 0)),
            np.array([known[p][1] for p in person_ids], dtype=np.int64),
        )

    def nearest_photo(self, person_id: int, embedding: np.ndarray) -> float:
        """The distance from ``embedding`` to the person's nearest enrolled photo (verify's distance); inf: none."""
        vectors = self._store.indexed_embeddings(person_id)
        if not len(vectors):
            return float("inf")
        return float(np.min(np.linalg.norm(np.asarray(vectors, np.float64) - embedding, axis=1)))

    def search(self, embeddings: np.ndarray, k: int, variance: float | None) -> list[list[SearchHit]]:
        """The ``k`` nearest people to each embedding, each at their corrected template distance, nearest first.

        ``variance`` None: the store's search as it is (each person at their nearest photo).
        """
        if variance is None:
            return self._store.search(embeddings, k=k)
        deep = self._store.search(embeddings, k=max(k * DEPTH_FACTOR, MIN_DEPTH))
        found: list[list[SearchHit]] = []
        for probe, hits in zip(embeddings, deep, strict=True):
            means, counts = self.of([h.person_id for h in hits])
            if not len(hits) or not counts.any():  # removed since the search: nobody to score
                found.append([])
                continue
            distances = np.where(counts > 0, template_distances(probe, means, np.maximum(counts, 1), variance), np.inf)
            order = [i for i in np.argsort(distances, kind="stable")[:k] if np.isfinite(distances[i])]
            found.append([dataclasses.replace(hits[i], distance=float(distances[i])) for i in order])
        return found


def domain_status(store: Store, templates: PersonTemplates, rule: DecisionRule) -> DomainStatus | None:
    """The rule's domain check on the gallery as it is (``gallery.decision.domain``); None: nothing to check.

    The people measured are every k-th by id, so the same gallery always gives the same answer;
    distances are between templates as the rule scores them (a rule scoring nearest photos: plain
    template distances, which for one photo each are the photos').
    """
    if not isinstance(rule, NormalisedDistance) or rule.domain is None:
        return None
    check = rule.domain
    limit = check.limit(store.people_count())
    if limit is None:
        return None
    people = store.indexed_people()
    means, counts = templates.of([int(p) for p in people[measured_positions(len(people))]])
    present = counts > 0
    means, inverse = means[present], 1.0 / counts[present]
    squared = np.sum((means[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    variance = scored_variance(rule) or 0.0
    measured = spread(np.sqrt(squared + variance * (2.0 - inverse[:, None] - inverse[None, :])))
    if measured is None:
        return None
    crowded = measured < limit
    scale = domain_scale(measured, len(means), rule.reference) if crowded else 1.0
    return DomainStatus(measured, limit, len(means), check.quantile, crowded, scale)


class CohortDistances:
    """A person's cohort distance: the mean distance to their ``COHORT_SIZE`` nearest other people.

    Computed on demand by searching the gallery with each of the person's faces (a rule scoring
    nearest photos), or with their template (a rule scoring corrected templates: then the
    distances are template to template, ``c'^2 = ||mean_a - mean_b||^2 + s2 (2 - 1/m_a - 1/m_b)``),
    and kept until the store's generation moves: a door asks about the same few people all day,
    and one enrolment shifts everyone's neighbours. Safe to share between threads.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.templates = PersonTemplates(store)
        self._lock = threading.Lock()
        self._generation = -1
        self._values: dict[tuple[int, float | None], float] = {}
        self._domains: dict[tuple[int, object], DomainStatus | None] = {}

    def of(self, person_id: int, variance: float | None = None) -> float:
        """The person's cohort distance; nan when nobody else is enrolled (or they have no face)."""
        generation = self._store.generation()
        with self._lock:
            if generation != self._generation:
                self._generation, self._values = generation, {}
            cached = self._values.get((person_id, variance))
        if cached is not None:
            return cached
        value = self._compute(person_id) if variance is None else self._compute_templates(person_id, variance)
        with self._lock:
            if generation == self._generation:
                self._values[(person_id, variance)] = value
        return value

    def domain(self, rule: DecisionRule) -> DomainStatus | None:
        """``domain_status`` of the gallery under ``rule``, kept until the store's generation moves."""
        # What the status depends on besides the faces (a rule is not hashable: it holds arrays).
        check = getattr(rule, "domain", None), getattr(rule, "reference", None), scored_variance(rule)
        key = (self._store.generation(), check)
        with self._lock:
            if key in self._domains:
                return self._domains[key]
        status = domain_status(self._store, self.templates, rule)
        with self._lock:
            self._domains = {k: v for k, v in self._domains.items() if k[0] == key[0]} | {key: status}
        return status

    def _compute(self, person_id: int) -> float:
        vectors = self._store.indexed_embeddings(person_id)
        if not len(vectors):
            return float("nan")
        searches = self._store.search(vectors, k=COHORT_SIZE + 1)  # + 1: each face finds its own person first
        return cohort_from_searches(person_id, [[(hit.person_id, hit.distance) for hit in hits] for hits in searches])

    def _compute_templates(self, person_id: int, variance: float) -> float:
        means, counts = self.templates.of([person_id])
        if not counts[0]:
            return float("nan")
        (hits,) = self._store.search(means.astype(np.float32), k=max((COHORT_SIZE + 1) * DEPTH_FACTOR, MIN_DEPTH))
        others = [h.person_id for h in hits if h.person_id != person_id]
        other_means, other_counts = self.templates.of(others)
        present = other_counts > 0
        if not present.any():
            return float("nan")
        return cohort_distance(
            between_templates(means[0], int(counts[0]), other_means[present], other_counts[present], variance)
        )
