"""API keys: made, listed and revoked with ``gallery keys``; only a hash is stored; every change audited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakePipeline

from gallery.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliContext, cli
from gallery.errors import InvalidArgument
from gallery.gallery import Gallery
from gallery.store.keys import key_digest


@pytest.fixture
def keys(tmp_path: Path):
    runner = CliRunner()
    home = tmp_path / "home"

    def invoke(*args: str):
        return runner.invoke(cli, ["--home", str(home), "keys", *args], obj=CliContext(pipeline=FakePipeline()))

    invoke.home = home
    return invoke


def test_a_key_is_printed_once_and_only_its_sha256_is_stored(keys) -> None:
    made = keys("create", "--name", "door-1", "--scope", "identify")
    assert made.exit_code == EXIT_OK, made.output
    secret = made.stdout.strip()
    assert secret.startswith("gk_") and len(secret) > 40
    database = (keys.home / "gallery.db").read_bytes()
    assert secret.encode() not in database
    with sqlite3.connect(keys.home / "gallery.db") as db:
        assert db.execute("SELECT key_sha256 FROM api_keys").fetchall() == [(key_digest(secret),)]
    listed = keys("list")
    assert secret not in listed.stdout and "door-1\tidentify\tvalid" in listed.stdout


def test_keys_list_and_revoke_with_json(keys) -> None:
    keys("create", "--name", "desk", "--scope", "enrol", "--scope", "identify")
    assert keys("revoke", "desk").stdout == "Revoked API key 'desk'\n"
    (desk,) = json.loads(keys("list", "--json").stdout)
    assert desk["name"] == "desk" and desk["scopes"] == ["identify", "enrol"] and desk["revoked_at"]
    with Gallery(keys.home, pipeline=FakePipeline()) as gallery:
        assert gallery.hosting.keys()[0].allows("identify") is False  # revoked: allows nothing


def test_a_bad_scope_or_name_is_refused_and_changes_nothing(keys) -> None:
    assert keys("create", "--name", "x", "--scope", "everything").exit_code == EXIT_USAGE
    assert keys("create", "--name", "   ", "--scope", "admin").exit_code == EXIT_ERROR
    with Gallery(keys.home, pipeline=FakePipeline()) as gallery:
        with pytest.raises(InvalidArgument, match="at least one scope"):
            gallery.hosting.create_key("x", [])
        assert gallery.hosting.keys() == []


def test_key_changes_are_audited_without_the_key(keys) -> None:
    secret = keys("create", "--name", "door-1", "--scope", "identify").stdout.strip()
    keys("revoke", "door-1")
    with Gallery(keys.home, pipeline=FakePipeline()) as gallery:
        events = gallery.audit_log(action="key")
    assert [(e.outcome, e.detail["key"]) for e in events] == [("revoked", "door-1"), ("created", "door-1")]
    assert secret not in json.dumps([e.to_dict() for e in events], default=str)


def test_admin_allows_every_scope_and_a_scope_only_itself() -> None:
    from datetime import UTC, datetime

    from gallery.hosting import ApiKey

    now = datetime.now(UTC)
    admin, door = ApiKey("root", ("admin",), now), ApiKey("door", ("identify",), now)
    assert all(admin.allows(scope) for scope in ("identify", "enrol", "admin"))
    assert door.allows("identify") and not door.allows("enrol") and not door.allows("admin")
