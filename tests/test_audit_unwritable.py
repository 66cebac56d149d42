"""What happens to the audit trail when it cannot be written (a read-only gallery folder, a failing disk).

``audit="best_effort"`` (the default): the call answers, one warning line is logged (no
traceback), and the event is held in memory and written with the next write that succeeds;
what is still unwritten at ``close`` is counted as lost (``audit_status``).
``audit="required"``: identify and verify raise ``AuditNotWritten`` instead of answering.

The folder is made read-only for real with ``chattr +i`` (immutable: even root cannot write
it, and the tests run as root, for whom ``chmod 0555`` stops nothing). It is made so while the
gallery is open, as an operator's mistake or a failing volume would, because the store cannot
open a WAL database in a read-only folder at all (SQLite must create its shared-memory file);
a read-only bind mount (``mount -o remount,ro,bind``) cannot be made under an open gallery
("mount point is busy") and a process as ``nobody`` cannot run this interpreter (it lives under
/root). The ``-shm`` file stays writable: SQLite maps it into memory, and making it immutable
kills the process with SIGBUS.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo

from gallery import AuditNotWritten, Gallery, InvalidArgument, StorageFailure
from gallery.audit import AuditWriter
from gallery.cli import EXIT_ERROR, EXIT_OK, CliContext, cli
from gallery.store import Store


def _chattr(flag: str, paths: list[Path]) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    return done.returncode == 0


@contextmanager
def read_only(home: Path) -> Iterator[None]:
    """``home`` and its files immutable (but the -shm file, see the module's docstring), restored after."""
    paths = [home, *(p for p in home.iterdir() if not p.name.endswith("-shm"))]
    if sys.platform != "linux" or not _chattr("+i", paths):
        pytest.skip("needs chattr +i (Linux, root or CAP_LINUX_IMMUTABLE, a file system that supports it)")
    try:
        yield
    finally:
        _chattr("-i", paths)


def _audit_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gallery.audit" and r.levelno == logging.WARNING]


def test_identify_in_a_read_only_folder_answers_warns_once_and_writes_the_event_once_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    with Gallery(home, pipeline=FakePipeline()) as g:
        g.enroll("Ada Lovelace", fake_photo("ada"))
        assert g.audit_log(limit=1)  # flushed: nothing of the enrolment is pending
        with read_only(home):
            [face] = g.identify(fake_photo("ada"))
            assert face.outcome == "match" and face.match is not None and face.match.name == "Ada Lovelace"
            [second] = g.identify(fake_photo("ada"))
            assert second.outcome == "match"
            g._audit.flush()
            status = g.audit_status()
            assert (status.policy, status.pending, status.lost) == ("best_effort", 2, 0)
            assert status.last_error and "\n" not in status.last_error
            [warning] = _audit_warnings(caplog)  # one line for the outage, not one traceback per event
            assert warning.exc_info is None and "\n" not in warning.getMessage()
            # The writer batches what queued meanwhile: the two identifies are one write or two.
            assert re.match(r"could not write [12] audit event\(s\), holding them in memory", warning.getMessage())
        # Writable again: the held events go with the next write that succeeds. A connection the
        # pool opened during the outage is read-only for life (SQLite's fallback), so the first
        # write may still fail on it; the store then drops such connections, and the next succeeds.
        identifies = 0
        while identifies < 3 and (identifies == 0 or g.audit_status().pending):
            g.identify(fake_photo("ada"))
            identifies += 1
            g._audit.flush()
        assert g.audit_status().pending == 0 and g.audit_status().last_error is None, identifies
        events = g.audit_log(action="identify")
        assert len(events) == 2 + identifies and all(e.outcome == "match" for e in events)
    assert _audit_warnings(caplog)[-1].getMessage() == "the audit log is writable again: 2 held event(s) written"


def test_events_still_unwritable_at_close_are_counted_lost_in_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    g = Gallery(home, pipeline=FakePipeline())
    try:
        g.enroll("Ada Lovelace", fake_photo("ada"))
        g.audit_log(limit=1)
        with read_only(home):
            g.identify(fake_photo("ada"))
            g._audit.close()  # what Gallery.close does first, while the folder is still read-only
            assert g.audit_status().lost == 1 and g.audit_status().pending == 0
    finally:
        g._store.close()
    assert _audit_warnings(caplog)[-1].getMessage().startswith("1 audit event(s) could not be written and are lost")


def test_under_required_audit_a_read_only_folder_refuses_to_answer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Gallery(home, pipeline=FakePipeline(), audit="required") as g:
        g.enroll("Ada Lovelace", fake_photo("ada"))
        with read_only(home):
            with pytest.raises(AuditNotWritten, match="audit event of this identify could not be written"):
                g.identify(fake_photo("ada"))
            with pytest.raises(AuditNotWritten, match="no answer is given without it"):
                g.verify("Ada Lovelace", fake_photo("ada"))
        [face] = g.identify(fake_photo("ada"))  # writable again: answered, and logged before returning
        assert face.outcome == "match"
        assert [e.action for e in g.audit_log()] == ["identify", "enroll"]
        assert g.audit_status().lost == 0


def test_an_unknown_audit_policy_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="audit must be one of 'best_effort', 'required'"):
        Gallery(tmp_path / "home", pipeline=FakePipeline(), audit="sometimes")  # type: ignore[arg-type]


def _failing_audit(self: Store, events: object) -> None:
    raise StorageFailure("the gallery database failed:\nattempt to write a readonly database")


def test_the_cli_answers_and_warns_in_one_line_or_under_required_audit_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    photo = tmp_path / "ada.png"
    photo.write_bytes(fake_photo("ada"))
    home = tmp_path / "home"

    def command(*args: str):
        return CliRunner().invoke(cli, ["--home", str(home), *args], obj=CliContext(pipeline=FakePipeline()))

    assert command("enroll", "Ada Lovelace", str(photo)).exit_code == EXIT_OK
    monkeypatch.setattr(Store, "audit_many", _failing_audit)
    answered = command("identify", str(photo))
    assert answered.exit_code == EXIT_OK and answered.stdout.startswith("Ada Lovelace\t")
    messages = [r.getMessage() for r in _audit_warnings(caplog)]
    assert len(messages) == 2 and all("\n" not in m for m in messages)  # the outage, then the loss at exit
    assert "attempt to write a readonly database" in messages[0] and "are lost" in messages[1]
    refused = command("--audit", "required", "identify", "--json", str(photo))
    assert refused.exit_code == EXIT_ERROR and refused.stdout == ""
    assert refused.stderr.startswith("Error: the audit event of this identify could not be written")
    assert refused.stderr.count("\n") == 1
    env_refused = CliRunner().invoke(
        cli,
        ["--home", str(home), "identify", str(photo)],
        obj=CliContext(pipeline=FakePipeline()),
        env={"GALLERY_AUDIT": "required"},
    )
    assert env_refused.exit_code == EXIT_ERROR


def test_the_writer_holds_at_most_max_backlog_events_dropping_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Gallery(tmp_path / "home", pipeline=FakePipeline()) as g:
        monkeypatch.setattr(AuditWriter, "MAX_BACKLOG", 3)
        monkeypatch.setattr(Store, "audit_many", _failing_audit)
        for _ in range(5):
            g.identify(fake_photo("nobody"))
            g._audit.flush()
        status = g.audit_status()
        assert (status.pending, status.lost) == (3, 2)
        monkeypatch.undo()
        g.identify(fake_photo("nobody"))
        assert len(g.audit_log(action="identify")) == 4  # the 3 held and this one; the 2 oldest were dropped
        assert g.audit_status().lost == 2
