"""Bulk enrolment from a folder (Gallery.enroll_dir and `gallery enroll-dir`), with the real models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gallery import Gallery
from gallery.cli import EXIT_NO_MATCH, EXIT_OK, cli
from gallery.folders import scan_people_folder

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def staff(tmp_path: Path) -> Path:
    """A folder mixing both layouts, with photos that must be refused for different reasons."""
    root = tmp_path / "staff"
    (root / "Barack Obama").mkdir(parents=True)
    shutil.copy(DATA / "obama.jpg", root / "Barack Obama" / "1.jpg")
    shutil.copy(DATA / "obama2.jpg", root / "Barack Obama" / "2.jpg")
    shutil.copy(DATA / "biden.jpg", root / "Joe Biden.jpg")
    (root / "Nobody").mkdir()
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(root / "Nobody" / "blank.png")
    (root / "Broken").mkdir()
    (root / "Broken" / "cut.jpg").write_bytes((DATA / "grace_hopper.jpg").read_bytes()[:2000])
    shutil.copy(DATA / "two_people.jpg", root / "Crowd.jpg")
    (root / "notes.txt").write_text("not a photo")
    (root / ".hidden").mkdir()
    shutil.copy(DATA / "grace_hopper.jpg", root / ".hidden" / "x.jpg")
    return root


def _reasons(result) -> dict[str, str]:
    return {f.name: f.error for f in result.failures}


def test_the_folder_layouts_name_people_by_sub_folder_or_file(staff: Path):
    people = {p.name: [photo.name for photo in p.photos] for p in scan_people_folder(staff)}
    assert people == {
        "Barack Obama": ["1.jpg", "2.jpg"],
        "Broken": ["cut.jpg"],
        "Crowd": ["Crowd.jpg"],
        "Joe Biden": ["Joe Biden.jpg"],
        "Nobody": ["blank.png"],
    }


def test_enroll_dir_enrols_good_photos_and_reports_each_refusal_with_its_reason(staff: Path, tmp_path: Path):
    seen: list[tuple[int, int]] = []
    with Gallery(tmp_path / "g") as g:
        result = g.enroll_dir(staff, progress=lambda done, total: seen.append((done, total)))
        assert result.photos == 6
        assert sorted((e.name, e.new_person) for e in result.enrolled) == [
            ("Barack Obama", False),
            ("Barack Obama", True),
            ("Joe Biden", True),
        ]
        assert _reasons(result) == {"Nobody": "NoFaceFound", "Broken": "ImageUnreadable", "Crowd": "MultipleFaces"}
        assert result.skipped == ()
        assert seen[-1] == (6, 6) and [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert {p.name: p.face_count for p in g.people()} == {"Barack Obama": 2, "Joe Biden": 1}
        (face,) = g.identify(DATA / "obama3.jpg")
        assert face.match is not None and face.match.name == "Barack Obama"


def test_a_second_run_skips_what_is_enrolled_and_adds_new_photos_to_known_people(staff: Path, tmp_path: Path):
    with Gallery(tmp_path / "g") as g:
        g.enroll_dir(staff)
        shutil.copy(DATA / "obama3.jpg", staff / "Barack Obama" / "3.jpg")
        again = g.enroll_dir(staff)
        assert sorted(p.name for p in again.skipped) == ["1.jpg", "2.jpg", "Joe Biden.jpg"]
        assert [(e.name, e.new_person) for e in again.enrolled] == [("Barack Obama", False)]
        assert {p.name: p.face_count for p in g.people()} == {"Barack Obama": 3, "Joe Biden": 1}
        assert g._store.consistency_problems() == []


def test_a_face_matching_someone_else_in_the_same_folder_is_refused_unless_allowed(tmp_path: Path):
    root = tmp_path / "staff"
    root.mkdir()
    shutil.copy(DATA / "obama.jpg", root / "Barack Obama.jpg")
    shutil.copy(DATA / "obama2.jpg", root / "Not Obama.jpg")
    with Gallery(tmp_path / "g") as g:
        result = g.enroll_dir(root, batch_photos=100)  # one batch: the check must look inside it
        (failure,) = result.failures
        assert (failure.name, failure.error) == ("Not Obama", "LooksLikeSomeoneElse")
        assert "Barack Obama" in failure.reason
        assert [p.name for p in g.people()] == ["Barack Obama"]
        assert [e.name for e in g.enroll_dir(root, allow_similar=True).enrolled] == ["Not Obama"]


def test_the_cli_prints_a_json_summary_and_exits_1_when_photos_were_refused(staff: Path, tmp_path: Path):
    runner = CliRunner()
    home = str(tmp_path / "g")
    out = runner.invoke(cli, ["--home", home, "enroll-dir", "--json", str(staff)], catch_exceptions=False)
    assert out.exit_code == EXIT_NO_MATCH
    summary = json.loads(out.stdout)
    assert set(summary) == {"photos", "enrolled", "skipped", "failures", "domain", "interrupted"}
    assert {f["name"]: f["error"] for f in summary["failures"]}["Nobody"] == "NoFaceFound"
    assert set(summary["failures"][0]) == {"photo", "name", "error", "reason"}
    assert set(summary["enrolled"][0]) == {"name", "person_id", "face_id", "box", "new_person", "resembles", "domain"}
    for bad in ("Nobody", "Broken", "Crowd"):
        shutil.rmtree(staff / bad) if (staff / bad).is_dir() else (staff / f"{bad}.jpg").unlink()
    again = runner.invoke(cli, ["--home", home, "enroll-dir", str(staff)], catch_exceptions=False)
    assert again.exit_code == EXIT_OK
    assert "3 already enrolled" in again.stdout


def test_a_photo_enrolled_as_someone_elses_is_refused_naming_them_while_their_own_is_skipped(tmp_path: Path):
    home = str(tmp_path / "g")
    with Gallery(home) as g:
        g.enroll("Barack Obama", DATA / "obama.jpg")
    folder = tmp_path / "new"
    folder.mkdir()
    shutil.copy(DATA / "obama.jpg", folder / "Bob.jpg")  # nothing may name him Bob now
    shutil.copy(DATA / "obama.jpg", folder / "Barack Obama.jpg")  # already his: an interrupted run's leftover
    out = CliRunner().invoke(cli, ["--home", home, "enroll-dir", "--json", str(folder)], catch_exceptions=False)
    assert out.exit_code == EXIT_NO_MATCH
    summary = json.loads(out.stdout)
    assert summary["enrolled"] == []
    assert summary["skipped"] == [str(folder / "Barack Obama.jpg")]
    assert summary["failures"] == [
        {
            "photo": str(folder / "Bob.jpg"),
            "name": "Bob",
            "error": "PhotoAlreadyEnrolled",
            "reason": "this photo (the same file) is enrolled already, as 'Barack Obama''s: "
            "one photo cannot enrol two people",
        }
    ]
    with Gallery(home) as g:
        assert [(p.name, p.face_count) for p in g.people()] == [("Barack Obama", 1)]


def test_one_file_given_for_two_people_in_a_folder_enrols_the_first_and_refuses_the_second(tmp_path: Path):
    folder = tmp_path / "staff"
    (folder / "Joseph").mkdir(parents=True)
    shutil.copy(DATA / "biden.jpg", folder / "Joe Biden.jpg")
    shutil.copy(DATA / "biden.jpg", folder / "Joseph" / "1.jpg")
    shutil.copy(DATA / "biden.jpg", folder / "Joseph" / "copy.jpg")
    shutil.copy(DATA / "biden.jpg", folder / "Joe Biden.png")  # twice for one person: skipped
    with Gallery(tmp_path / "g") as g:
        result = g.enroll_dir(folder, allow_similar=True)  # one photo is never two people, allowed or not
        assert [(e.name, e.new_person) for e in result.enrolled] == [("Joe Biden", True)]
        assert [(f.photo.name, f.name, f.error) for f in result.failures] == [
            ("1.jpg", "Joseph", "PhotoAlreadyEnrolled"),
            ("copy.jpg", "Joseph", "PhotoAlreadyEnrolled"),
        ]
        assert "also in the folder as 'Joe Biden''s (Joe Biden.jpg)" in result.failures[0].reason
        assert [p.name for p in result.skipped] == ["Joe Biden.png"]
        assert [p.name for p in g.people()] == ["Joe Biden"]
