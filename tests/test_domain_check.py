"""The domain check: a gallery tells when its own people crowd closer together than the rule was learned on,
and then decides more strictly (every distance read at its scale, never looser).

Learning is tested on synthetic descriptors (``labelled_sets``): held-out people of the
calibration's population are flagged at about the check's 5%, and the same people drawn closer
together (as a greyscale or low-resolution camera draws faces) almost always. Through the
Gallery facade (``FakePipeline.give`` places each face) under the shipped rule, whose limits
were learned on LFW: ``info``, the enrolment answers, the desk's warning, identify's and the
lookalike check's decisions at the scale, and ``gallery eval``'s.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo
from labelled_sets import labelled_faces

from gallery import DomainStatus, Gallery
from gallery.calibration.domain import gallery_spreads, learn_domain_check, search_scales
from gallery.calibration.evaluate import apply_rule
from gallery.calibration.protocol import simulate
from gallery.cli import cli
from gallery.cli.context import CliContext
from gallery.decision import COHORT_SIZE, Evidence, default_rule, within_verify
from gallery.decision.domain import MEASURED_PEOPLE, DomainCheck, domain_scale, in_domain_units
from gallery.service.metrics import ServiceMetrics

DIMENSION = 128
SIZES = (1, 2, 3, 5, 8, 13, 20, 32, 50, 80, 128)


def _closer(embeddings: np.ndarray, factor: float) -> np.ndarray:
    """The same faces drawn ``factor`` closer together around their centre (everyone nearer everyone)."""
    centre = embeddings.mean(axis=0)
    return centre + (embeddings - centre) * factor


@pytest.fixture(scope="module")
def learned() -> DomainCheck:
    check = learn_domain_check(*labelled_faces(600, seed=1, dim=DIMENSION), SIZES, seed=0)
    assert check is not None
    return check


def test_the_limits_rise_with_size_and_stop_where_the_check_stops_measuring(learned: DomainCheck) -> None:
    assert learned.sizes == tuple(s for s in SIZES if 2 <= s <= MEASURED_PEOPLE)
    assert list(learned.limits) == sorted(learned.limits) and learned.limits[0] < learned.limits[-1]
    assert learned.limit(1) is None
    assert learned.limit(4) == learned.limits[learned.sizes.index(3)]  # the size at or below: fewer alarms
    assert learned.limit(10_000) == learned.limits[-1]


def test_held_out_people_of_the_same_kind_are_rarely_crowded_and_people_drawn_closer_almost_always(
    learned: DomainCheck,
) -> None:
    embeddings, labels = labelled_faces(600, seed=2, dim=DIMENSION)
    rng = np.random.default_rng(5)
    for size in (3, 8):
        same_kind = gallery_spreads(embeddings, labels, size, 400, rng)
        closer = gallery_spreads(_closer(embeddings, 0.85), labels, size, 400, rng)
        limit = learned.limit(size)
        # 5% expected; 400 galleries put a binomial 99.9% interval inside 1.5-10%.
        assert 0.01 <= np.mean(same_kind < limit) <= 0.12
        assert np.mean(closer < limit) >= (0.5 if size == 3 else 0.9)


def test_too_few_identities_learn_no_check() -> None:
    embeddings, labels = labelled_faces(1, seed=1, dim=DIMENSION)
    assert learn_domain_check(embeddings, labels, SIZES) is None


def _enrol(gallery: Gallery, pipeline: FakePipeline, faces: np.ndarray, tag: str) -> list[DomainStatus | None]:
    answers = []
    for i, face in enumerate(faces):
        photo = pipeline.give(fake_photo(f"domain/{tag}/{i}"), face)
        enrolment = gallery.enroll(f"{tag} {i}", photo, allow_similar=True)
        answers.append(enrolment.domain)
    return answers


@pytest.fixture(scope="module")
def people() -> np.ndarray:
    """One photo each of 12 synthetic people (spread like dlib's faces, wider than LFW's: not crowded)."""
    embeddings, labels = labelled_faces(12, seed=7, dim=DIMENSION)
    return np.stack([embeddings[np.nonzero(labels == label)[0][0]] for label in np.unique(labels)])


def test_info_says_nothing_of_one_person_and_measures_from_two(tmp_path: Path, people: np.ndarray) -> None:
    pipeline = FakePipeline()
    with Gallery(tmp_path / "home", pipeline=pipeline) as gallery:
        assert gallery.info().domain is None  # nobody
        (first,) = _enrol(gallery, pipeline, people[:1], "solo")
        assert first is None and gallery.info().domain is None
        second = gallery.enroll("solo 1", pipeline.give(fake_photo("domain/solo/b"), people[1]), allow_similar=True)
        status = gallery.info().domain
        assert status is not None and second.domain == status
        assert status.measured == 2 and status.spread == pytest.approx(np.linalg.norm(people[0] - people[1]), abs=1e-5)
        assert status.limit == default_rule().domain.limit(2) and not status.crowded


def test_a_gallery_of_faces_drawn_closer_is_crowded_and_the_desk_is_warned(tmp_path: Path, people: np.ndarray) -> None:
    pipeline = FakePipeline()
    crowded = _closer(people, 0.55)
    with Gallery(tmp_path / "apart", pipeline=pipeline) as gallery:
        statuses = _enrol(gallery, pipeline, people[:8], "apart")
        assert statuses[-1] is not None and not statuses[-1].crowded and statuses[-1].scale == 1.0
        gallery.identify(pipeline.give(fake_photo("domain/apart/probe"), people[8]))
        (logged,) = gallery.audit_log(action="identify", limit=1)
        assert "scale" not in logged.detail
    with Gallery(tmp_path / "home", pipeline=pipeline) as gallery:
        statuses = _enrol(gallery, pipeline, crowded[:8], "close")
        last = statuses[-1]
        assert last is not None and last.crowded and last.spread < last.limit == default_rule().domain.limit(8)
        assert gallery.info().domain == last == gallery.domain_status()
        assert gallery.info().to_dict()["domain"]["crowded"] is True
        metrics = ServiceMetrics()
        metrics.saw_domain(gallery.domain_status())
        exposed = metrics.exposition().decode()
        assert "gallery_domain_crowded 1.0" in exposed and f"gallery_domain_scale {last.scale!r}" in exposed
        metrics.saw_domain(None)  # one person, or a rule without a check: nothing to say
        assert "gallery_domain_crowded 0.0" in metrics.exposition().decode()
    photo = tmp_path / "ninth.png"
    photo.write_bytes(pipeline.give(fake_photo("domain/ninth"), crowded[8]))
    runner = CliRunner()
    base = ["--home", str(tmp_path / "home")]
    enrolled = runner.invoke(
        cli, [*base, "enroll", "--json", "--allow-similar", "ninth", str(photo)], obj=_context(pipeline)
    )
    assert enrolled.exit_code == 0, enrolled.output
    assert json.loads(enrolled.stdout)["domain"]["crowded"] is True
    assert "warning: domain: CROWDED" in enrolled.stderr and "gallery calibrate" in enrolled.stderr
    shown = runner.invoke(cli, [*base, "info"], obj=_context(pipeline))
    assert shown.exit_code == 0 and "domain: CROWDED" in shown.stdout


def test_a_folder_enrolment_says_it_once_at_the_end(tmp_path: Path, people: np.ndarray) -> None:
    pipeline = FakePipeline()
    folder = tmp_path / "staff"
    folder.mkdir()
    for i, face in enumerate(_closer(people, 0.55)[:8]):
        (folder / f"person {i}.png").write_bytes(pipeline.give(fake_photo(f"domain/folder/{i}"), face))
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "home"), "enroll-dir", "--allow-similar", str(folder)], obj=_context(pipeline)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("warning: domain: CROWDED") == 1
    with Gallery(tmp_path / "home", pipeline=pipeline) as gallery:
        report = gallery.enroll_dir(folder)  # every photo enrolled already: skipped, the check still said
        assert len(report.skipped) == 8 and report.domain is not None and report.domain.crowded
        assert all(e.domain is None for e in report.enrolled)


def _context(pipeline: FakePipeline) -> CliContext:
    return CliContext(pipeline=pipeline)


def test_calibrating_on_the_sites_own_photos_learns_its_spread(tmp_path: Path, people: np.ndarray) -> None:
    pipeline = FakePipeline()
    embeddings, labels = labelled_faces(150, seed=1, dim=DIMENSION)
    site = _closer(embeddings, 0.55)  # the site's camera draws everyone closer, its own people included
    for i, (face, label) in enumerate(zip(site, labels, strict=True)):
        person = tmp_path / "labelled" / f"person-{label}"
        person.mkdir(parents=True, exist_ok=True)
        (person / f"{i}.png").write_bytes(pipeline.give(fake_photo(f"domain/site/{i}"), face))
    staff = _closer(people, 0.55)[:8]
    with Gallery(tmp_path / "home", pipeline=pipeline) as gallery:
        assert _enrol(gallery, pipeline, staff, "staff")[-1].crowded  # the shipped rule's LFW limits
        learned = gallery.calibrate(tmp_path / "labelled", target_fpir=0.05, target_fmr=0.01)
        check = learned.identify.rule.domain
        assert check is not None and check.limit(8) < default_rule().domain.limit(8)
        status = gallery.info().domain
        assert status is not None and status.limit == check.limit(8) and not status.crowded


def test_the_scale_only_ever_makes_a_match_harder_and_a_few_pairs_say_little() -> None:
    assert domain_scale(0.9, 8, 0.8) == 1.0  # spread above the reference: never looser
    many, few = domain_scale(0.6, 50, 0.8), domain_scale(0.6, 3, 0.8)
    assert many > few > 1.0
    assert many == pytest.approx(0.8 / ((1225 * 0.6 + 10 * 0.8) / 1235))


def _decide(rule, enrolled: np.ndarray, probe: np.ndarray, scale: float, verify: float):
    """The rule's decision on one-photo-per-person ``enrolled``, by brute force, distances read at ``scale``."""
    distances = np.linalg.norm(enrolled - probe, axis=1)
    between = np.linalg.norm(enrolled[:, None] - enrolled[None], axis=2)
    np.fill_diagonal(between, np.inf)
    cohort = np.sort(between, axis=1)[:, :COHORT_SIZE].mean(axis=1)
    order = np.argsort(distances)[:5]
    evidence = [Evidence(int(i), float(distances[i]), float(cohort[i]) if r < 2 else None) for r, i in enumerate(order)]
    decision = rule.decide(in_domain_units(evidence, scale), len(enrolled))
    if decision.index is not None:
        decision = within_verify(decision, evidence[decision.index].distance, verify)
    return decision


