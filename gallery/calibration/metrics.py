"""Biometric rates: open-set FNIR at a target FPIR, rank-1, FTE/FTA and LFW pair accuracy.

Pure numpy over scores and labels. Conventions follow NIST FRVT 1:N: a *mated* search is a
probe whose identity is enrolled; it is a miss (counts in FNIR) unless the rule accepts the
right identity. FPIR counts non-mated searches (strangers) accepted as anyone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on a score (accept when score >= threshold) and the rates it gives."""

    threshold: float
    fpir: float
    fnir: float


def open_set_rates(accepted: np.ndarray, correct: np.ndarray, mated: np.ndarray) -> tuple[float, float]:
    """FPIR and FNIR of accept/reject decisions.

    Args:
        accepted: (P,) bool, the rule accepted the probe's nearest identity.
        correct: (P,) bool, the nearest identity is the probe's own.
        mated: (P,) bool, the probe's identity is enrolled.

    Returns:
        (fpir, fnir); nan where there are no probes of that kind.
    """
    accepted, correct, mated = (np.asarray(a, dtype=bool) for a in (accepted, correct, mated))
    fpir = float(accepted[~mated].mean()) if (~mated).any() else float("nan")
    fnir = float(1.0 - (accepted & correct)[mated].mean()) if mated.any() else float("nan")
    return fpir, fnir


def threshold_at_fpir(nonmated_scores: np.ndarray, fpir: float) -> float:
    """The lowest threshold (accept score >= it) that accepts at most ``fpir`` of the strangers."""
    scores = np.asarray(nonmated_scores, dtype=np.float64)
    return threshold_at_count(scores, int(np.floor(fpir * len(scores) + 1e-9)))


