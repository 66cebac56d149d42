"""Fitting match confidence: the monotone map from a rule's margin to the probability the match is right.

Fitted by isotonic regression (pool-adjacent-violators, numpy only) on the calibration
simulation, with strangers and enrolled people weighted equally: the probability assumes a
probe is as likely to be a stranger as an enrolled person. The curve itself
(``gallery.decision.confidence.ConfidenceCurve``) is what identify reads.
"""

from __future__ import annotations

import numpy as np

from gallery.decision.confidence import ConfidenceCurve

# Never claim certainty: the calibration data is finite.
PROBABILITY_FLOOR = 0.001
# Knots kept in the stored curve (it goes to JSON).
MAX_KNOTS = 64
# Searches pooled into this many bins of neighbouring margins before the isotonic fit.
MAX_BINS = 4000


def fit_confidence(margins: np.ndarray, right: np.ndarray, mated: np.ndarray) -> ConfidenceCurve:
    """Fit P(right | margin), non-increasing, on simulated searches.

    Args:
        margins: (P,) each search's margin (smaller means more like a match).
        right: (P,) the search's nearest identity is the probe's own (False for every stranger).
        mated: (P,) the probe's identity is enrolled; mated and stranger searches get equal total weight.

    Returns:
        The fitted curve.
    """
    margins = np.asarray(margins, dtype=np.float64)
    right = np.asarray(right, dtype=bool)
    mated = np.asarray(mated, dtype=bool)
    finite = np.isfinite(margins)
    margins, right, mated = margins[finite], right[finite], mated[finite]
    if not mated.any() or mated.all():
        raise ValueError("fitting a confidence needs both mated and stranger searches")
    weights = np.where(mated, 0.5 / mated.sum(), 0.5 / (~mated).sum())
    order = np.argsort(margins, kind="stable")
    x, y, w = _binned(margins[order], right[order].astype(np.float64), weights[order])
    # Non-increasing fit of y on x == non-decreasing fit of y on -x.
    block_mean, _block_weight, block_x = _pool_adjacent_violators(y[::-1], w[::-1], x[::-1])
    xs, ps = block_x[::-1], block_mean[::-1]
    xs, ps = _thin(xs, ps, MAX_KNOTS)
    ps = np.clip(ps, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return ConfidenceCurve(tuple(float(v) for v in xs), tuple(float(v) for v in ps))


def fit_tie_ratio(ratios: np.ndarray, nearest_right: np.ndarray, share: float = 2.0 / 3.0) -> float:
    """The runner-up ratio d1/d2 from which the nearest identity stops being clearly the right one.

    Args:
        ratios: (P,) d1/d2 of mated searches whose nearest or runner-up identity is the right one.
        nearest_right: (P,) it is the nearest.
        share: "clearly": the nearest is right at least this share of the time (2/3: twice as
            often as the runner-up).

    Returns:
        The smallest ratio at which a non-increasing fit of P(nearest right | ratio) falls below
        ``share``; 1.0 (only exact ties) when it never does.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    order = np.argsort(ratios, kind="stable")
    x, y, w = _binned(ratios[order], np.asarray(nearest_right, dtype=np.float64)[order], np.ones(len(order)))
    means, _, xs = _pool_adjacent_violators(y[::-1], w[::-1], x[::-1])
    means, xs = means[::-1], xs[::-1]
    below = np.nonzero(means < share)[0]
    return float(min(xs[below[0]], 1.0)) if len(below) else 1.0


def _binned(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive samples (sorted by x) pooled into at most MAX_BINS bins: weighted means of x and y."""
    if len(x) <= MAX_BINS:
        return x, y, w
    edges = np.linspace(0, len(x), MAX_BINS + 1).round().astype(int)
    weight = np.add.reduceat(w, edges[:-1])
    return (np.add.reduceat(w * x, edges[:-1]) / weight, np.add.reduceat(w * y, edges[:-1]) / weight, weight)


def _pool_adjacent_violators(y: np.ndarray, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-decreasing weighted isotonic fit; returns each block's mean, weight and weighted mean x."""
    means: list[float] = []
    weights: list[float] = []
    xsums: list[float] = []
    for yi, wi, xi in zip(y, w, x, strict=True):
        means.append(yi)
        weights.append(wi)
        xsums.append(xi * wi)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, x2 = means.pop(), weights.pop(), xsums.pop()
            total = weights[-1] + w2
            means[-1] = (means[-1] * weights[-1] + m2 * w2) / total
            weights[-1] = total
            xsums[-1] += x2
    weight = np.array(weights)
    return np.array(means), weight, np.array(xsums) / weight


def _thin(xs: np.ndarray, ps: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``most`` knots: one wherever the probability has moved by 1/most since the last."""
    order = np.argsort(xs, kind="stable")
    xs, ps = xs[order], ps[order]
    keep = [0]
    for i in range(1, len(xs)):
        if abs(ps[i] - ps[keep[-1]]) >= 1.0 / most:
            keep.append(i)
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return xs[keep], ps[keep]
