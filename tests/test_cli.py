"""The gallery command: outputs, JSON schema and exit codes, with the real models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gallery.cli import EXIT_ERROR, EXIT_NO_FACE, EXIT_NO_MATCH, EXIT_OK, EXIT_USAGE, cli

DATA = Path(__file__).resolve().parent.parent / "data"
CANDIDATE_KEYS = {"name", "person_id", "distance"}
FACE_KEYS = {"box", "candidates", "match", "outcome", "confidence", "rule"}


@pytest.fixture
def run(tmp_path: Path):
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


def test_exit_codes_tell_match_no_match_no_face_and_error_apart(enrolled, tmp_path: Path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(blank)
    assert enrolled("identify", DATA / "obama2.jpg").exit_code == EXIT_OK
    assert enrolled("identify", DATA / "grace_hopper.jpg").exit_code == EXIT_NO_MATCH
    assert enrolled("identify", blank).exit_code == EXIT_NO_FACE
    missing = enrolled("identify", tmp_path / "missing.jpg")
    assert missing.exit_code == EXIT_ERROR and "no such file" in missing.stderr
    assert enrolled("identify", "--top-k", "0", DATA / "obama2.jpg").exit_code == EXIT_USAGE
    assert enrolled("verify", "Barack Obama", DATA / "obama2.jpg").exit_code == EXIT_OK
    assert enrolled("verify", "Joe Biden", DATA / "obama2.jpg").exit_code == EXIT_NO_MATCH
    assert enrolled("enroll", "Blank", blank).exit_code == EXIT_NO_FACE
    assert enrolled("enroll", "Barack Obama", DATA / "obama3.jpg").exit_code == EXIT_ERROR


def test_list_remove_and_info_json(enrolled):
    people = json.loads(enrolled("list", "--json").stdout)
    assert [p["name"] for p in people] == ["Barack Obama", "Joe Biden"]
    assert all(p["face_count"] == 1 for p in people)
    removed = json.loads(enrolled("remove", "--json", "Joe Biden").stdout)
    assert removed["name"] == "Joe Biden" and removed["faces_removed"] == 1
    info = json.loads(enrolled("info", "--json").stdout)
    assert info["people"] == 1 and info["faces"] == 1
    assert info["rule"]["rule"]["kind"]
    assert enrolled("remove", "Joe Biden").exit_code == EXIT_ERROR


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
    assert pairs["pairs"] == 6 and pairs["missing"] == 0
    assert pairs["accuracy_at"] == 1.0  # Obama's photos within the learned threshold, different people outside
    assert 0.0 <= pairs["accuracy"] <= 1.0


def test_calibrate_on_too_few_photos_fails_and_keeps_the_rules(run, labelled: Path, tmp_path: Path):
    few = tmp_path / "few"
    for person in ("Barack_Obama", "Joe_Biden"):
        (few / person).mkdir(parents=True)
        for photo in sorted((labelled / person).iterdir())[:2]:
            (few / person / photo.name).write_bytes(photo.read_bytes())
    result = run("calibrate", "--fpir", "0.01", few)
    assert result.exit_code == EXIT_ERROR and "needs at least 100 stranger photos" in result.stderr
    assert "source shipped default" in run("info").stdout
    assert run("eval").exit_code == EXIT_USAGE
    assert run("eval", "--pairs", tmp_path / "missing.txt").exit_code == EXIT_USAGE
    (tmp_path / "elsewhere.txt").write_text("Barack_Obama 1 2\n")
    elsewhere = run("eval", "--pairs", tmp_path / "elsewhere.txt")
    assert elsewhere.exit_code == EXIT_ERROR and "none of the 1 pairs" in elsewhere.stderr
