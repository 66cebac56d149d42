"""The audit log's public face: ``Gallery.audit_log`` and ``gallery log`` (over ``FakePipeline``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo

from gallery import Gallery, InvalidArgument
from gallery.cli import EXIT_OK, EXIT_USAGE, CliContext, cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A gallery where Ada and Alan were enrolled, Ada identified once, and Alan removed."""
    home = tmp_path / "home"
    with Gallery(home, pipeline=FakePipeline()) as g:
        g.enroll("Ada Lovelace", fake_photo("ada"))
        g.enroll("Alan Turing", fake_photo("alan"))
        [face] = g.identify(fake_photo("ada"))
        assert face.outcome == "match"
        g.remove("Alan Turing")
    return home


def test_a_call_sees_its_own_identify_at_once(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g", pipeline=FakePipeline()) as g:
        g.enroll("Ada Lovelace", fake_photo("ada"))
        g.identify(fake_photo("ada"))
        events = g.audit_log(limit=1)  # queued on the writer's thread a moment ago: flushed first
    assert [(e.action, e.outcome, e.person_name) for e in events] == [("identify", "match", "Ada Lovelace")]


def test_audit_log_filters_by_action_person_outcome_and_time(home: Path) -> None:
    with Gallery(home, pipeline=FakePipeline()) as g:
        everything = g.audit_log()
        assert [e.action for e in everything] == ["remove", "identify", "enroll", "enroll"]  # newest first
        assert [e.action for e in g.audit_log(person="Alan Turing")] == ["remove", "enroll"]
        assert [e.action for e in g.audit_log(person="Ada Lovelace")] == ["identify", "enroll"]
        assert [e.action for e in g.audit_log(outcome="match")] == ["identify"]
        assert [e.person_name for e in g.audit_log(action="enroll", limit=1)] == ["Alan Turing"]
        later = everything[0].at + timedelta(seconds=1)
        assert g.audit_log(since=later) == []
        assert len(g.audit_log(until=later)) == 4
        assert g.audit_log(limit=0) == []


def test_audit_log_refuses_a_naive_time_and_a_negative_limit(home: Path) -> None:
    with Gallery(home, pipeline=FakePipeline()) as g:
        with pytest.raises(InvalidArgument, match="timezone-aware"):
            g.audit_log(since=datetime(2026, 1, 1))
        with pytest.raises(InvalidArgument, match="limit"):
            g.audit_log(limit=-1)
        # Past what a database integer holds (found by the HTTP fuzz test: it was a 500).
        with pytest.raises(InvalidArgument, match="limit"):
            g.audit_log(limit=12540430400548433920)
        assert g.audit_log(limit=2**63 - 1) == g.audit_log(limit=None)


def test_gallery_log_prints_the_trail_as_text_and_json(home: Path) -> None:
    runner = CliRunner()
    context = CliContext(pipeline=FakePipeline())

    def log(*args: str):
        return runner.invoke(cli, ["--home", str(home), "log", *args], obj=context, catch_exceptions=False)

    text = log("--person", "Alan Turing")
    assert text.exit_code == EXIT_OK
    lines = text.output.splitlines()
    assert [line.split("\t")[1:3] for line in lines] == [["remove", "removed"], ["enroll", "enrolled"]]

    as_json = log("--json", "--action", "identify", "--since", "2000-01-01")
    assert as_json.exit_code == EXIT_OK
    [event] = json.loads(as_json.output)
    assert event["outcome"] == "match" and event["person_name"] == "Ada Lovelace"
    assert datetime.fromisoformat(event["at"]).utcoffset() == timedelta(0)  # ISO 8601 with its offset
    assert set(event) == {"id", "at", "action", "outcome", "person_name", "person_id", "model", "rule", "detail"}

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert json.loads(log("--json", "--since", future).output) == []
    assert log("--since", "yesterday").exit_code == EXIT_USAGE
    assert log("--action", "dance").exit_code == EXIT_USAGE
