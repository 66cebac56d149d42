"""The Gallery API with the real models: enrol from one photo, identify in others."""

from __future__ import annotations

import io
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from gallery import (
    AlreadyEnrolled,
    ExternalIdMismatch,
    Gallery,
    IdentifiedFace,
    ImageNotFound,
    ImageTooLarge,
    ImageUnreadable,
    LooksLikeSomeoneElse,
    MultiFrameImage,
    MultipleFaces,
    NoFaceFound,
    PersonNotFound,
    PhotoAlreadyEnrolled,
    PoorQuality,
)
from gallery.store import INDEX_FILE

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "gallery"


@pytest.fixture
def enrolled(home: Path):
    """A gallery holding Barack Obama and Joe Biden, one photo each."""
    with Gallery(home) as g:
        g.enroll("Barack Obama", DATA / "obama.jpg")
        g.enroll("Joe Biden", DATA / "biden.jpg")
        yield g


def _names(results) -> list[str | None]:
    return [r.match.name if r.match else None for r in results]


def test_enrolled_person_is_identified_in_a_different_photo(enrolled: Gallery):
    (result,) = enrolled.identify(DATA / "obama2.jpg")
    assert result.outcome == "match"
    assert result.match is not None and result.match.name == "Barack Obama"
    assert result.candidates[0] == result.match
    assert result.match.distance < 0.6
    assert [c.distance for c in result.candidates] == sorted(c.distance for c in result.candidates)


def test_a_stranger_comes_back_unknown(enrolled: Gallery):
    (result,) = enrolled.identify(DATA / "grace_hopper.jpg")
    assert result.match is None
    assert result.outcome == "unknown"
    assert {c.name for c in result.candidates} == {"Barack Obama", "Joe Biden"}


def test_two_people_in_one_photo_are_both_identified_largest_first(enrolled: Gallery):
    results = enrolled.identify(DATA / "two_people.jpg")
    assert sorted(_names(results)) == ["Barack Obama", "Joe Biden"]
    areas = [(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) for r in results]
    assert areas == sorted(areas, reverse=True)
    left_face = min(results, key=lambda r: r.box[0])
    assert left_face.match.name == "Joe Biden"  # biden is the left tile


def test_a_photo_without_faces_identifies_nobody(enrolled: Gallery):
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert enrolled.identify(blank) == []


def test_add_stores_another_photo_of_the_same_person(enrolled: Gallery):
    with pytest.raises(AlreadyEnrolled):
        enrolled.enroll("Barack Obama", DATA / "obama3.jpg")
    added = enrolled.enroll("Barack Obama", DATA / "obama3.jpg", add=True)
    assert not added.new_person
    obama = next(p for p in enrolled.people() if p.name == "Barack Obama")
    assert obama.face_count == 2
    with pytest.raises(PersonNotFound):
        enrolled.enroll("Nobody Yet", DATA / "obama3.jpg", add=True)


def test_a_photo_enrolled_already_is_refused_naming_whose_it_is(enrolled: Gallery):
    for again in (
        lambda: enrolled.enroll("Barack Obama", DATA / "obama.jpg", add=True),  # the same file, added once more
        lambda: enrolled.enroll("Barack Obama", (DATA / "obama.jpg").read_bytes(), add=True),  # its bytes
        lambda: enrolled.enroll("Not Obama", DATA / "obama.jpg", allow_similar=True),  # one photo, two people
        lambda: enrolled.enroll("Joe Biden", DATA / "obama.jpg", add=True, allow_similar=True),
    ):
        with pytest.raises(PhotoAlreadyEnrolled, match=r"this photo \(the same file\) is enrolled already") as refused:
            again()
        assert refused.value.holder == "Barack Obama"
    assert [(p.name, p.face_count) for p in enrolled.people()] == [("Barack Obama", 1), ("Joe Biden", 1)]


