"""Synthetic labelled face descriptors: a population with crowded and sparse regions, as real faces have."""

from __future__ import annotations

import numpy as np

LOOKS = 12


def labelled_faces(identities: int, seed: int, dim: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of people around a dozen 'looks', some looks far more crowded than others.

    The population (looks and how crowded each is) is fixed; ``seed`` draws the people and photos,
    so two seeds give disjoint people from one population, like two halves of a dataset. Scales
    shrink with ``dim`` so that distances stay dlib-like in any dimension: photos of one person
    ~0.35 apart, people of one look 0.2-0.9, of different looks ~1.

    Returns:
        (embeddings, labels): float64 (n, dim) and int64 (n,), one to four photos per person.
    """
    people, rng, scale = draw_people(identities, seed, dim)
    photos = rng.choice([1, 2, 3, 4], size=identities, p=[0.4, 0.3, 0.2, 0.1])
    labels = np.repeat(np.arange(identities) + seed * 100_000, photos)
    return people[labels - seed * 100_000] + rng.normal(size=(len(labels), dim)) * 0.05 * scale, labels


def draw_people(identities: int, seed: int, dim: int) -> tuple[np.ndarray, np.random.Generator, float]:
    """(people (identities, dim), the generator that drew them, for their photos next; the photo noise scale).

    The looks are the fixed population's; ``seed`` draws which look each person has and where.
    """
    scale = float(np.sqrt(24 / dim))
    population = np.random.default_rng(1234)
    looks = population.normal(size=(LOOKS, dim)) * 0.14 * scale
    spread = population.uniform(0.03, 0.13, LOOKS) * scale
    rng = np.random.default_rng(seed)
    look = rng.integers(0, LOOKS, identities)
    return looks[look] + rng.normal(size=(identities, dim)) * spread[look, None], rng, scale