def test_a_crowded_gallery_matches_only_what_the_rule_accepts_at_its_scale(tmp_path: Path, people: np.ndarray) -> None:
    pipeline = FakePipeline()
    crowded = _closer(people, 0.55)[:8].astype(np.float32)
    with Gallery(tmp_path / "home", pipeline=pipeline) as gallery:
        _enrol(gallery, pipeline, crowded, "close")
        status = gallery.info().domain
        assert status is not None and status.crowded and status.scale > 1.0
        rule, verify = gallery.rule(), gallery.verify_threshold()
        enrolled = crowded.astype(np.float64)
        rng = np.random.default_rng(3)
        flipped, newcomer = 0, None
        for i in range(80):
            direction = rng.normal(size=DIMENSION)
            probe = (enrolled[i % 8] + direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.6)).astype(np.float32)
            (face,) = gallery.identify(pipeline.give(fake_photo(f"domain/probe/{i}"), probe))
            scaled = _decide(rule, enrolled, probe.astype(np.float64), status.scale, verify)
            plain = _decide(rule, enrolled, probe.astype(np.float64), 1.0, verify)
            assert face.outcome == scaled.outcome and face.confidence == pytest.approx(scaled.confidence, abs=1e-6)
            assert not (plain.outcome != "match" and scaled.outcome == "match")  # never looser
            flipped += plain.outcome != scaled.outcome
            if plain.outcome == "match" and scaled.outcome != "match":
                newcomer = probe
        assert flipped > 0 and newcomer is not None  # the scale decided some of them
        (logged,) = gallery.audit_log(action="identify", limit=1)
        assert logged.detail["scale"] == pytest.approx(status.scale)  # the audit can replay the decision
        # The lookalike check asks identify's question, at the same scale: not refused as someone else.
        enrolment = gallery.enroll("newcomer", pipeline.give(fake_photo("domain/newcomer"), newcomer))
        assert enrolment.new_person


def test_eval_reads_crowded_galleries_as_identify_does() -> None:
    embeddings, labels = labelled_faces(300, seed=4, dim=DIMENSION)
    searches = simulate(_closer(embeddings, 0.55), labels, trials=4, gallery_size=8, seed=1)
    rule = default_rule()
    assert (search_scales(rule, searches.spread, searches.gallery_size) > 1.0).all()  # every gallery crowded
    unmeasured = dataclasses.replace(searches, spread=np.full(len(searches), np.nan))  # as if never checked
    _, scaled = apply_rule(rule, searches, verify_threshold=0.533)
    _, plain = apply_rule(rule, unmeasured, verify_threshold=0.533)
    assert set(np.nonzero(scaled >= 0)[0]) < set(np.nonzero(plain >= 0)[0])  # fewer matches, none new
