"""The gallery command: outputs, JSON schema and exit codes.

Most tests run the commands over ``FakePipeline`` (handed in as click's ``obj``, a
``CliContext``), so they take milliseconds: the shell's own behaviour does not depend on real
faces. A few run the real models end to end, as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import FAKE_MODEL, FakePipeline, fake_photo
from PIL import Image

from gallery.cli import EXIT_ERROR, EXIT_NO_FACE, EXIT_NO_MATCH, EXIT_OK, EXIT_USAGE, CliContext, cli

DATA = Path(__file__).resolve().parent.parent / "data"
CANDIDATE_KEYS = {"name", "person_id", "distance"}
FACE_KEYS = {"box", "candidates", "match", "outcome", "confidence", "rule", "data"}


@pytest.fixture
def run(tmp_path: Path):
    """The command with the real models."""
    runner = CliRunner()
    home = tmp_path / "home"

    def invoke(*args: str):
        return runner.invoke(cli, ["--home", str(home), *map(str, args)], catch_exceptions=False)

    return invoke


@pytest.fixture
def enrolled(run):
    assert run("enroll", "Barack Obama", DATA / "obama.jpg").exit_code == EXIT_OK
    assert run("enroll", "Joe Biden", DATA / "biden.jpg").exit_code == EXIT_OK
    return run


@pytest.fixture
def photos(tmp_path: Path):
    """``photos(name)``: the path of a fake photo of ``name`` (one distinct face per name)."""
    folder = tmp_path / "photos"
    folder.mkdir()

    def make(name: str) -> Path:
        path = folder / f"{name}.png"
        if not path.exists():
            path.write_bytes(fake_photo(name))
        return path

    return make


@pytest.fixture
def fake(tmp_path: Path):
    """The command over ``FakePipeline``: every command in milliseconds."""
    runner = CliRunner()
    home = tmp_path / "fake-home"
    context = CliContext(pipeline=FakePipeline())

    def invoke(*args: str):
        return runner.invoke(cli, ["--home", str(home), *map(str, args)], obj=context, catch_exceptions=False)

    return invoke


@pytest.fixture
def ada_and_alan(fake, photos):
    assert fake("enroll", "Ada Lovelace", photos("ada")).exit_code == EXIT_OK
    assert fake("enroll", "Alan Turing", photos("alan")).exit_code == EXIT_OK
    return fake


# ---- with the real models --------------------------------------------------------------


def test_identify_json_matches_the_documented_schema(enrolled):
    result = enrolled("identify", "--json", DATA / "two_people.jpg")
    assert result.exit_code == EXIT_OK
    doc = json.loads(result.stdout)
    assert set(doc) == {"photo", "faces"}
    assert len(doc["faces"]) == 2
    for face in doc["faces"]:
        assert set(face) == FACE_KEYS
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert face["outcome"] in {"match", "unknown", "ambiguous"}
        assert 0.0 <= face["confidence"] <= 1.0
        for candidate in face["candidates"]:
            assert set(candidate) == CANDIDATE_KEYS
        assert set(face["match"]) == CANDIDATE_KEYS
    assert sorted(f["match"]["name"] for f in doc["faces"]) == ["Barack Obama", "Joe Biden"]


def test_the_real_models_tell_match_no_match_and_no_face_apart(enrolled, tmp_path: Path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(blank)
    assert enrolled("identify", DATA / "obama2.jpg").exit_code == EXIT_OK
    assert enrolled("identify", DATA / "grace_hopper.jpg").exit_code == EXIT_NO_MATCH
    assert enrolled("identify", blank).exit_code == EXIT_NO_FACE
    assert enrolled("verify", "Barack Obama", DATA / "obama2.jpg").exit_code == EXIT_OK
    assert enrolled("verify", "Joe Biden", DATA / "obama2.jpg").exit_code == EXIT_NO_MATCH
    assert enrolled("enroll", "Blank", blank).exit_code == EXIT_NO_FACE
    assert enrolled("enroll", "Barack Obama", DATA / "obama3.jpg").exit_code == EXIT_ERROR
    assert json.loads(enrolled("info", "--json").stdout)["model"] == "dlib_resnet_v1+flip"


def test_every_command_help_has_an_example():
    runner = CliRunner()
    for command in (
        "enroll",
        "enroll-dir",
        "identify",
        "verify",
        "list",
        "remove",
        "reembed",
        "info",
        "calibrate",
        "eval",
    ):
        text = runner.invoke(cli, [command, "--help"]).stdout
        assert "Example:" in text and f"gallery {command}" in text.replace("gallery --home ./my-gallery", "gallery")


def test_python_dash_m_gallery_runs_the_cli(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "gallery", "--home", str(tmp_path), "list"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == EXIT_OK, done.stderr


def mirrored(photo: Path, to: Path) -> None:
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(to)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/'s four people in LFW's layout (its group photos are made of the same faces): 10 photos."""
    root = tmp_path_factory.mktemp("labelled")
    photos = {
        "Barack_Obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg"],
        "Joe_Biden": ["biden.jpg"],
        "Grace_Hopper": ["grace_hopper.jpg"],
        "Astronaut": ["astronaut.jpg"],
    }
    for person, files in photos.items():
        (root / person).mkdir()
        for number, name in enumerate(files, start=1):
            (root / person / f"{person}_{number:04d}.jpg").write_bytes((DATA / name).read_bytes())
        if len(files) == 1:  # a second photo: the first mirrored
            mirrored(DATA / files[0], root / person / f"{person}_0002.jpg")
    (root / "pairs.txt").write_text(
        "6\nBarack_Obama 1 2\nBarack_Obama 2 3\nJoe_Biden 1 2\n"
        "Barack_Obama 1 Joe_Biden 1\nGrace_Hopper 1 Barack_Obama 2\nJoe_Biden 2 Astronaut 1\n"
    )
    return root