def test_add_keeps_the_external_id_and_refuses_another(home: Path):
    with Gallery(home) as g:
        g.enroll("Barack Obama", DATA / "obama.jpg", external_id="E1")
        with pytest.raises(ExternalIdMismatch, match="'Barack Obama' carries external id 'E1', not 'E9'"):
            g.enroll("Barack Obama", DATA / "obama2.jpg", add=True, external_id="E9")
        g.enroll("Barack Obama", DATA / "obama2.jpg", add=True, external_id="E1")  # the same id: fine
        g.enroll("Barack Obama", DATA / "obama3.jpg", add=True)  # none given: fine
        g.enroll("Joe Biden", DATA / "biden.jpg")
        with pytest.raises(ExternalIdMismatch, match="'Joe Biden' carries no external id, not 'E2'"):
            g.enroll("Joe Biden", DATA / "obama3.jpg", add=True, external_id="E2")
        assert [(p.name, p.external_id, p.face_count) for p in g.people()] == [
            ("Barack Obama", "E1", 3),
            ("Joe Biden", None, 1),
        ]


def test_a_face_matching_someone_else_is_refused_unless_allowed(enrolled: Gallery):
    with pytest.raises(LooksLikeSomeoneElse) as refused:
        enrolled.enroll("Not Obama", DATA / "obama2.jpg")
    assert refused.value.other == "Barack Obama"
    assert "Not Obama" not in {p.name for p in enrolled.people()}
    enrolled.enroll("Not Obama", DATA / "obama2.jpg", allow_similar=True)
    assert "Not Obama" in {p.name for p in enrolled.people()}


def test_enrolment_needs_exactly_one_face_unless_largest(home: Path):
    with Gallery(home) as g:
        with pytest.raises(MultipleFaces, match="2 faces"):
            g.enroll("Two People", DATA / "two_people.jpg")
        assert g.people() == []
        result = g.enroll("Largest Face", DATA / "two_people.jpg", largest=True)
        assert result.new_person


def test_a_face_too_small_to_enrol_is_refused_with_the_reason(home: Path):
    small = Image.open(DATA / "obama.jpg").resize((160, 200))  # a face of about 45 px
    with Gallery(home) as g:
        with pytest.raises(PoorQuality, match="px across"):
            g.enroll("Tiny Obama", small)
        assert g.people() == []


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda im: ImageEnhance.Brightness(im).enhance(0.2), "too dark"),
        (lambda im: im.filter(ImageFilter.GaussianBlur(4)), "blurred"),
    ],
)
def test_a_dark_or_blurred_face_is_refused_with_the_reason(home: Path, spoil, reason: str):
    with Gallery(home) as g:
        with pytest.raises(PoorQuality, match=reason):
            g.enroll("Spoilt Obama", spoil(Image.open(DATA / "obama.jpg")))
        assert g.people() == []


def test_remove_then_identify_gives_unknown(enrolled: Gallery):
    removal = enrolled.remove("Barack Obama")
    assert removal.faces_removed == 1
    (result,) = enrolled.identify(DATA / "obama2.jpg")
    assert result.match is None
    assert [c.name for c in result.candidates] == ["Joe Biden"]
    with pytest.raises(PersonNotFound):
        enrolled.remove("Barack Obama")


def test_reopening_a_gallery_gives_the_same_answers(enrolled: Gallery, home: Path):
    before = enrolled.identify(DATA / "two_people.jpg")
    enrolled.close()
    with Gallery(home) as again:
        assert again.identify(DATA / "two_people.jpg") == before


def test_a_deleted_index_file_is_rebuilt_on_reopen(enrolled: Gallery, home: Path):
    before = enrolled.identify(DATA / "obama2.jpg")
    enrolled.close()
    (home / INDEX_FILE).unlink()
    with Gallery(home) as again:
        assert again.identify(DATA / "obama2.jpg") == before
    assert (home / INDEX_FILE).is_file()


def test_verify_accepts_the_person_and_rejects_someone_else(enrolled: Gallery):
    assert enrolled.verify("Barack Obama", DATA / "obama2.jpg").verified
    rejected = enrolled.verify("Joe Biden", DATA / "obama2.jpg")
    assert not rejected.verified and rejected.distance > rejected.threshold
    with pytest.raises(PersonNotFound):
        enrolled.verify("Nobody", DATA / "obama2.jpg")
    with pytest.raises(NoFaceFound):
        enrolled.verify("Barack Obama", np.zeros((100, 100, 3), np.uint8))


