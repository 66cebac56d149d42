"""The learned decision rule: the nearest distance judged against the gallery's own density.

``NormalisedDistance`` accepts the nearest identity when

    ratio = d1 / (d2 ** a * c1 ** b) ** s(N)  <=  threshold(N),    a = b = 1/2

- d1: distance from the probe to the nearest enrolled identity;
- d2: distance to the runner-up identity (how crowded the gallery is around the *probe*);
- c1: the nearest identity's cohort distance, the mean distance from it to its 10 nearest other
  enrolled identities (how crowded the gallery is around *that identity*);
- N: the number of enrolled identities; s(N) in [0, 1], the normalisation strength, and
  threshold(N) form a table learned by re-running the calibration simulation at gallery sizes
  from 1 up to the largest the data allows, interpolated in log N.

A stranger is accepted when they happen to land near someone; d2 and c1 measure how near
"near" is in that region of face space, the way adaptive score normalisation does in speaker
verification. In a small gallery the neighbours are few and far, so they say little about the
region and the calibration picks a weak normalisation (s = 0 is the plain distance); in a large
one it picks s = 1. Beyond the largest size calibrated the rule uses s = 1 with the threshold
learned for it at that size: with full normalisation a growing gallery only makes a stranger's
ratio larger (the references shrink as it fills), so the FPIR there can only fall below target.

Photos per person: with ``within_variance`` (s2) set, a person's distance d is not their nearest
photo's but their *template's*: ``d'^2 = ||probe - mean||^2 + s2 * (1 - 1/m)`` over their m enrolled
descriptors, and cohort distances use the same templates (``gallery.decision.templates``). The
nearest of m photos gives a stranger m chances; the mean of m photos sits closer to everyone, and
s2 (1 - 1/m) adds back the enrolled photo's own noise a one-photo template carries, so the score
keeps the one-photo calibration's stranger rate whatever m (exactly the nearest-photo distance at
m = 1). A rule stored without it (``None``, before issue 12) keeps scoring nearest photos.

Review: a rule may carry a second, looser threshold table (``Review``: the thresholds at a higher
stranger rate, same strengths) that only the enrolment desk reads, to name a person a newcomer
resembles without refusing them (``gallery.enrolment.check_lookalike``); identify never uses it.

Outcomes: ``ambiguous`` when each of the two nearest identities would be matched were the other
not enrolled, and either the ratio fails only because of that rival or the two are nearly tied
(d1/d2 >= the learned tie ratio, past which the nearest is no longer right at least twice as
often as the runner-up); else ``match`` when the ratio passes; otherwise ``unknown``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from gallery.decision.confidence import ConfidenceCurve
from gallery.decision.domain import DomainCheck
from gallery.decision.rule import Decision, Evidence

KIND = "normalised_distance"


@dataclass(frozen=True)
class Margin:
    """How the thresholds were set: at an upper confidence bound on the stranger rate, not its point estimate.

    Attributes:
        confidence: the one-sided Clopper-Pearson bound's confidence level (0.95, or 0.99 with
            divisors by size).
        sample_divisor: the simulated stranger searches counted as this many times fewer
            independent ones (a design effect: they are clustered by stranger and by look-alike);
            with ``sample_divisors``, the least any size may use (1: no floor).
        fpir_bounds: at each table size, the bound on the stranger rate at the threshold set there.
        sample_divisors: the divisor used at each table size, set from the clustering calibrate
            measured there (``gallery.calibration.margin.MarginPolicy``); None: ``sample_divisor``
            at every size.
    """

    confidence: float
    sample_divisor: float
    fpir_bounds: tuple[float, ...]
    sample_divisors: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidence": self.confidence,
            "sample_divisor": self.sample_divisor,
            "fpir_bounds": list(self.fpir_bounds),
            **({} if self.sample_divisors is None else {"sample_divisors": list(self.sample_divisors)}),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Margin:
        divisors = data.get("sample_divisors")
        return Margin(
            float(data["confidence"]),
            float(data["sample_divisor"]),
            tuple(float(b) for b in data["fpir_bounds"]),
            None if divisors is None else tuple(float(d) for d in divisors),
        )


@dataclass(frozen=True)
class Review:
    """A looser threshold table, for the enrolment desk: where a newcomer resembles someone enough to look twice.

    The lookalike check refuses a face the rule would match (at ``target_fpir``); a duplicate
    it misses is usually close enough to be matched at a higher stranger rate. These thresholds
    accept ``fpir`` of the calibration's strangers at each size (the point estimate), with the
    rule's own strengths, so a face they match is enrolled with a warning naming whom it
    resembles (``gallery.enrolment``), never refused.

    Attributes:
        fpir: the share of strangers the review thresholds would match, above the rule's target.
        thresholds: the ratio threshold at each of the rule's sizes.
        beyond_threshold: with s = 1, for galleries larger than the rule's sizes (None: the last row).
    """

    fpir: float
    thresholds: tuple[float, ...]
    beyond_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"fpir": self.fpir, "thresholds": list(self.thresholds), "beyond_threshold": self.beyond_threshold}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Review:
        beyond = data.get("beyond_threshold")
        return Review(
            float(data["fpir"]), tuple(float(t) for t in data["thresholds"]), None if beyond is None else float(beyond)
        )


_TINY = 1e-12  # floor under distances before logs: a probe identical to an enrolled face


@dataclass(frozen=True)
class NormalisedDistance:
    """Accept the nearest identity when its distance, relative to the local density, is small enough.

    Attributes:
        sizes: gallery sizes (number of identities) the table was learned at, ascending.
        thresholds: the ratio threshold at each of those sizes.
        strengths: the normalisation strength s at each of those sizes, in [0, 1].
        reference: the typical distance between different people on the calibration data;
            stands in for a runner-up or cohort distance the gallery cannot supply (one identity).
        confidence: P(match right) as a function of the margin log(ratio) - log(threshold).
        beyond_threshold: the threshold with s = 1 for galleries larger than ``sizes[-1]``;
            None holds the last row there.
        runner_up_exponent: a, the weight of the probe's runner-up distance d2.
        cohort_exponent: b, the weight of the nearest identity's cohort distance c1.
        target_fpir: the false positive identification rate the thresholds were set for.
        tie_ratio: d1/d2 from which two identities that would each be matched alone are a tie.
        within_variance: s2, the mean squared distance of a photo from its person's mean on the
            calibration data (half the mean squared same-person distance); people are scored by
            their variance-corrected template (module docstring). None: by their nearest photo.
        margin: the upper bound the thresholds were set at (``Margin``); None: at the point
            estimate (a rule from before issue 12).
        band_confidence: ``confidence`` per gallery-size band: (smallest size of each band,
            ascending from 1; a curve per band). A margin means less in a small gallery (in a
            1-person gallery the pooled curve announced 0.93 for matches right 64% of the time).
            None: ``confidence`` at every size (a rule from before issue 12).
        review: the enrolment desk's looser table (``Review``); None: no review tier (a rule
            from before it).
        domain: how far apart the calibration's own galleries' people sat (``DomainCheck``), for
            a gallery to tell when its faces crowd closer than the rule was learned on; None: no
            check (a rule from before it).
    """

    sizes: tuple[int, ...]
    thresholds: tuple[float, ...]
    strengths: tuple[float, ...]
    reference: float
    confidence: ConfidenceCurve = field(repr=False)
    beyond_threshold: float | None = None
    runner_up_exponent: float = 0.5
    cohort_exponent: float = 0.5
    target_fpir: float = 0.01
    tie_ratio: float = 1.0
    within_variance: float | None = None
    margin: Margin | None = None
    band_confidence: tuple[tuple[int, ...], tuple[ConfidenceCurve, ...]] | None = None
    review: Review | None = None
    domain: DomainCheck | None = None
    kind: ClassVar[str] = KIND
    uses_cohort: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.sizes or not len(self.sizes) == len(self.thresholds) == len(self.strengths):
            raise ValueError("need one threshold and one strength per gallery size")
        if list(self.sizes) != sorted(set(self.sizes)) or self.sizes[0] < 1:
            raise ValueError("gallery sizes must be positive and strictly ascending")
        if min(self.thresholds) <= 0:
            raise ValueError("ratio thresholds must be positive")
        if self.margin is not None and len(self.margin.fpir_bounds) != len(self.sizes):
            raise ValueError("need one FPIR bound per gallery size")
        divisors = None if self.margin is None else self.margin.sample_divisors
        if divisors is not None and len(divisors) != len(self.sizes):
            raise ValueError("need one sample divisor per gallery size")
        if self.band_confidence is not None:
            starts, curves = self.band_confidence
            if not starts or starts[0] != 1 or list(starts) != sorted(set(starts)) or len(curves) != len(starts):
                raise ValueError("confidence bands must start at size 1, ascend, and have one curve each")
        if self.review is not None and (
            len(self.review.thresholds) != len(self.sizes) or not self.target_fpir < self.review.fpir < 1.0
        ):
            raise ValueError("a review table needs one threshold per gallery size and an FPIR above the target's")

    def for_review(self) -> NormalisedDistance | None:
        """This rule with the review table's thresholds (``Review``), or None without one.

        The same evidence, strengths and outcomes; only the thresholds are looser. Its
        confidences are the rule's curves read at the looser margin: not a calibrated
        probability, so the enrolment desk reports whom, not how sure.
        """
        if self.review is None:
            return None
        return dataclasses.replace(
            self,
            thresholds=self.review.thresholds,
            beyond_threshold=self.review.beyond_threshold,
            target_fpir=self.review.fpir,
            margin=None,
            review=None,
        )

    def confidence_at(self, gallery_size: int) -> ConfidenceCurve:
        """The confidence curve for a gallery of this many identities (its band's, else the pooled one)."""
        if self.band_confidence is None:
            return self.confidence
        starts, curves = self.band_confidence
        return curves[int(np.searchsorted(np.asarray(starts), max(gallery_size, 1), side="right")) - 1]

    # ---- the score -------------------------------------------------------------------

    def setting(self, gallery_size: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(strength, threshold) for galleries of these sizes: log-linear between table rows."""
        size = np.maximum(np.asarray(gallery_size, dtype=np.float64), 1.0)
        at = np.log(size)
        table = np.log(np.asarray(self.sizes, dtype=np.float64))
        strength = np.interp(at, table, self.strengths)
        threshold = np.interp(at, table, self.thresholds)
        if self.beyond_threshold is not None:
            beyond = size > self.sizes[-1]
            strength = np.where(beyond, 1.0, strength)
            threshold = np.where(beyond, self.beyond_threshold, threshold)
        return strength, threshold

    def log_ratios(
        self, nearest: np.ndarray, runner_up: np.ndarray, cohort: np.ndarray, strength: np.ndarray | float
    ) -> np.ndarray:
        """log(ratio), vectorised; nan/inf references (too few identities enrolled) become ``reference``."""
        runner_up = np.where(np.isfinite(runner_up), runner_up, self.reference)
        cohort = np.where(np.isfinite(cohort), cohort, self.reference)
        log_scale = self.runner_up_exponent * np.log(np.maximum(runner_up, _TINY)) + self.cohort_exponent * np.log(
            np.maximum(cohort, _TINY)
        )
        return np.log(np.maximum(np.asarray(nearest, dtype=np.float64), _TINY)) - strength * log_scale

    def margins(self, distances: np.ndarray, cohort: np.ndarray, gallery_size: np.ndarray | int) -> np.ndarray:
        """log(ratio) - log(threshold) of each search's nearest identity; <= 0 passes.

        Args:
            distances: (P, K>=2) distances to the nearest identities, ascending (inf where absent).
            cohort: (P, K) cohort distances of those identities (nan where unknown).
            gallery_size: (P,) or scalar, identities enrolled.
        """
        strength, threshold = self.setting(gallery_size)
        return self.log_ratios(distances[:, 0], distances[:, 1], cohort[:, 0], strength) - np.log(threshold)

    def accepts(self, distances: np.ndarray, cohort: np.ndarray, gallery_size: np.ndarray | int) -> np.ndarray:
        """(P,) the outcome is ``match`` (vectorised ``decide``; arguments as for ``margins``)."""
        passes = self.margins(distances, cohort, gallery_size) <= 0
        return passes & ~self.ambiguous(distances, cohort, gallery_size)

    def ambiguous(self, distances: np.ndarray, cohort: np.ndarray, gallery_size: np.ndarray | int) -> np.ndarray:
        """(P,) the search is ambiguous (see the module's docstring); ``distances`` needs K >= 2."""
        rivals = self.rivals(distances, cohort, gallery_size)
        tied = distances[:, 0] >= self.tie_ratio * distances[:, 1]
        return rivals & (tied | (self.margins(distances, cohort, gallery_size) > 0))

    def rivals(self, distances: np.ndarray, cohort: np.ndarray, gallery_size: np.ndarray | int) -> np.ndarray:
        """(P,) the top two identities would each pass were the other not enrolled."""
        strength, threshold = self.setting(np.maximum(np.asarray(gallery_size) - 1, 1))
        third = distances[:, 2] if distances.shape[1] > 2 else np.full(len(distances), np.inf)
        first = self.log_ratios(distances[:, 0], third, cohort[:, 0], strength) <= np.log(threshold)
        second = self.log_ratios(distances[:, 1], third, cohort[:, 1], strength) <= np.log(threshold)
        return first & second & np.isfinite(distances[:, 1])

    # ---- the DecisionRule protocol ---------------------------------------------------

    def decide(self, evidence: Sequence[Evidence], gallery_size: int) -> Decision:
        """Match, unknown or ambiguous for one probe face.

        Args:
            evidence: the nearest enrolled identities (at least three when the gallery has them),
                with ``cohort_distance`` set for the nearest two.
            gallery_size: identities enrolled.
        """
        if not evidence:
            return Decision("unknown", None, 1.0)
        order = sorted(range(len(evidence)), key=lambda i: evidence[i].distance)
        distances = np.full((1, 3), np.inf)
        cohort = np.full((1, 3), np.nan)
        for slot, i in enumerate(order[:3]):
            distances[0, slot] = evidence[i].distance
            given = evidence[i].cohort_distance
            cohort[0, slot] = np.nan if given is None else given
        size = np.array([max(gallery_size, len(evidence))])
        margin = float(self.margins(distances, cohort, size)[0])
        curve = self.confidence_at(int(size[0]))
        probability = float(curve(margin))
        if self.ambiguous(distances, cohort, size)[0]:
            # Without the runner-up, the nearest would be matched: how sure that match would be.
            alone = distances.copy()
            alone[0, 1] = distances[0, 2]
            return Decision("ambiguous", None, float(curve(self.margins(alone, cohort, size - 1)[0])))
        if margin <= 0.0:
            return Decision("match", order[0], probability)
        return Decision("unknown", None, 1.0 - probability)

    def describe(self) -> str:
        scored = (
            "nearest photo"
            if self.within_variance is None
            else f"photo-count-corrected template, s2 {self.within_variance:.4f}"
        )
        promise = f"FPIR {self.target_fpir:g}"
        if self.margin is not None:
            divisors = self.margin.sample_divisors or (self.margin.sample_divisor,)
            share = (
                f"1/{min(divisors):g}"
                if min(divisors) == max(divisors)
                else f"1/{min(divisors):g} to 1/{max(divisors):g} (by their clustering)"
            )
            promise += (
                f" at its {self.margin.confidence:.0%} upper bound, {max(self.margin.fpir_bounds):.2%} at most"
                f" (Clopper-Pearson on {share} of the simulated strangers)"
            )
        review = "" if self.review is None else f"; enrolment warns at FPIR {self.review.fpir:g}"
        domain = "" if self.domain is None else "; distances scaled up in a gallery more crowded than the calibration's"
        return (
            f"d1 / sqrt(d2 * cohort)^s <= threshold, both by gallery size ({promise}; "
            f"sizes {self.sizes[0]}..{self.sizes[-1]}: s {self.strengths[0]:g}..{self.strengths[-1]:g}, "
            f"threshold {self.thresholds[0]:.3f}..{self.thresholds[-1]:.3f}; d = {scored}{review}{domain})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sizes": list(self.sizes),
            "thresholds": list(self.thresholds),
            "strengths": list(self.strengths),
            "beyond_threshold": self.beyond_threshold,
            "reference": self.reference,
            "runner_up_exponent": self.runner_up_exponent,
            "cohort_exponent": self.cohort_exponent,
            "target_fpir": self.target_fpir,
            "tie_ratio": self.tie_ratio,
            "confidence": self.confidence.to_dict(),
            # Absent from a rule that scores nearest photos: its record (and fingerprint) stays as stored.
            **({} if self.within_variance is None else {"within_variance": self.within_variance}),
            **({} if self.margin is None else {"margin": self.margin.to_dict()}),
            **({} if self.review is None else {"review": self.review.to_dict()}),
            **({} if self.domain is None else {"domain": self.domain.to_dict()}),
            **(
                {}
                if self.band_confidence is None
                else {
                    "band_confidence": {
                        "from_sizes": list(self.band_confidence[0]),
                        "curves": [c.to_dict() for c in self.band_confidence[1]],
                    }
                }
            ),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> NormalisedDistance:
        beyond = data.get("beyond_threshold")
        return NormalisedDistance(
            sizes=tuple(int(s) for s in data["sizes"]),
            thresholds=tuple(float(t) for t in data["thresholds"]),
            strengths=tuple(float(s) for s in data["strengths"]),
            reference=float(data["reference"]),
            confidence=ConfidenceCurve.from_dict(data["confidence"]),
            beyond_threshold=None if beyond is None else float(beyond),
            runner_up_exponent=float(data["runner_up_exponent"]),
            cohort_exponent=float(data["cohort_exponent"]),
            target_fpir=float(data["target_fpir"]),
            tie_ratio=float(data["tie_ratio"]),
            within_variance=None if data.get("within_variance") is None else float(data["within_variance"]),
            margin=None if data.get("margin") is None else Margin.from_dict(data["margin"]),
            review=None if data.get("review") is None else Review.from_dict(data["review"]),
            domain=None if data.get("domain") is None else DomainCheck.from_dict(data["domain"]),
            band_confidence=None
            if data.get("band_confidence") is None
            else (
                tuple(int(s) for s in data["band_confidence"]["from_sizes"]),
                tuple(ConfidenceCurve.from_dict(c) for c in data["band_confidence"]["curves"]),
            ),
        )