def test_calibrate_sets_the_margin_asked_for(run, labelled: Path):
    margins = {}
    for margin in ("uniform", "clustered"):
        result = run("calibrate", "--json", "--fpir", "0.2", "--fmr", "0.05", "--margin", margin, labelled)
        assert result.exit_code == EXIT_OK, result.stderr
        margins[margin] = json.loads(result.stdout)["identify"]["rule"]["margin"]
        assert json.loads(run("info", "--json").stdout)["rule"]["rule"]["margin"] == margins[margin]
    assert margins["uniform"]["confidence"] == 0.95 and "sample_divisors" not in margins["uniform"]
    assert margins["clustered"]["confidence"] == 0.99 and len(margins["clustered"]["sample_divisors"]) >= 1
    assert "at its 99% upper bound" in run("info").stdout
    refused = run("calibrate", "--margin", "tight", labelled)
    assert refused.exit_code == EXIT_USAGE and "tight" in refused.stderr
    assert "at its 99% upper bound" in run("info").stdout  # the refused call changed nothing


def test_calibrate_puts_the_learned_rules_in_force_and_eval_measures_them(run, labelled: Path):
    result = run("calibrate", "--json", "--fpir", "0.2", "--fmr", "0.05", labelled)
    assert result.exit_code == EXIT_OK, result.stderr
    learned = json.loads(result.stdout)
    assert set(learned) == {"identify", "verify", "description"}
    provenance = learned["identify"]["provenance"]
    assert provenance["photos"] == 10 and provenance["identities"] == 4
    assert provenance["target_fpir"] == 0.2 and provenance["model"] == "dlib_resnet_v1+flip"
    assert learned["verify"]["provenance"]["target_fmr"] == 0.05
    info = json.loads(run("info", "--json").stdout)
    assert info["rule"] == learned["identify"] and info["verify_rule"] == learned["verify"]
    assert info["rule_description"] == learned["description"]
    assert "source calibrated" in run("info").stdout and "note:" not in run("info").stdout
    for name, photo in (
        ("Barack Obama", "obama.jpg"),
        ("Joe Biden", "biden.jpg"),
        ("Grace Hopper", "grace_hopper.jpg"),
    ):
        assert run("enroll", name, DATA / photo).exit_code == EXIT_OK
    assert f"calibrated for up to {provenance['gallery_size']} people, this gallery has 3" in run("info").stdout

    evaluation = json.loads(run("eval", "--json", labelled).stdout)
    assert evaluation["rule"] == learned["description"]
    assert evaluation["photos"] == 10 and evaluation["identities"] == 4 and evaluation["fta"] == 0.0
    assert evaluation["rank_one"] == 1.0  # these people are easy to tell apart
    assert [t["target_fpir"] for t in evaluation["targets"]] == [0.01, 0.003]
    assert "at FPIR 0.01 (thresholds set on these photos)" in run("eval", labelled).stdout

    pairs = json.loads(run("eval", "--json", "--pairs", labelled / "pairs.txt").stdout)
    assert pairs["pairs"] == 6 and pairs["no_face"] == 0 and pairs["missing_files"] == 0
    assert pairs["accuracy_at"] == 1.0  # Obama's photos within the learned threshold, different people outside
    assert 0.0 <= pairs["accuracy"] <= 1.0


