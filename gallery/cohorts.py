"""Each enrolled person's cohort distance, as learned rules normalise by it, cached until the faces change."""

from __future__ import annotations

import threading

from gallery.decision.cohort import COHORT_SIZE, cohort_from_searches
from gallery.store import Store


class CohortDistances:
    """A person's cohort distance: the mean distance to their ``COHORT_SIZE`` nearest other people.

    Computed on demand by searching the gallery with each of the person's faces, and kept
    until the store's generation moves (any face added or removed, by any process): a door
    asks about the same few people all day, and one enrolment shifts everyone's neighbours.
    Safe to share between threads.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._generation = -1
        self._values: dict[int, float] = {}

    def of(self, person_id: int) -> float:
        """The person's cohort distance; nan when nobody else is enrolled (or they have no face)."""
        generation = self._store.generation()
        with self._lock:
            if generation != self._generation:
                self._generation, self._values = generation, {}
            cached = self._values.get(person_id)
        if cached is not None:
            return cached
        value = self._compute(person_id)
        with self._lock:
            if generation == self._generation:
                self._values[person_id] = value
        return value

    def _compute(self, person_id: int) -> float:
        _, vectors = self._store.embeddings_for(person_id)
        if not len(vectors):
            return float("nan")
        searches = self._store.search(vectors, k=COHORT_SIZE + 1)  # + 1: each face finds its own person first
        return cohort_from_searches(person_id, [[(hit.person_id, hit.distance) for hit in hits] for hits in searches])