def clopper_pearson_upper(accepted: float, searches: float, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate after ``accepted`` of ``searches`` (both may be fractional).

    Fractional counts are an effective sample (``searches`` / design effect): the binomial's
    factorials are taken as gamma functions.
    """
    if accepted >= searches:
        return 1.0

    def cdf(p: float) -> float:  # P(X <= accepted) for X ~ Binomial(searches, p)
        ks = np.arange(0, math.floor(accepted) + 1, dtype=np.float64)
        logs = (
            np.array([math.lgamma(searches + 1) - math.lgamma(k + 1) - math.lgamma(searches - k + 1) for k in ks])
            + ks * math.log(p)
            + (searches - ks) * math.log1p(-p)
        )
        top = logs.max()
        return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))

    low, high = accepted / searches, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if cdf(middle) > 1 - confidence:
            low = middle
        else:
            high = middle
    return high


@functools.lru_cache(maxsize=4096)
def allowed_at_bound(searches: int, target: float, confidence: float, divisor: float) -> int:
    """The most strangers of ``searches`` a threshold may accept so that the upper bound stays <= ``target``.

    The bound is ``clopper_pearson_upper`` at ``confidence`` on an effective sample of
    ``searches / divisor`` (and as many accepted / divisor, both rounded): simulated stranger searches are
    clustered (one stranger's photos, one enrolled look-alike attracting many), so they count as
    fewer independent ones. -1 when even none accepted does not bound the rate below ``target``.
    """
    effective = round(searches / divisor)
    allowed = int(np.floor(target * searches + 1e-9))
    while allowed >= 0 and clopper_pearson_upper(round(allowed / divisor), effective, confidence) > target:
        allowed -= max(1, allowed // 100) if allowed > 200 else 1
    return allowed


def design_effect(accepted: np.ndarray, strangers: np.ndarray, nearest: np.ndarray) -> float:
    """How many times the variance of the accepted share exceeds a binomial's, searches clustered by person.

    A simulated stranger search involves two people: the stranger, and the enrolled person they
    landed nearest. Searches sharing either (in either role: a face-space region that attracts
    strangers to its enrolled people also makes its own people accepted as strangers) are
    correlated. The variance is the dyadic cluster-robust one: each person's summed residuals over
    the searches they take part in, squared and added, less the double count of searches sharing
    both people. Floored at 1.

    Args:
        accepted: (n,) bool or 0/1, each stranger search accepted.
        strangers: (n,) the stranger's identity label.
        nearest: (n,) the identity label of the enrolled person nearest them.
    """
    accepted = np.asarray(accepted, dtype=np.float64)
    n = len(accepted)
    share = float(accepted.mean()) if n else 0.0
    if share <= 0.0 or share >= 1.0:
        return 1.0
    residual = accepted - share
    _, codes = np.unique(np.concatenate([np.asarray(strangers), np.asarray(nearest)]), return_inverse=True)
    people = int(codes.max()) + 1
    stranger, enrolled = codes[:n], codes[n:]
    per_person = np.bincount(stranger, weights=residual, minlength=people) + np.bincount(
        enrolled, weights=residual, minlength=people
    )
    _, pair = np.unique(stranger.astype(np.int64) * people + enrolled, return_inverse=True)
    shared_both = (np.bincount(pair, weights=residual) ** 2).sum()
    variance = (per_person**2).sum() - shared_both
    return max(1.0, float(variance / (n * share * (1.0 - share))))


def threshold_at_count(nonmated_scores: np.ndarray, allowed: int) -> float:
    """The lowest threshold (accept score >= it) that accepts at most ``allowed`` of the strangers."""
    scores = np.sort(np.asarray(nonmated_scores, dtype=np.float64))[::-1]
    if len(scores) == 0:
        raise ValueError("need non-mated scores to set a threshold")
    if allowed < 0:
        return float(np.nextafter(scores[0], np.inf))
    if allowed >= len(scores):
        return float("-inf")
    refused = scores[allowed]  # the first stranger that must be refused; ties with it are refused too
    passing = scores[scores > refused]
    if len(passing) == 0:
        return float(np.nextafter(refused, np.inf))
    # Midway to the lowest stranger that passes, so rounding in a stored rule cannot move the cut.
    return float((refused + passing[-1]) / 2)


def fnir_at_fpir(scores: np.ndarray, correct: np.ndarray, mated: np.ndarray, fpir: float) -> OperatingPoint:
    """The best operating point of a score on this data: the threshold set on its own strangers.

    Args:
        scores: (P,) higher means more like a match with the nearest identity.
        correct, mated: (P,) bool, as in ``open_set_rates``.
        fpir: the target false positive identification rate.
    """
    scores = np.asarray(scores, dtype=np.float64)
    mated = np.asarray(mated, dtype=bool)
    threshold = threshold_at_fpir(scores[~mated], fpir)
    achieved_fpir, fnir = open_set_rates(scores >= threshold, correct, mated)
    return OperatingPoint(threshold, achieved_fpir, fnir)


def rank_one(correct: np.ndarray, mated: np.ndarray) -> float:
    """Share of mated searches whose nearest enrolled identity is the right one."""
    correct, mated = np.asarray(correct, dtype=bool), np.asarray(mated, dtype=bool)
    return float(correct[mated].mean()) if mated.any() else float("nan")


def failure_rates(labels: np.ndarray, has_face: np.ndarray) -> tuple[float, float]:
    """Failure to enrol and failure to acquire, for a one-shot simulation over labelled photos.

    The enrolment photo of an identity is drawn at random among its photos, so the FTE is the
    mean over identities of their share of faceless photos; any other photo is a probe, so the
    FTA is the share of faceless photos overall.

    Args:
        labels: (n,) identity of every photo, with or without a face.
        has_face: (n,) bool, the pipeline found a face in the photo.

    Returns:
        (fte, fta).
    """
    labels = np.asarray(labels)
    failed = ~np.asarray(has_face, dtype=bool)
    if len(labels) == 0:
        return float("nan"), float("nan")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    failed_per_identity = np.bincount(inverse, weights=failed, minlength=len(counts))
    return float(np.mean(failed_per_identity / counts)), float(failed.mean())


@dataclass(frozen=True)
class PairAccuracy:
    """Verification accuracy on labelled pairs, each fold judged at a threshold set on the others."""

    accuracy: float  # mean over folds
    std: float  # standard deviation over folds
    thresholds: tuple[float, ...]  # distance threshold learned for each fold
    folds: int
    pairs: int


def best_accuracy_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold (same when distance <= it) of highest accuracy; mid-point between scores."""
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order]
    # Accepting the first i pairs: right = same among them + different among the rest.
    right = np.concatenate([[0], np.cumsum(s)]) + np.concatenate([[(~s).sum()], (~s).sum() - np.cumsum(~s)])
    # Only cut between distinct distances.
    valid = np.concatenate([[True], d[1:] > d[:-1], [True]])
    i = int(np.argmax(np.where(valid, right, -1)))
    if i == 0:
        return float(np.nextafter(d[0], -np.inf)) if len(d) else 0.0
    if i == len(d):
        return float(d[-1])
    return float((d[i - 1] + d[i]) / 2)


def pair_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray | None = None) -> PairAccuracy:
    """LFW-style verification accuracy by cross-validation over folds.

    Args:
        distances: (n,) distance between the two faces of each pair.
        same: (n,) bool, the pair shows one person.
        folds: (n,) fold number of each pair (LFW View 2 has 10); None makes 10 folds by
            position, stratified so each fold has the same share of same-person pairs.
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if folds is None:
        folds = np.empty(len(same), dtype=np.int64)
        for kind in (True, False):
            where = np.nonzero(same == kind)[0]
            folds[where] = np.arange(len(where)) % 10
    folds = np.asarray(folds)
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        train = ~test if (~test).any() else test
        threshold = best_accuracy_threshold(distances[train], same[train])
        accuracies.append(float(((distances[test] <= threshold) == same[test]).mean()))
        thresholds.append(threshold)
    return PairAccuracy(
        float(np.mean(accuracies)), float(np.std(accuracies)), tuple(thresholds), len(thresholds), len(same)
    )
