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
    for command in ("enroll", "identify", "verify", "list", "remove", "info"):
        text = runner.invoke(cli, [command, "--help"]).stdout
        assert "Example:" in text and f"gallery {command}" in text.replace("gallery --home ./my-gallery", "gallery")


def test_python_dash_m_gallery_runs_the_cli(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "gallery", "--home", str(tmp_path), "list"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_OK, done.stderr