# ---- over the fake pipeline: the shell's own behaviour ---------------------------------


def test_a_context_handed_in_keeps_its_pipeline_and_takes_home_from_the_command_line(fake, photos, tmp_path: Path):
    assert fake("enroll", "Ada Lovelace", photos("ada")).exit_code == EXIT_OK
    info = json.loads(fake("info", "--json").stdout)
    assert info["model"] == FAKE_MODEL and info["home"] == str(tmp_path / "fake-home")


def test_enroll_prints_what_was_stored_and_its_json_has_the_documented_keys(fake, photos):
    first = fake("enroll", "--json", "--external-id", "E-1", "Ada Lovelace", photos("ada"))
    assert first.exit_code == EXIT_OK
    doc = json.loads(first.stdout)
    assert set(doc) == {"name", "person_id", "face_id", "box", "new_person", "resembles", "domain"}
    assert doc["name"] == "Ada Lovelace" and doc["new_person"] is True and len(doc["box"]) == 4
    assert doc["resembles"] is None  # nobody else enrolled
    # The fake pipeline gives every photo its own face: the same-person check would refuse it.
    added = fake("enroll", "--add", "--allow-different", "Ada Lovelace", photos("ada-2"))
    assert added.exit_code == EXIT_OK
    assert added.stdout.startswith(f"Added a photo of Ada Lovelace (person {doc['person_id']}, face ")
    assert fake("enroll", "Alan Turing", photos("alan")).stdout.startswith("Enrolled Alan Turing (person ")


def test_identify_exits_0_on_a_match_1_on_a_stranger_3_without_a_face(ada_and_alan, photos, tmp_path: Path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((80, 80, 3), 127, np.uint8)).save(blank)
    matched = ada_and_alan("identify", photos("ada"))
    assert matched.exit_code == EXIT_OK
    assert matched.stdout.startswith("Ada Lovelace\tbox=[0, 0, 95, 95]\tdistance=0.000\tconfidence=")
    assert matched.stderr.startswith("rule: ")
    stranger = ada_and_alan("identify", photos("grace"))
    assert stranger.exit_code == EXIT_NO_MATCH and stranger.stdout.startswith("unknown\t")
    nobody = ada_and_alan("identify", blank)
    assert nobody.exit_code == EXIT_NO_FACE and nobody.stdout == "" and nobody.stderr == "No face found.\n"
    assert json.loads(ada_and_alan("identify", "--json", blank).stdout) == {"photo": str(blank), "faces": []}


def test_identify_json_has_the_documented_keys_and_top_k_candidates(ada_and_alan, photos):
    result = ada_and_alan("identify", "--json", "--top-k", "1", photos("alan"))
    assert result.exit_code == EXIT_OK
    doc = json.loads(result.stdout)
    assert doc["photo"] == str(photos("alan")) and len(doc["faces"]) == 1
    (face,) = doc["faces"]
    assert set(face) == FACE_KEYS and face["outcome"] == "match"
    assert [set(c) for c in face["candidates"]] == [CANDIDATE_KEYS]
    assert face["match"] == face["candidates"][0] and face["match"]["name"] == "Alan Turing"
    assert face["data"]["version"] >= 2 and 0 <= face["data"]["age_s"] < 60  # two enrolments made it


