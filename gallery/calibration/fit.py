"""Learning a decision rule from labelled embeddings for a target FPIR, and a 1:1 threshold for a target FMR."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gallery.calibration.confidence import fit_confidence, fit_tie_ratio
from gallery.calibration.domain import learn_domain_check
from gallery.calibration.margin import UNIFORM_MARGIN, MarginPolicy
from gallery.calibration.metrics import (
    allowed_at_bound,
    clopper_pearson_upper,
    design_effect,
    open_set_rates,
    threshold_at_count,
    threshold_at_fpir,
)
from gallery.calibration.protocol import Searches, pairwise_distances, simulate
from gallery.decision.confidence import ConfidenceCurve
from gallery.decision.normalised import Margin, NormalisedDistance, Review
from gallery.decision.templates import within_variance
from gallery.errors import CalibrationError

# Gallery sizes simulated for the threshold table: roughly 1.6x apart, plus the largest the data allows.
SIZE_GRID = (1, 2, 3, 5, 8, 13, 20, 32, 50, 80, 128, 200, 320, 500, 800, 1280, 2000, 3200, 5000, 8000)
# Galleries drawn at the largest size; smaller sizes draw more (see trials_for_size), at most MAX_TRIALS.
BASE_TRIALS = 10
MAX_TRIALS = 200
# Normalisation strengths tried at each gallery size.
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Gallery-size bands with a confidence curve each (smallest size of each): 1, 2-4, 5-19, 20 and up.
CONFIDENCE_BANDS = (1, 2, 5, 20)
# Stranger searches per simulated size, at least (more when the target FPIR needs more).
STRANGERS_PER_SIZE = 20000
# The enrolment desk's review table: a newcomer whom identify would match at this stranger rate
# (but not at the rule's) is enrolled with a warning naming whom they resemble. Held out on LFW
# (scripts/lookalike_study.py, 20 splits) 20% flags 96% / 93% of duplicates at 400 / 1,500
# enrolled and warns 20% / 18% of genuine newcomers; 10% flagged 89% at 1,500, under the 90% goal.
REVIEW_FPIR = 0.2
# Different-person pairs a verify calibration measures, at most (a random sample beyond).
MAX_IMPOSTOR_PAIRS = 5_000_000

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Calibration:
    """A learned rule and how it did on the data it was learned from (at the largest gallery simulated)."""

    rule: NormalisedDistance
    target_fpir: float
    gallery_size: int
    fpir: float
    fnir: float
    distance_fnir: float  # the best single distance threshold at the same target and size, for comparison
    identities: int
    photos: int
    mated_searches: int
    stranger_searches: int

    def provenance(self) -> dict[str, Any]:
        """What to store beside the rule (photos, identities, target, rates achieved)."""
        return {
            "target_fpir": self.target_fpir,
            "gallery_size": self.gallery_size,
            "fpir": round(self.fpir, 6),
            "fnir": round(self.fnir, 6),
            "distance_threshold_fnir": round(self.distance_fnir, 6),
            "identities": self.identities,
            "photos": self.photos,
            "mated_searches": self.mated_searches,
            "stranger_searches": self.stranger_searches,
        }


def calibration_sizes(largest: int) -> tuple[int, ...]:
    """The gallery sizes to simulate for data that can enrol at most ``largest`` identities."""
    return tuple(sorted({s for s in SIZE_GRID if s < largest} | {largest}))


def calibrate(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    target_fpir: float = 0.01,
    strengths: Sequence[float] = STRENGTHS,
    enrolled_fraction: float = 0.5,
    largest_gallery: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    margin: MarginPolicy | None = UNIFORM_MARGIN,
    review_fpir: float | None = REVIEW_FPIR,
) -> Calibration:
    """Learn a ``NormalisedDistance`` rule accepting ``target_fpir`` of strangers at every gallery size, missing fewest.

    Simulates one-shot galleries of several sizes on the labelled embeddings (at most
    ``enrolled_fraction`` of the identities enrolled, the rest strangers), sets the threshold at
    each size on the strangers' ratios (see ``fit_rule``), and fits the confidence curve on all searches.

    Args:
        embeddings: (n, d) one embedding per photo that has a face.
        labels: (n,) the identity of each.
        target_fpir: share of strangers the rule may accept, in (0, 1).
        strengths: normalisation strengths to choose from at each size ((0.0,): plain distance).
        enrolled_fraction: largest share of identities enrolled in a simulated gallery.
        largest_gallery: simulate galleries up to this size only (to study extrapolation).
        seed: seeds the simulation.
        progress: called with (sizes done, sizes total).
        margin: set each threshold at an upper confidence bound on the stranger rate
            (``MarginPolicy``); None: at the point estimate.
        review_fpir: the stranger rate of the enrolment desk's review table (``fit_rule``);
            None: none. Ignored unless above ``target_fpir``.

    Raises:
        CalibrationError: too few identities, mated photos or strangers for the target.
    """
    embeddings, labels = _checked(embeddings, labels, target_fpir)
    by_size = simulate_sizes(
        embeddings,
        labels,
        target_fpir=target_fpir,
        enrolled_fraction=enrolled_fraction,
        largest_gallery=largest_gallery,
        seed=seed,
        progress=progress,
    )
    reference = typical_impostor_distance(embeddings, labels, seed=seed)
    rule = fit_rule(
        by_size,
        reference=reference,
        target_fpir=target_fpir,
        strengths=strengths,
        margin=margin,
        review_fpir=review_fpir if review_fpir is not None and review_fpir > target_fpir else None,
    )
    # The simulation enrols one photo per person; identify scores a person of m photos by their
    # template corrected with this variance so that the table holds for any m (decision.templates).
    # How far apart the calibration's own galleries' people sit, for a gallery to tell when its
    # faces crowd closer (decision.domain); drawn apart from the simulation, so the table is the same.
    rule = dataclasses.replace(
        rule,
        within_variance=within_variance(embeddings, labels),
        domain=learn_domain_check(embeddings, labels, rule.sizes, seed=seed),
    )
    full = by_size[-1]
    fpir, fnir = open_set_rates(rule.accepts(full.distances, full.cohort, full.gallery_size), full.correct, full.mated)
    distance_threshold = threshold_at_fpir(-full.distances[~full.mated, 0], target_fpir)
    _, distance_fnir = open_set_rates(-full.distances[:, 0] >= distance_threshold, full.correct, full.mated)
    return Calibration(
        rule,
        target_fpir,
        int(full.gallery_size[0]),
        fpir,
        fnir,
        distance_fnir,
        len(np.unique(labels)),
        len(labels),
        int(full.mated.sum()),
        int((~full.mated).sum()),
    )


def simulate_sizes(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    target_fpir: float = 0.01,
    enrolled_fraction: float = 0.5,
    largest_gallery: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[Searches]:
    """One-shot searches at each gallery size of ``calibration_sizes``, smallest first (see ``calibrate``)."""
    labels = np.asarray(labels)
    identities, counts = np.unique(labels, return_counts=True)
    largest = sum(round(len(g) * enrolled_fraction) for g in (identities[counts >= 2], identities[counts < 2]))
    if largest_gallery is not None:
        largest = min(largest, largest_gallery)
    sizes = calibration_sizes(largest)
    by_size = []
    for done, size in enumerate(sizes):
        trials = trials_for_size(size, largest)
        by_size.append(
            simulate(
                embeddings,
                labels,
                trials=trials,
                gallery_size=size,
                enrolled_fraction=enrolled_fraction,
                strangers_per_trial=strangers_per_trial(trials, target_fpir),
                seed=seed + done,
            )
        )
        if progress:
            progress(done + 1, len(sizes))
    return by_size


def fit_rule(
    by_size: Sequence[Searches],
    *,
    reference: float,
    target_fpir: float,
    strengths: Sequence[float] = STRENGTHS,
    runner_up_exponent: float = 0.5,
    cohort_exponent: float = 0.5,
    margin: MarginPolicy | None = None,
    selection: Sequence[Searches] | None = None,
    review_fpir: float | None = None,
) -> NormalisedDistance:
    """Learn a rule's table (strength and threshold per gallery size), confidence curve and tie ratio.

    At each size, every candidate strength gets the threshold that accepts ``target_fpir`` of
    that size's strangers, and the strength that then misses fewest mated searches is kept.
    Strengths are made non-decreasing with size (more neighbours, more to learn from them),
    and the thresholds set again for the strengths kept.

    Args:
        by_size: searches of one gallery size each, ascending size (``simulate_sizes``).
        reference: stand-in for missing runner-up/cohort distances (``typical_impostor_distance``).
        target_fpir: share of strangers accepted at each size.
        strengths: the candidate normalisation strengths; (0.0,) gives the plain distance rule.
        runner_up_exponent, cohort_exponent: the rule's normalisation.
        margin: each threshold accepts the most strangers whose Clopper-Pearson upper bound, on
            the searches divided by the size's divisor (``MarginPolicy.divisors``), stays at
            ``target_fpir`` (``allowed_at_bound``); the bounds and divisors are stored with the
            rule. None: the threshold accepts ``target_fpir`` of them (the point estimate).
        selection: other searches of the same sizes on which to choose the strengths (then the
            thresholds are set on ``by_size`` alone); None: on ``by_size`` too.
        review_fpir: also learn the enrolment desk's review table (``Review``): thresholds at
            this stranger rate (the point estimate), with the strengths kept. None: none.
    """
    # The table's rows are filled in below; this scorer only computes log ratios (strength given per call).
    scorer = NormalisedDistance(
        sizes=(1,),
        thresholds=(1.0,),
        strengths=(0.0,),
        reference=reference,
        confidence=_FLAT,
        runner_up_exponent=runner_up_exponent,
        cohort_exponent=cohort_exponent,
        target_fpir=target_fpir,
    )

    def log_ratios(searches: Searches, strength: float) -> np.ndarray:
        return scorer.log_ratios(searches.distances[:, 0], searches.distances[:, 1], searches.cohort[:, 0], strength)

    def point_cut(searches: Searches, strength: float, fpir: float = target_fpir) -> float:
        # Accept log ratio <= threshold, i.e. -log ratio >= -threshold.
        return -threshold_at_fpir(-log_ratios(searches, strength)[~searches.mated], fpir)

    def clustering(searches: Searches, strength: float) -> float:
        strangers = ~searches.mated
        accepted = log_ratios(searches, strength)[strangers] <= point_cut(searches, strength)
        return design_effect(accepted, searches.truth[strangers], searches.identities[strangers, 0])

    def divisors(group: Sequence[Searches], strength: float) -> tuple[float, ...]:
        assert margin is not None
        if margin.populations <= 0:
            return (margin.least_divisor,) * len(group)
        return margin.divisors([clustering(searches, strength) for searches in group])

    def log_threshold(searches: Searches, strength: float, divisor: float | None) -> float:
        if margin is None or divisor is None:
            return point_cut(searches, strength)
        strangers = -log_ratios(searches, strength)[~searches.mated]
        allowed = allowed_at_bound(len(strangers), target_fpir, margin.confidence, round(divisor, 2))
        return -threshold_at_count(strangers, allowed)

    def bound(searches: Searches, strength: float, log_cut: float, divisor: float) -> float:
        assert margin is not None
        accepted = int((log_ratios(searches, strength)[~searches.mated] <= log_cut).sum())
        divisor = round(divisor, 2)
        return clopper_pearson_upper(
            round(accepted / divisor), round(int((~searches.mated).sum()) / divisor), margin.confidence
        )

    def misses(searches: Searches, strength: float, divisor: float | None) -> float:
        accepted = log_ratios(searches, strength) <= log_threshold(searches, strength, divisor)
        return open_set_rates(accepted, searches.correct, searches.mated)[1]

    def divisors_on(group: Sequence[Searches]) -> dict[float, list[float | None]]:
        # Each strength's divisor per size (None: the point estimate), measured on the searches they apply to.
        return {
            strength: [None] * len(group) if margin is None else list(divisors(group, strength))
            for strength in strengths
        }

    choosing = list(by_size if selection is None else selection)
    choosing_divisors = divisors_on(choosing)
    chosen = [
        min(strengths, key=lambda strength: (misses(searches, strength, choosing_divisors[strength][i]), strength))
        for i, searches in enumerate(choosing)
    ]
    kept = _non_decreasing(chosen, strengths)
    table_divisors = choosing_divisors if selection is None else divisors_on(by_size)
    kept_divisors = [table_divisors[strength][i] for i, strength in enumerate(kept)]
    log_cuts = [
        log_threshold(searches, strength, divisor)
        for searches, strength, divisor in zip(by_size, kept, kept_divisors, strict=True)
    ]
    thresholds = tuple(float(np.exp(cut)) for cut in log_cuts)
    bounds = None
    if margin is not None:
        used = [margin.least_divisor if d is None else d for d in kept_divisors]
        bounds = Margin(
            margin.confidence,
            margin.least_divisor,
            tuple(
                bound(s, strength, cut, d) for s, strength, cut, d in zip(by_size, kept, log_cuts, used, strict=True)
            ),
            sample_divisors=tuple(round(d, 2) for d in used) if margin.populations > 0 else None,
        )
    beyond = float(np.exp(log_threshold(by_size[-1], 1.0, table_divisors[1.0][-1]))) if 1.0 in strengths else None
    review = None
    if review_fpir is not None:
        review = Review(
            review_fpir,
            tuple(float(np.exp(point_cut(s, kept_s, review_fpir))) for s, kept_s in zip(by_size, kept, strict=True)),
            float(np.exp(point_cut(by_size[-1], 1.0, review_fpir))) if 1.0 in strengths else None,
        )
    sizes = tuple(int(s.gallery_size[0]) for s in by_size)
    table = dataclasses.replace(
        scorer,
        sizes=sizes,
        thresholds=thresholds,
        strengths=tuple(kept),
        beyond_threshold=beyond,
        margin=bounds,
        review=review,
    )
    pooled = Searches.concat(by_size)
    margins = table.margins(pooled.distances, pooled.cohort, pooled.gallery_size)
    # Searches whose nearest or runner-up is right: from which d1/d2 is the nearest no longer clearly the one?
    contest = (
        pooled.mated
        & np.isfinite(pooled.distances[:, 1])
        & (pooled.correct | (pooled.identities[:, 1] == pooled.truth))
    )
    tie = (
        fit_tie_ratio(pooled.distances[contest, 0] / pooled.distances[contest, 1], pooled.correct[contest])
        if contest.any()
        else 1.0
    )
    # Confidence per gallery-size band: what a margin means depends on how many people could be
    # mistaken for the probe. Bands without searches (data too small for them) are left out.
    in_band = [
        (start, (pooled.gallery_size >= start) & (pooled.gallery_size < end))
        for start, end in itertools.pairwise((*CONFIDENCE_BANDS, np.inf))
    ]
    fitted = [
        (start, fit_confidence(margins[band], pooled.correct[band], pooled.mated[band]))
        for start, band in in_band
        if (band & pooled.mated).any() and (band & ~pooled.mated).any()
    ]
    bands = (tuple([1] + [int(s) for s, _ in fitted[1:]]), tuple(c for _, c in fitted)) if fitted else None
    return dataclasses.replace(
        table,
        confidence=fit_confidence(margins, pooled.correct, pooled.mated),
        tie_ratio=tie,
        band_confidence=bands,
    )


def _non_decreasing(values: Sequence[float], allowed: Sequence[float]) -> list[float]:
    """The closest non-decreasing sequence (isotonic fit), each value snapped to ``allowed``."""
    blocks: list[list[float]] = []  # [mean, count]
    for value in values:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            total = blocks[-1][1] + count
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * count) / total, total]
    fitted = [mean for mean, count in blocks for _ in range(int(count))]
    grid = np.asarray(sorted(allowed))
    return [float(grid[np.argmin(np.abs(grid - v))]) for v in fitted]


@dataclass(frozen=True)
class VerifyCalibration:
    """A 1:1 distance threshold for a target false match rate, and the rates it gives on the data."""

    threshold: float
    target_fmr: float
    fmr: float
    fnmr: float
    genuine_pairs: int
    impostor_pairs: int

    def provenance(self) -> dict[str, Any]:
        return {
            "target_fmr": self.target_fmr,
            "fmr": round(self.fmr, 8),
            "fnmr": round(self.fnmr, 6),
            "genuine_pairs": self.genuine_pairs,
            "impostor_pairs": self.impostor_pairs,
        }


def calibrate_verify(embeddings: np.ndarray, labels: np.ndarray, *, target_fmr: float = 0.001) -> VerifyCalibration:
    """The largest distance threshold whose false match rate on all different-person pairs is <= ``target_fmr``.

    Raises:
        CalibrationError: no same-person pair, or too few different-person pairs for the target.
    """
    embeddings, labels = _checked(embeddings, labels, None)
    if not 0.0 < target_fmr < 1.0:
        raise CalibrationError(f"the target FMR must lie in (0, 1), got {target_fmr}")
    genuine_d, impostor_d = _pair_distances(embeddings, labels)
    if len(genuine_d) == 0:
        raise CalibrationError("calibrating verification needs at least one person with two photos")
    if len(impostor_d) * target_fmr < 1.0:
        raise CalibrationError(
            f"FMR {target_fmr:g} needs at least {int(np.ceil(1 / target_fmr))} different-person "
            f"pairs; the photos give {len(impostor_d)}"
        )
    threshold = -threshold_at_fpir(-impostor_d, target_fmr)  # verify accepts distance <= threshold
    return VerifyCalibration(
        threshold,
        target_fmr,
        float((impostor_d <= threshold).mean()),
        float((genuine_d > threshold).mean()),
        len(genuine_d),
        len(impostor_d),
    )


def _pair_distances(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distances of every same-person pair, and of every different-person pair (a random sample if very many)."""
    order = np.argsort(labels, kind="stable")
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    genuine = [
        pairwise_distances(embeddings[order[a : a + c]], embeddings[order[a : a + c]])[np.triu_indices(c, 1)]
        for a, c in zip(starts, counts, strict=True)
        if c > 1
    ]
    n = len(labels)
    if n * (n - 1) // 2 <= MAX_IMPOSTOR_PAIRS:
        first, second = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(seed)
        first, second = rng.integers(0, n, MAX_IMPOSTOR_PAIRS), rng.integers(0, n, MAX_IMPOSTOR_PAIRS)
    different = labels[first] != labels[second]
    first, second = first[different], second[different]
    chunk = 1 << 18  # pairs per step: bounds the temporary (chunk, d) differences
    single = embeddings.astype(np.float32)  # half the memory traffic; distances still exact to ~1e-7
    impostor = [
        np.linalg.norm(single[first[i : i + chunk]] - single[second[i : i + chunk]], axis=1).astype(np.float64)
        for i in range(0, len(first), chunk)
    ]
    return (np.concatenate(genuine) if genuine else np.empty(0), np.concatenate(impostor) if impostor else np.empty(0))