def _snapshot(home: Path) -> tuple[list[str], bytes]:
    """Everything the gallery stores: a logical dump of the database, and the index file."""
    with sqlite3.connect(home / "gallery.db") as db:
        rows = [line for line in db.iterdump() if "audit_log" not in line]
    return rows, (home / INDEX_FILE).read_bytes()


def _bad_inputs(tmp: Path) -> dict[str, object]:
    text = tmp / "notes.jpg"
    text.write_text("this is not a photo")
    jpeg = (DATA / "obama.jpg").read_bytes()
    frames = [Image.open(DATA / "obama.jpg"), Image.open(DATA / "biden.jpg").resize((480, 600))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    bomb = io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, format="PNG")  # 81 MP of black: a few KB on disk
    return {
        "missing file": tmp / "missing.jpg",
        "directory": tmp,
        "text file named .jpg": text,
        "truncated JPEG": jpeg[: len(jpeg) // 3],
        "empty bytes": b"",
        "animated GIF": gif.getvalue(),
        "decompression bomb": bomb.getvalue(),
        "no face": np.full((300, 300, 3), 90, np.uint8),
    }


EXPECTED_ERRORS = {
    "missing file": ImageNotFound,
    "directory": ImageNotFound,
    "text file named .jpg": ImageUnreadable,
    "truncated JPEG": ImageUnreadable,
    "empty bytes": ImageUnreadable,
    "animated GIF": MultiFrameImage,
    "decompression bomb": ImageTooLarge,
    "no face": NoFaceFound,
}


def test_every_bad_input_gets_a_typed_error_and_changes_nothing(enrolled: Gallery, home: Path, tmp_path: Path):
    before = _snapshot(home)
    for kind, bad in _bad_inputs(tmp_path).items():
        with pytest.raises(EXPECTED_ERRORS[kind]):
            enrolled.enroll(f"Person from {kind}", bad)
        with pytest.raises(EXPECTED_ERRORS[kind]):
            enrolled.enroll("Barack Obama", bad, add=True)
        assert _snapshot(home) == before, kind


def _assert_same_answer(got: list[IdentifiedFace], expected: list[IdentifiedFace]) -> None:
    """The same faces, candidates and decisions; distances and confidence equal up to float rounding.

    Concurrent calls share the torch threads, and at another thread count the convolutions
    sum in another order (distances move by ~1e-8).
    """
    assert [(f.box, f.outcome, f.match and f.match.person_id, f.rule) for f in got] == [
        (f.box, f.outcome, f.match and f.match.person_id, f.rule) for f in expected
    ]
    for face, alone in zip(got, expected, strict=True):
        assert [(c.name, c.person_id) for c in face.candidates] == [(c.name, c.person_id) for c in alone.candidates]
        assert [c.distance for c in face.candidates] == pytest.approx([c.distance for c in alone.candidates], abs=1e-6)
        assert face.confidence == pytest.approx(alone.confidence, abs=1e-6)


def test_concurrent_identify_from_8_threads_matches_serial_calls(enrolled: Gallery):
    photos = [DATA / n for n in ("obama2.jpg", "two_people.jpg", "grace_hopper.jpg", "obama3.jpg")] * 4
    serial = [enrolled.identify(p) for p in photos]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(enrolled.identify, photos))
    for got, expected in zip(concurrent, serial, strict=True):
        _assert_same_answer(got, expected)
    assert [len(faces) for faces in serial] == [1, 2, 1, 1] * 4  # the faces were found, not skipped


def test_every_identify_is_audited_without_biometrics_once_the_gallery_closes(enrolled: Gallery, home: Path):
    for _ in range(12):
        enrolled.identify(DATA / "obama2.jpg")
    enrolled.close()
    from gallery.store import Store

    with Store.open(home, model=enrolled._pipeline.model_id) as store:
        identified = store.audit_log(action="identify", limit=100)
    assert len(identified) == 12
    assert all(e.person_name == "Barack Obama" and e.outcome == "match" for e in identified)
    assert all("embedding" not in str(e.detail) for e in identified)