def test_verify_exits_0_when_verified_and_1_when_not(ada_and_alan, photos):
    yes = ada_and_alan("verify", "Ada Lovelace", photos("ada"))
    assert yes.exit_code == EXIT_OK and yes.stdout.startswith("Ada Lovelace: verified (distance 0.000, threshold ")
    no = ada_and_alan("verify", "--json", "Ada Lovelace", photos("alan"))
    assert no.exit_code == EXIT_NO_MATCH
    doc = json.loads(no.stdout)
    assert set(doc) == {"name", "person_id", "verified", "distance", "threshold", "box"}
    assert doc["verified"] is False and doc["distance"] > doc["threshold"]


def test_list_remove_and_info_json(ada_and_alan, photos):
    people = json.loads(ada_and_alan("list", "--json").stdout)
    assert [p["name"] for p in people] == ["Ada Lovelace", "Alan Turing"]
    assert set(people[0]) == {"id", "name", "external_id", "created_at", "updated_at", "face_count"}
    assert all(p["face_count"] == 1 for p in people)
    datetime.fromisoformat(people[0]["created_at"])
    listed = ada_and_alan("list").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [["Ada Lovelace", "1 photo(s)"], ["Alan Turing", "1 photo(s)"]]
    removed = json.loads(ada_and_alan("remove", "--json", "Alan Turing").stdout)
    assert removed == {
        "name": "Alan Turing",
        "person_id": people[1]["id"],
        "faces_removed": 1,
        "pending": [],
        "erasure_complete": True,
    }
    assert ada_and_alan("remove", "Ada Lovelace").stdout == "Removed Ada Lovelace (1 face(s))\n"
    info = json.loads(ada_and_alan("info", "--json").stdout)
    assert set(info) == {
        "home",
        "people",
        "faces",
        "model",
        "rule",
        "rule_description",
        "rule_fingerprint",
        "verify_rule",
        "rule_error",
        "schema_revision",
        "database",
        "pending_erasure",
        "domain",
    }
    assert info["people"] == 0 and info["faces"] == 0 and info["rule_error"] is None
    assert info["database"].endswith("gallery.db") and info["pending_erasure"] == []
    assert set(info["rule"]) == {"rule", "provenance"} and info["rule"]["rule"]["kind"]
    assert set(info["verify_rule"]) == {"threshold", "provenance"}
    assert "source shipped default" in ada_and_alan("info").stdout
    assert ada_and_alan("list").stdout == ""


def test_errors_are_one_line_on_stderr_with_exit_4_and_usage_errors_exit_2(ada_and_alan, photos, tmp_path: Path):
    missing = ada_and_alan("identify", tmp_path / "missing.jpg")
    assert missing.exit_code == EXIT_ERROR and missing.stdout == ""
    assert missing.stderr.startswith("Error: no such file") and missing.stderr.count("\n") == 1
    again = ada_and_alan("enroll", "Ada Lovelace", photos("ada-2"))
    assert again.exit_code == EXIT_ERROR and "already enrolled" in again.stderr
    assert ada_and_alan("remove", "Grace Hopper").exit_code == EXIT_ERROR
    assert ada_and_alan("verify", "Grace Hopper", photos("ada")).exit_code == EXIT_ERROR
    assert ada_and_alan("identify", "--top-k", "0", photos("ada")).exit_code == EXIT_USAGE
    assert ada_and_alan("identify", "--upsample", "4", photos("ada")).exit_code == EXIT_USAGE
    assert ada_and_alan("--threads", "0", "list").exit_code == EXIT_USAGE
    assert ada_and_alan("enroll", "Only A Name").exit_code == EXIT_USAGE
    assert ada_and_alan("eval").exit_code == EXIT_USAGE
    assert ada_and_alan("eval", "--pairs", tmp_path / "missing.txt").exit_code == EXIT_USAGE
    assert ada_and_alan("no-such-command").exit_code == EXIT_USAGE


