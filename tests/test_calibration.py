"""The learned decision rule: simulation, calibration to a target FPIR, gallery size, confidence, ambiguity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from labelled_sets import labelled_faces

from gallery.calibration.confidence import fit_confidence
from gallery.calibration.evaluate import apply_rule, evaluate, evidence_for
from gallery.calibration.fit import REVIEW_FPIR, CalibrationError, calibrate, calibrate_verify
from gallery.calibration.metrics import fnir_at_fpir, open_set_rates
from gallery.calibration.protocol import simulate, split_identities
from gallery.decision import (
    DistanceThreshold,
    Evidence,
    NormalisedDistance,
    RuleRecord,
    VerifyRecord,
    cohort_distance,
    cohort_from_searches,
    default_rule,
    default_rule_record,
    default_verify_threshold,
    rule_from_dict,
)

TARGET = 0.05  # a coarse target keeps the labelled sets small and the tests fast


@pytest.fixture(scope="module")
def calibrated() -> NormalisedDistance:
    embeddings, labels = labelled_faces(400, seed=1)
    return calibrate(embeddings, labels, target_fpir=TARGET).rule


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    return labelled_faces(400, seed=2)


def stranger_rate(rule: NormalisedDistance, embeddings: np.ndarray, labels: np.ndarray, size: int) -> float:
    searches = simulate(embeddings, labels, trials=max(4, 1200 // size), gallery_size=size, seed=size)
    return open_set_rates(
        rule.accepts(searches.distances, searches.cohort, searches.gallery_size), searches.correct, searches.mated
    )[0]


# ---- the simulation ---------------------------------------------------------------------


def test_split_identities_gives_disjoint_halves_covering_every_photo() -> None:
    _, labels = labelled_faces(100, seed=3)
    first, second = split_identities(labels, seed=0)
    assert (first ^ second).all()
    assert not set(labels[first]) & set(labels[second])
    assert abs(len(set(labels[first])) - 50) <= 1


def test_simulation_enrols_one_photo_per_identity_and_labels_strangers() -> None:
    embeddings, labels = labelled_faces(60, seed=3)
    searches = simulate(embeddings, labels, trials=1, seed=5)
    assert len(searches) == len(labels) - 30  # 30 identities enrolled, one photo each
    codes = np.unique(labels, return_inverse=True)[1]
    enrolled = set(searches.identities[:, 0]) | set(searches.identities[:, 1])
    assert all((truth in enrolled) == mated for truth, mated in zip(searches.truth, searches.mated, strict=True))
    assert (np.diff(searches.distances, axis=1) >= 0).all()  # nearest first
    assert all(len(set(row)) == len(row) for row in searches.identities)  # each identity once
    assert set(searches.truth) <= set(codes)
    assert (searches.gallery_size == 30).all()


def test_simulation_is_reproducible_from_its_seed() -> None:
    embeddings, labels = labelled_faces(60, seed=3)
    one, two = simulate(embeddings, labels, seed=9), simulate(embeddings, labels, seed=9)
    assert np.array_equal(one.distances, two.distances) and np.array_equal(one.truth, two.truth)


def test_cohort_from_searches_takes_each_other_person_at_their_nearest_face() -> None:
    # Person 7 has two faces; each face's search finds 7 itself and some others.
    hits = [[(7, 0.0), (1, 0.5), (2, 0.9)], [(7, 0.0), (2, 0.6), (3, 0.7)]]
    assert cohort_from_searches(7, hits, size=2) == pytest.approx((0.5 + 0.6) / 2)
    assert np.isnan(cohort_from_searches(7, [[(7, 0.0)]]))


def test_cohort_distance_is_the_mean_of_the_nearest_others() -> None:
    assert cohort_distance(np.array([0.9, 0.5, 0.7]), size=2) == pytest.approx(0.6)
    assert cohort_distance(np.array([0.8]), size=10) == pytest.approx(0.8)
    assert np.isnan(cohort_distance(np.array([])))


# ---- calibration ------------------------------------------------------------------------


def test_calibrated_rule_meets_its_target_on_held_out_people(calibrated, held_out) -> None:
    fpir = stranger_rate(calibrated, *held_out, size=200)
    assert TARGET / 2 <= fpir <= TARGET * 1.6


def test_enrolling_more_people_keeps_the_stranger_acceptance_near_target(calibrated, held_out) -> None:
    embeddings, labels = held_out
    rates = {size: stranger_rate(calibrated, embeddings, labels, size) for size in (3, 12, 50, 200)}
    assert all(TARGET / 2.5 <= rate <= TARGET * 2 for rate in rates.values()), rates
    # Whereas one distance threshold, right for three people, lets ever more strangers in as the gallery grows.
    small = simulate(embeddings, labels, trials=400, gallery_size=3, seed=1)
    distance = -fnir_at_fpir(-small.distances[:, 0], small.correct, small.mated, TARGET).threshold
    large = simulate(embeddings, labels, trials=6, gallery_size=200, seed=1)
    assert open_set_rates(large.distances[:, 0] <= distance, large.correct, large.mated)[0] > 4 * TARGET


def test_normalised_rule_misses_fewer_people_than_the_best_distance_threshold(calibrated, held_out) -> None:
    searches = simulate(*held_out, trials=6, gallery_size=200, seed=4)
    fpir, fnir = open_set_rates(
        calibrated.accepts(searches.distances, searches.cohort, searches.gallery_size), searches.correct, searches.mated
    )
    best_distance = fnir_at_fpir(-searches.distances[:, 0], searches.correct, searches.mated, fpir)
    assert fnir < 0.8 * best_distance.fnir


def test_the_review_table_loosens_every_threshold_to_about_its_higher_stranger_rate(calibrated, held_out) -> None:
    review = calibrated.for_review()
    assert review is not None and calibrated.review is not None and calibrated.review.fpir == REVIEW_FPIR
    assert review.strengths == calibrated.strengths and review.sizes == calibrated.sizes
    assert all(r > t for r, t in zip(calibrated.review.thresholds, calibrated.thresholds, strict=True))
    assert calibrated.review.beyond_threshold is not None and calibrated.beyond_threshold is not None
    assert calibrated.review.beyond_threshold > calibrated.beyond_threshold
    rates = {size: stranger_rate(review, *held_out, size=size) for size in (3, 50)}
    assert all(REVIEW_FPIR / 2 <= rate <= REVIEW_FPIR * 1.5 for rate in rates.values()), rates


def test_a_rule_for_a_target_at_or_above_the_review_rate_has_no_review_table() -> None:
    embeddings, labels = labelled_faces(120, seed=4)
    rule = calibrate(embeddings, labels, target_fpir=REVIEW_FPIR).rule
    assert rule.review is None and rule.for_review() is None
    assert "review" not in rule.to_dict()


def test_stored_rule_decides_like_the_rule_that_was_learned(calibrated, held_out) -> None:
    stored = rule_from_dict(json.loads(json.dumps(calibrated.to_dict())))
    assert stored == calibrated
    searches = simulate(*held_out, trials=1, gallery_size=100, seed=6)
    outcomes, matched = apply_rule(stored, searches)
    accepted = calibrated.accepts(searches.distances, searches.cohort, searches.gallery_size)
    assert np.array_equal(outcomes == "match", accepted)
    assert np.array_equal(
        outcomes == "ambiguous", calibrated.ambiguous(searches.distances, searches.cohort, searches.gallery_size)
    )
    assert np.array_equal(matched[accepted], searches.identities[accepted, 0])


def test_evaluate_reports_rates_of_the_rule_in_force(calibrated, held_out) -> None:
    embeddings, labels = held_out
    report = evaluate(embeddings, labels, calibrated, failures=[labels[0]], trials=2)
    assert 0.0 <= report.fpir <= 3 * TARGET and 0.0 < report.fnir < 1.0
    assert 0.0 < report.rank_one <= 1.0
    assert report.fta == pytest.approx(1 / (len(labels) + 1))
    assert report.fte > 0.0
    assert [t.target_fpir for t in report.targets] == [0.01, 0.003]
    assert all(t.normalised_fnir <= t.distance_fnir for t in report.targets)
    assert all(t.rule_fnir < t.distance_fnir for t in report.targets)  # the learned rule beats a plain distance
    json.dumps(report.to_dict())


def test_evaluate_scores_a_distance_rule_in_force_as_the_best_distance_threshold(held_out) -> None:
    report = evaluate(*held_out, rule_from_dict({"kind": "distance_threshold", "threshold": 0.6}), trials=2)
    assert [t.rule_fnir for t in report.targets] == [t.distance_fnir for t in report.targets]


def test_calibration_refuses_too_few_photos_for_the_target() -> None:
    embeddings, labels = labelled_faces(30, seed=3)
    with pytest.raises(CalibrationError, match="stranger photos"):
        calibrate(embeddings, labels, target_fpir=0.001)


def test_verify_threshold_meets_its_false_match_rate(held_out) -> None:
    embeddings, labels = held_out
    verify = calibrate_verify(embeddings, labels, target_fmr=0.01)
    assert verify.fmr <= 0.01 and verify.fmr > 0.005
    assert 0.0 <= verify.fnmr < 0.5
    assert verify.genuine_pairs > 0 and verify.impostor_pairs > 10_000


# ---- one decision -----------------------------------------------------------------------


def evidence(*rows: tuple[float, float]) -> list[Evidence]:
    return [Evidence(person_id=i + 1, distance=d, cohort_distance=c) for i, (d, c) in enumerate(rows)]


def test_a_close_face_with_no_rival_is_a_match(calibrated) -> None:
    decision = calibrated.decide(evidence((0.2, 0.9), (0.95, 0.9), (1.0, 0.9)), gallery_size=50)
    assert decision.outcome == "match" and decision.index == 0
    assert decision.confidence > 0.9


def test_a_far_face_is_unknown(calibrated) -> None:
    decision = calibrated.decide(evidence((0.9, 0.9), (0.95, 0.9), (1.0, 0.9)), gallery_size=50)
    assert decision.outcome == "unknown" and decision.index is None
    assert decision.confidence > 0.5


def test_two_people_nearly_equally_close_is_ambiguous(calibrated) -> None:
    assert calibrated.tie_ratio < 0.999
    decision = calibrated.decide(evidence((0.2, 0.9), (0.2002, 0.9), (1.0, 0.9)), gallery_size=50)
    assert decision.outcome == "ambiguous" and decision.index is None
    # Either one alone would have matched.
    assert calibrated.decide(evidence((0.2, 0.9), (1.0, 0.9)), gallery_size=49).outcome == "match"


def test_evidence_order_does_not_matter(calibrated) -> None:
    rows = evidence((0.95, 0.9), (0.2, 0.9), (1.0, 0.9))
    decision = calibrated.decide(rows, gallery_size=50)
    assert decision.outcome == "match" and rows[decision.index].person_id == 2


def test_confidence_falls_as_the_distance_grows(calibrated) -> None:
    matched, unknown = [], []
    for distance in np.linspace(0.0, 1.0, 101):
        decision = calibrated.decide(evidence((float(distance), 0.9), (1.0, 0.9), (1.05, 0.9)), gallery_size=50)
        (matched if decision.outcome == "match" else unknown).append(decision.confidence)
        assert 0.0 <= decision.confidence <= 1.0
    assert matched and unknown
    assert np.all(np.diff(matched) <= 0)  # P(the match is right) never rises with distance
    assert np.all(np.diff(unknown) >= 0)  # P(a stranger) never falls


def test_a_gallery_of_one_still_decides(calibrated) -> None:
    assert calibrated.decide(evidence((0.1, None)), gallery_size=1).outcome == "match"
    assert calibrated.decide(evidence((1.2, None)), gallery_size=1).outcome == "unknown"
    assert calibrated.decide([], gallery_size=0).outcome == "unknown"


def test_table_is_log_linear_between_sizes_and_fully_normalised_beyond(calibrated) -> None:
    rule = NormalisedDistance(
        sizes=(10, 1000),
        thresholds=(0.8, 0.6),
        strengths=(0.0, 0.5),
        reference=1.0,
        confidence=calibrated.confidence,
        beyond_threshold=0.5,
    )
    strength, threshold = rule.setting(np.array([1, 100, 1000, 10**6]))
    assert np.allclose(strength, [0.0, 0.25, 0.5, 1.0])
    assert np.allclose(threshold, [0.8, 0.7, 0.6, 0.5])


def test_learned_strength_grows_with_the_gallery(calibrated) -> None:
    assert list(calibrated.strengths) == sorted(calibrated.strengths)
    assert calibrated.strengths[-1] > calibrated.strengths[0]
    assert calibrated.beyond_threshold is not None


def test_evidence_for_a_search_is_what_the_facade_supplies(held_out) -> None:
    searches = simulate(*held_out, trials=1, gallery_size=2, seed=2)
    rows = evidence_for(searches, 0)
    assert len(rows) == 2 and rows[0].distance <= rows[1].distance
    assert all(r.cohort_distance is not None for r in rows)


# ---- confidence -------------------------------------------------------------------------


def test_confidence_curve_is_monotone_and_calibrated_on_a_known_mixture() -> None:
    rng = np.random.default_rng(0)
    mated = rng.random(20_000) < 0.3
    margins = np.where(mated, rng.normal(-1.0, 0.5, mated.size), rng.normal(1.0, 0.5, mated.size))
    curve = fit_confidence(margins, mated, mated)
    grid = np.linspace(-3, 3, 61)
    assert np.all(np.diff(curve(grid)) <= 0)
    # Equal priors: the true posterior at 0 is 1/2, far out it is near 0 or 1.
    assert curve(0.0) == pytest.approx(0.5, abs=0.06)
    assert curve(-2.5) > 0.98 and curve(2.5) < 0.02


# ---- the shipped default -----------------------------------------------------------------


def test_the_shipped_default_rule_loads_and_decides() -> None:
    rule = default_rule()
    record = default_rule_record()
    assert rule.kind == "normalised_distance" and rule.sizes[0] == 1
    assert record.identify.provenance.fpir <= rule.target_fpir == 0.01
    assert list(rule.strengths) == sorted(rule.strengths)
    assert rule_from_dict(record.identify.rule.to_dict()) == rule
    # Learned with the clustered margin (CLUSTERED_MARGIN): 99% on n / (2 x each size's design effect).
    assert rule.margin is not None and rule.margin.confidence == 0.99 and max(rule.margin.fpir_bounds) <= 0.01
    assert rule.margin.sample_divisors is not None and len(rule.margin.sample_divisors) == len(rule.sizes)
    assert min(rule.margin.sample_divisors) < 10.0 < max(rule.margin.sample_divisors)  # no floor: by clustering
    assert rule.decide(evidence((0.3, 0.8), (0.9, 0.8), (0.95, 0.8)), gallery_size=100).outcome == "match"
    assert rule.decide(evidence((0.7, 0.8), (0.9, 0.8), (0.95, 0.8)), gallery_size=100).outcome == "unknown"
    assert 0.4 < default_verify_threshold() < 0.7


# ---- stored records ------------------------------------------------------------------------

# The provenance ``calibrate`` has written since it counted photos once (key order included).
CALIBRATED_PROVENANCE = {
    "source": "calibrated",
    "folder": "/photos",
    "photos": 240,
    "failures_to_acquire": 2,
    "unreadable": 0,
    "identities": 60,
    "model": "dlib_resnet_v1+flip",
    "date": "2026-11-22T08:00:00+00:00",
    "target_fpir": 0.01,
    "gallery_size": 30,
    "fpir": 0.009,
    "fnir": 0.2,
    "distance_threshold_fnir": 0.4,
    "mated_searches": 900,
    "stranger_searches": 20000,
}


def test_a_stored_rule_record_reads_into_types_and_writes_back_the_same_json() -> None:
    stored = {"rule": default_rule().to_dict(), "provenance": CALIBRATED_PROVENANCE}
    record = RuleRecord.from_dict(json.loads(json.dumps(stored)))
    assert record.rule == default_rule() and record.provenance.gallery_size == 30
    assert record.provenance.dataset is None and record.provenance.extra == {}
    assert json.dumps(record.to_dict()) == json.dumps(stored)
    verify = {
        "threshold": 0.55,
        "provenance": {
            "source": "shipped default",
            "dataset": "LFW",
            "model": "m",
            **{"target_fmr": 0.001, "fmr": 0.001, "fnmr": 0.06, "genuine_pairs": 3, "impostor_pairs": 4000},
        },
    }
    assert json.dumps(VerifyRecord.from_dict(verify).to_dict()) == json.dumps(verify)


def test_a_record_of_an_earlier_version_keeps_the_keys_this_version_does_not_know() -> None:
    older = {**CALIBRATED_PROVENANCE, "photos_with_face": 240}  # as the first calibrate wrote it
    stored = {"rule": DistanceThreshold(0.55).to_dict(), "provenance": older}
    record = RuleRecord.from_dict(stored)
    assert record.rule == DistanceThreshold(0.55)
    assert record.provenance.extra == {"photos_with_face": 240}
    assert record.to_dict() == stored
