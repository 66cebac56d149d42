"""Biometric rates and LFW pair lists, on numbers small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gallery.calibration.metrics import (
    best_accuracy_threshold,
    failure_rates,
    fnir_at_fpir,
    open_set_rates,
    pair_accuracy,
    rank_one,
    threshold_at_fpir,
)
from gallery.calibration.pairs import PairsFormatError, read_pairs


def test_threshold_at_fpir_lets_through_at_most_the_allowed_strangers() -> None:
    strangers = np.array([0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.0])
    threshold = threshold_at_fpir(strangers, 0.2)  # two of ten may pass: 0.9 and 0.8
    assert (strangers >= threshold).sum() == 2
    assert threshold_at_fpir(strangers, 0.05) > 0.9  # none may pass
    tied = np.array([0.5, 0.5, 0.5, 0.1])
    assert (tied >= threshold_at_fpir(tied, 0.5)).sum() == 0  # ties at the cut are refused together


def test_open_set_rates_count_a_wrong_identity_as_a_miss_not_a_false_positive() -> None:
    accepted = np.array([True, True, False, True, False])
    correct = np.array([True, False, True, False, False])
    mated = np.array([True, True, True, False, False])
    fpir, fnir = open_set_rates(accepted, correct, mated)
    assert fpir == pytest.approx(0.5)
    assert fnir == pytest.approx(2 / 3)


def test_fnir_at_fpir_is_zero_for_separable_scores() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    mated = np.array([True, True, True, False, False, False])
    point = fnir_at_fpir(scores, mated, mated, 0.0)
    assert point.fnir == 0.0 and point.fpir == 0.0


def test_rank_one_counts_mated_searches_only() -> None:
    assert rank_one(np.array([True, False, True, False]), np.array([True, True, False, False])) == 0.5


def test_failure_rates_follow_a_random_enrolment_photo() -> None:
    labels = np.array(["a", "a", "b", "b", "b", "b"])
    has_face = np.array([False, True, True, True, True, True])
    fte, fta = failure_rates(labels, has_face)
    assert fte == pytest.approx((1 / 2 + 0) / 2)
    assert fta == pytest.approx(1 / 6)


def test_best_accuracy_threshold_splits_the_two_kinds() -> None:
    distances = np.array([0.2, 0.3, 0.4, 0.7, 0.8])
    same = np.array([True, True, True, False, False])
    assert best_accuracy_threshold(distances, same) == pytest.approx(0.55)


def test_pair_accuracy_judges_each_fold_at_a_threshold_learned_on_the_others() -> None:
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 300)
    distances = np.where(same, rng.normal(0.4, 0.08, 600), rng.normal(0.8, 0.08, 600))
    result = pair_accuracy(distances, same)
    assert result.folds == 10 and result.pairs == 600
    assert 0.98 < result.accuracy <= 1.0
    assert all(0.5 < t < 0.7 for t in result.thresholds)
    folds = np.arange(600) // 60
    assert pair_accuracy(distances, same, folds).folds == 10


def test_read_pairs_reads_view_two_folds(tmp_path) -> None:
    text = "2\t1\nAnn\t1\t2\nBob\t1\tCarl\t3\nDee\t2\t4\nEve\t1\tFay\t1\n"
    (tmp_path / "pairs.txt").write_text(text)
    pairs = read_pairs(tmp_path / "pairs.txt")
    assert [(p.first, p.second, p.same, p.fold) for p in pairs] == [
        ("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", True, 0),
        ("Bob/Bob_0001.jpg", "Carl/Carl_0003.jpg", False, 0),
        ("Dee/Dee_0002.jpg", "Dee/Dee_0004.jpg", True, 1),
        ("Eve/Eve_0001.jpg", "Fay/Fay_0001.jpg", False, 1),
    ]


def test_read_pairs_without_a_header_has_no_folds(tmp_path) -> None:
    (tmp_path / "dev.txt").write_text("Ann\t1\t2\nBob\t1\tCarl\t3\n")
    assert [p.fold for p in read_pairs(tmp_path / "dev.txt")] == [None, None]
    (tmp_path / "count.txt").write_text("1\nAnn\t1\t2\n")
    assert [p.fold for p in read_pairs(tmp_path / "count.txt")] == [None]


def test_read_pairs_names_the_bad_line(tmp_path) -> None:
    (tmp_path / "bad.txt").write_text("Ann\t1\t2\nBob\tone\t2\n")
    with pytest.raises(PairsFormatError, match="pair 2"):
        read_pairs(tmp_path / "bad.txt")


def test_pair_report_skips_pairs_missing_a_face_and_scores_the_rest() -> None:
    from gallery.calibration.pairs import Pair, pair_report

    rng = np.random.default_rng(1)
    people = {name: rng.normal(size=8) for name in "ABCDEFGH"}
    photo = {f"{n}/{n}_{i:04d}.jpg": people[n] + rng.normal(size=8) * 0.05 for n in people for i in (1, 2)}
    pairs = [Pair(f"{n}/{n}_0001.jpg", f"{n}/{n}_0002.jpg", True, None) for n in people]
    others = zip("ABCDEFGH", "BCDEFGHA", strict=True)
    pairs += [Pair(f"{a}/{a}_0001.jpg", f"{b}/{b}_0001.jpg", False, None) for a, b in others]
    pairs.append(Pair("Nobody/Nobody_0001.jpg", "A/A_0001.jpg", False, None))
    report = pair_report(pairs, photo, threshold=1.0)
    assert report.pairs == 16 and report.no_face == 1 and report.missing_files == 0
    assert report.accuracy == 1.0 and report.accuracy_at == 1.0