def test_an_error_message_quoting_a_newline_is_still_one_line(photos, tmp_path: Path):
    (tmp_path / "two\nlines").write_text("a file, not a folder")
    home = tmp_path / "two\nlines" / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "list"], obj=CliContext(pipeline=FakePipeline()))
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: cannot create the gallery folder")


def test_calibrate_on_too_few_photos_fails_and_keeps_the_rules(fake, tmp_path: Path):
    few = tmp_path / "few"
    for person in ("Ada_Lovelace", "Alan_Turing"):
        (few / person).mkdir(parents=True)
        for number in (1, 2):
            (few / person / f"{person}_{number:04d}.png").write_bytes(fake_photo(f"{person}-{number}"))
    result = fake("calibrate", "--fpir", "0.01", few)
    assert result.exit_code == EXIT_ERROR and "needs at least 100 stranger photos" in result.stderr
    assert "source shipped default" in fake("info").stdout
    assert fake("eval").exit_code == EXIT_USAGE
    assert fake("eval", "--pairs", tmp_path / "missing.txt").exit_code == EXIT_USAGE
    (tmp_path / "elsewhere.txt").write_text("Ada_Lovelace 1 2\n")
    elsewhere = fake("eval", "--pairs", tmp_path / "elsewhere.txt")
    assert (
        elsewhere.exit_code == EXIT_ERROR and "2 of the 2 photos the pairs file names are missing" in elsewhere.stderr
    )
    allowed = fake("eval", "--allow-missing", "--pairs", tmp_path / "elsewhere.txt")
    assert allowed.exit_code == EXIT_ERROR and "none of the 1 pairs" in allowed.stderr


def test_enroll_dir_json_summary_and_exit_1_when_a_photo_was_refused(fake, photos, tmp_path: Path):
    staff = tmp_path / "staff"
    (staff / "Ada Lovelace").mkdir(parents=True)
    (staff / "Ada Lovelace" / "1.png").write_bytes(photos("ada").read_bytes())
    (staff / "Alan Turing.png").write_bytes(photos("alan").read_bytes())
    (staff / "Grace Hopper.png").write_bytes(b"not a photo")
    result = fake("enroll-dir", "--json", staff)
    assert result.exit_code == EXIT_NO_MATCH
    doc = json.loads(result.stdout)
    assert (
        set(doc) == {"photos", "enrolled", "skipped", "failures", "domain", "interrupted"}
        and doc["interrupted"] is False
    )
    assert doc["photos"] == 3 and [e["name"] for e in doc["enrolled"]] == ["Ada Lovelace", "Alan Turing"]
    assert [(f["name"], f["error"]) for f in doc["failures"]] == [("Grace Hopper", "ImageUnreadable")]
    assert set(doc["failures"][0]) == {"photo", "name", "error", "reason"}
    (staff / "Grace Hopper.png").unlink()
    rerun = fake("enroll-dir", staff)
    assert rerun.exit_code == EXIT_OK
    assert rerun.stdout.startswith("2 photo(s): 0 enrolled (0 people), 2 already enrolled, 0 refused")


def test_reembed_reports_the_faces_of_another_model_it_re_embedded(photos, tmp_path: Path):
    home = tmp_path / "home"

    def command(pipeline: FakePipeline, *args: object):
        return CliRunner().invoke(cli, ["--home", str(home), *map(str, args)], obj=CliContext(pipeline=pipeline))

    old, new = FakePipeline("fake-embedder-v0"), FakePipeline()
    assert command(old, "enroll", "Ada Lovelace", photos("ada")).exit_code == EXIT_OK
    refused = command(new, "identify", photos("ada"))
    assert refused.exit_code == EXIT_ERROR and "gallery reembed" in refused.stderr
    done = command(new, "reembed", "--json")
    assert done.exit_code == EXIT_OK and json.loads(done.stdout) == {"reembedded": 1, "model": FAKE_MODEL}
    assert command(new, "reembed").stdout == f"Every face is already {FAKE_MODEL}'s\n"
    # No longer refused (the fake embeds a stored chip, not the photo, so Ada may not be matched).
    assert command(new, "identify", photos("ada")).exit_code in (EXIT_OK, EXIT_NO_MATCH)


