"""How the command ends when something unforeseen happens: exit 1 means "no match" and nothing else.

A bug (any exception that is not a ``GalleryError``) exits 4 with one line, its traceback only
with ``--debug`` / ``GALLERY_DEBUG=1``; Ctrl-C exits 130 (128 + SIGINT), and ``enroll-dir``
first prints what it had done: the people it committed stay, whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo

from gallery import Gallery
from gallery.cli import EXIT_ERROR, EXIT_OK, CliContext, cli
from gallery.vision.image import ImageInput
from gallery.vision.pipeline import Face

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention (gallery.cli.EXIT_INTERRUPTED)


def _invoke(home: Path, *args: object, pipeline: FakePipeline | None = None, env: dict[str, str] | None = None):
    context = CliContext(pipeline=pipeline or FakePipeline())
    return CliRunner().invoke(cli, ["--home", str(home), *map(str, args)], obj=context, env=env)


@pytest.fixture
def ada(tmp_path: Path) -> Path:
    photo = tmp_path / "ada.png"
    photo.write_bytes(fake_photo("ada"))
    assert _invoke(tmp_path / "home", "enroll", "Ada Lovelace", photo).exit_code == EXIT_OK
    return photo


def _a_bug(*args: object, **kwargs: object) -> None:
    raise RuntimeError("the index said\nsomething odd")


def test_a_bug_exits_4_with_one_line_and_no_traceback(tmp_path: Path, ada: Path, monkeypatch) -> None:
    monkeypatch.setattr(Gallery, "identify", _a_bug)
    monkeypatch.delenv("GALLERY_DEBUG", raising=False)
    result = _invoke(tmp_path / "home", "identify", ada)
    assert result.exit_code == EXIT_ERROR and result.stdout == ""
    assert result.stderr == (
        "Error: unexpected RuntimeError: the index said something odd "
        "(run with --debug or GALLERY_DEBUG=1 for the traceback)\n"
    )


@pytest.mark.parametrize("how", ["--debug", "GALLERY_DEBUG=1"])
def test_a_bug_shows_its_traceback_under_debug_and_still_exits_4(tmp_path: Path, ada: Path, monkeypatch, how) -> None:
    monkeypatch.setattr(Gallery, "identify", _a_bug)
    options, env = (["--debug"], None) if how == "--debug" else ([], {"GALLERY_DEBUG": "1"})
    result = CliRunner().invoke(
        cli,
        ["--home", str(tmp_path / "home"), *options, "identify", str(ada)],
        obj=CliContext(pipeline=FakePipeline()),
        env=env,
    )
    assert result.exit_code == EXIT_ERROR
    assert "Traceback (most recent call last)" in result.stderr and "in _a_bug" in result.stderr
    assert result.stderr.endswith("Error: unexpected RuntimeError: the index said something odd\n")


def _ctrl_c(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_during_a_command_exits_130_not_1(tmp_path: Path, ada: Path, monkeypatch) -> None:
    monkeypatch.setattr(Gallery, "identify", _ctrl_c)
    result = _invoke(tmp_path / "home", "identify", "--json", ada)
    assert result.exit_code == EXIT_INTERRUPTED
    assert result.stdout == "" and result.stderr == "Interrupted.\n"


class InterruptedPipeline(FakePipeline):
    """A fake pipeline that is Ctrl-C'd while detecting the faces of its ``at``-th batch of photos."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self._batches_left = at

    def faces_many(self, images: Iterable[ImageInput], *, upsample: int = 0) -> list[list[Face]]:
        self._batches_left -= 1
        if self._batches_left == 0:
            raise KeyboardInterrupt
        return super().faces_many(images, upsample=upsample)


def _staff(folder: Path, people: int) -> Path:
    folder.mkdir()
    for number in range(people):
        (folder / f"Person {number:03d}.png").write_bytes(fake_photo(f"person-{number}"))
    return folder


@pytest.mark.parametrize("as_json", [True, False])
def test_ctrl_c_during_enroll_dir_prints_what_was_done_and_exits_130(tmp_path: Path, as_json: bool) -> None:
    staff = _staff(tmp_path / "staff", 70)  # a first batch of 64 photos is written, the second is interrupted
    home = tmp_path / "home"
    result = _invoke(home, "enroll-dir", *(["--json"] if as_json else []), staff, pipeline=InterruptedPipeline(at=2))
    assert result.exit_code == EXIT_INTERRUPTED
    if as_json:
        doc = json.loads(result.stdout)
        assert doc["interrupted"] is True and doc["photos"] == 70
        assert len(doc["enrolled"]) == 64 and doc["skipped"] == [] and doc["failures"] == []
    else:
        assert result.stdout.startswith("70 photo(s): 64 enrolled (64 people), 0 already enrolled, 0 refused\n")
        assert result.stdout.endswith("interrupted: run the same command again to enrol the rest\n")
    with Gallery(home, pipeline=FakePipeline()) as g:
        assert len(g.people()) == 64  # what was reported is committed; nothing else is
    rerun = _invoke(home, "enroll-dir", "--json", staff)
    assert rerun.exit_code == EXIT_OK
    doc = json.loads(rerun.stdout)
    assert (len(doc["enrolled"]), len(doc["skipped"]), doc["interrupted"]) == (6, 64, False)


SIGINT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from fakes import FakePipeline
    from gallery.cli import CliContext, cli

    class SelfInterrupting(FakePipeline):
        batches = 0

        def faces_many(self, images, *, upsample=0):
            SelfInterrupting.batches += 1
            if SelfInterrupting.batches == 2:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, in the middle of the second batch
            return super().faces_many(images, upsample=upsample)

    cli.main(sys.argv[1:], prog_name="gallery", obj=CliContext(pipeline=SelfInterrupting()))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_real_sigint_during_enroll_dir_json_prints_the_summary_and_exits_130(tmp_path: Path) -> None:
    staff = _staff(tmp_path / "staff", 70)
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    done = subprocess.run(
        [sys.executable, "-c", SIGINT_SCRIPT, "--home", str(home), "enroll-dir", "--json", str(staff)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 130, done.stderr
    assert "Aborted!" not in done.stderr and "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    assert doc["interrupted"] is True and len(doc["enrolled"]) == 64
    with Gallery(home, pipeline=FakePipeline()) as g:
        assert len(g.people()) == 64