def typical_impostor_distance(
    embeddings: np.ndarray, labels: np.ndarray, *, seed: int = 0, pairs: int = 20000
) -> float:
    """Median distance between photos of different people (a random sample of pairs)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(labels), pairs)
    second = rng.integers(0, len(labels), pairs)
    different = labels[first] != labels[second]
    if not different.any():
        raise CalibrationError("calibration needs photos of at least two people")
    gaps = np.linalg.norm(np.asarray(embeddings[first[different]], np.float64) - embeddings[second[different]], axis=1)
    return float(np.median(gaps))


def trials_for_size(size: int, largest: int) -> int:
    # Small galleries hold few mated probes per draw: draw more of them.
    return int(min(MAX_TRIALS, max(BASE_TRIALS, round(BASE_TRIALS * largest / size))))


def strangers_per_trial(trials: int, target_fpir: float) -> int:
    # Enough strangers in all for a hundred or more to pass at the target: the threshold is a tail quantile.
    return int(np.ceil(max(STRANGERS_PER_SIZE, 100.0 / target_fpir) / trials))


def _checked(embeddings: np.ndarray, labels: np.ndarray, target_fpir: float | None) -> tuple[np.ndarray, np.ndarray]:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise CalibrationError("need an (n, d) array of embeddings and n labels")
    if not np.isfinite(embeddings).all():
        raise CalibrationError("embeddings must be finite")
    if target_fpir is None:
        return embeddings, labels
    if not 0.0 < target_fpir < 1.0:
        raise CalibrationError(f"the target FPIR must lie in (0, 1), got {target_fpir}")
    _identities, counts = np.unique(labels, return_counts=True)
    if (counts >= 2).sum() < 2:
        raise CalibrationError("calibration needs at least two people with two or more photos each")
    # Strangers in one simulated gallery: photos of the identities left out (about half of them).
    strangers = len(labels) // 2
    needed = int(np.ceil(1.0 / target_fpir))
    if strangers < needed:
        raise CalibrationError(
            f"FPIR {target_fpir:g} needs at least {needed} stranger photos per simulated gallery "
            f"(about {2 * needed} photos in all); the folder has {len(labels)}"
        )
    return embeddings, labels


# Stand-in curve while the threshold table is being learned (the curve needs the thresholds).
_FLAT = ConfidenceCurve((0.0,), (0.5,))