def test_every_json_timestamp_is_iso_8601_and_info_shows_the_absolute_home(photos, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    context = CliContext(pipeline=FakePipeline())

    def command(*args: object):
        return CliRunner().invoke(cli, ["--home", "relative-home", *map(str, args)], obj=context)

    assert command("enroll", "Ada Lovelace", photos("ada")).exit_code == EXIT_OK
    [ada] = json.loads(command("list", "--json").stdout)
    for field in ("created_at", "updated_at"):
        assert "T" in ada[field] and " " not in ada[field]  # isoformat(), not str(): "2026-11-29T19:42:21+00:00"
        assert datetime.fromisoformat(ada[field]).utcoffset() is not None
    [event] = json.loads(command("log", "--json", "--limit", "1").stdout)
    assert "T" in event["at"] and datetime.fromisoformat(event["at"]).utcoffset() is not None
    home = (tmp_path / "relative-home").resolve()
    assert json.loads(command("info", "--json").stdout)["home"] == str(home)
    assert f"home: {home}\n" in command("info").stdout


@pytest.fixture
def fake_pairs(tmp_path: Path) -> Path:
    """An LFW-layout folder of fake photos (.jpg names, PNG bytes) for 6 people, one of them a blank (no face)."""
    root = tmp_path / "pairs-root"
    for person in ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay"):
        (root / person).mkdir(parents=True)
        for number in (1, 2):
            (root / person / f"{person}_{number:04d}.jpg").write_bytes(fake_photo(f"{person}-{number}"))
    blank = Image.new("RGB", (64, 64), (128, 128, 128))  # FakePipeline finds no face in a single colour
    blank.save(root / "Fay" / "Fay_0002.jpg", format="PNG")
    return root


def test_eval_pairs_refuses_missing_photo_files_and_counts_them_apart_from_photos_without_a_face(fake, fake_pairs):
    (fake_pairs / "pairs.txt").write_text(
        "Ann 1 2\nBob 1 2\nCal 1 2\nFay 1 2\nAnn 1 Bob 1\nCal 1 Dee 1\nDee 2 Eve 1\nGus 1 2\nEve 1 Gus 2\n"
    )
    refused = fake("eval", "--pairs", fake_pairs / "pairs.txt")
    assert refused.exit_code == EXIT_ERROR and refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert "Error: 2 of the 13 photos the pairs file names are missing under" in refused.stderr
    assert "Gus/Gus_0001.jpg, Gus/Gus_0002.jpg" in refused.stderr and "--allow-missing" in refused.stderr

    allowed = fake("eval", "--json", "--allow-missing", "--pairs", fake_pairs / "pairs.txt")
    assert allowed.exit_code == EXIT_OK, allowed.stderr
    report = json.loads(allowed.stdout)
    assert (report["pairs"], report["no_face"], report["missing_files"]) == (6, 1, 2)
    assert report["missing_photos"] == ["Gus/Gus_0001.jpg", "Gus/Gus_0002.jpg"]
    assert "missing" not in report  # the old, ambiguous count
    text = fake("eval", "--allow-missing", "--pairs", fake_pairs / "pairs.txt").stdout
    assert text.startswith("6 pairs (1 skipped: no face; 2 skipped: photo file missing or unreadable): accuracy ")


def test_eval_pairs_on_a_binary_or_unreadable_file_is_a_typed_error_with_exit_4(fake, tmp_path: Path):
    binary = tmp_path / "some.pgm"
    binary.write_bytes(b"P5\n2 2\n255\n\xff\xfe\x00\x80")
    result = fake("eval", "--pairs", binary)
    assert result.exit_code == EXIT_ERROR and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {binary}: not a text file (byte 11 is not UTF-8)")
    unreadable = fake("eval", "--pairs", "/proc/self/mem")  # a regular file whose read fails, even for root
    assert unreadable.exit_code == EXIT_ERROR
    assert unreadable.stderr == "Error: cannot read the pairs file /proc/self/mem: Input/output error\n"
