"""Hostile set-ups of the gallery's own folder: it vanishes or moves while open, the disk fills
up during enrolment and removal, special files stand where the gallery's files should be, files
are created under a permissive umask, and the folder turns read-only.

Some need root (a tmpfs for a full disk, a read-only bind mount); they are skipped without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner
from fakes import FAKE_MODEL, FakePipeline, fake_embedding_of, fake_photo
from records import face_record

import gallery.store.store as store_module
from gallery import GalleryVanished, NotAGallery, StorageFailure
from gallery.cli import EXIT_ERASURE_PENDING, CliContext, cli
from gallery.gallery import Gallery
from gallery.store import Store
from gallery.store.erasure import ERASURE_PENDING
from gallery.store.index import IndexPolicy
from gallery.store.records import FaceRecord

T = TypeVar("T")


def _within(seconds: float, action: Callable[[], T]) -> T:
    """``action()``, failing the test if it has not returned after ``seconds`` (a hang)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _holding(folder: Path, secret: bytes) -> list[str]:
    """The files holding ``secret``, whole or as any of its 16-byte windows (a row may straddle pages)."""
    windows = [secret] + [secret[i : i + 16] for i in range(0, len(secret) - 15, 4)]
    return sorted(name for name, data in _files(folder).items() if any(w in data for w in windows))


def _enrolled(home: Path, names: list[str]) -> None:
    with Gallery(home, pipeline=FakePipeline()) as g:
        for name in names:
            g.enroll(name, fake_photo(name))


@contextlib.contextmanager
def _mounted(folder: Path, *options: str) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount")
    done = subprocess.run(["mount", *options, str(folder)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def _small_disk(folder: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``folder``: a disk that really fills up (ENOSPC)."""
    with _mounted(folder, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs"):
        yield folder


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a file until no space is left, then give back ``leave`` bytes."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as file:
        for block in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while file.write(b"\xaa" * block) == block:
                    pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


# ---- a folder that vanishes or moves while the gallery is open -----------------------------


def test_a_deleted_gallery_folder_refuses_every_call_and_is_not_recreated(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    with Gallery(home, pipeline=FakePipeline()) as g:
        g.enroll("Ada", fake_photo("Ada"))
        g.enroll("Alan", fake_photo("Alan"))
        shutil.rmtree(home)
        with pytest.raises(GalleryVanished):
            g.enroll("Grace", fake_photo("Grace"))
        with pytest.raises(GalleryVanished):
            g.identify(fake_photo("Ada"))
        with pytest.raises(GalleryVanished):
            g.remove("Ada")
        with pytest.raises(GalleryVanished):
            g.people()
        assert not home.exists(), "the gallery re-created its deleted folder"
    assert not home.exists()


def test_a_moved_gallery_folder_refuses_every_call_and_nothing_is_written_at_either_place(tmp_path: Path) -> None:
    home, moved = tmp_path / "gallery", tmp_path / "moved"
    with Gallery(home, pipeline=FakePipeline()) as g:
        g.enroll("Ada", fake_photo("Ada"))
        g.enroll("Alan", fake_photo("Alan"))
        os.rename(home, moved)
        before = _files(moved)
        for call in (
            lambda: g.enroll("Grace", fake_photo("Grace")),
            lambda: g.identify(fake_photo("Ada")),
            lambda: g.remove("Alan"),
        ):
            with pytest.raises(GalleryVanished):
                call()
        assert not home.exists(), "a write went back to the old path"
        assert _files(moved)["faces.faiss"] == before["faces.faiss"]
        home.mkdir()  # a new, empty folder where the gallery was: not the gallery either
        with pytest.raises(GalleryVanished):
            g.enroll("Grace", fake_photo("Grace"))
        assert list(home.iterdir()) == []
    with Gallery(moved, pipeline=FakePipeline()) as g:
        assert [p.name for p in g.people()] == ["Ada", "Alan"]


def test_a_replaced_database_file_is_noticed(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    with Gallery(home, pipeline=FakePipeline()) as g:
        g.enroll("Ada", fake_photo("Ada"))
        (home / "gallery.db").unlink()
        with pytest.raises(GalleryVanished):
            g.identify(fake_photo("Ada"))
        with pytest.raises(GalleryVanished):
            g.enroll("Grace", fake_photo("Grace"))
    assert (
        not (home / "faces.faiss").exists()
        or fake_embedding_of("Grace").tobytes() not in (home / "faces.faiss").read_bytes()
    )


# ---- erasure that cannot finish now ----------------------------------------------------------


def test_a_removal_on_a_full_disk_leaves_no_stale_index_holding_the_person(tmp_path: Path) -> None:
    names = [f"person {i}" for i in range(600)]  # an index of 312 KB: it cannot be rewritten
    with _small_disk(tmp_path / "disk", "32m") as disk:
        home = disk / "gallery"
        _enrolled(home, names)
        secret = fake_embedding_of("person 7").tobytes()
        assert "faces.faiss" in _holding(home, secret)
        with Gallery(home, pipeline=FakePipeline()) as g:
            _fill(disk, leave=160 * 1024)  # room for the removal's transaction, not for a new index
            removal = g.remove("person 7")
            assert removal.faces_removed == 1
            assert "faces.faiss" not in _holding(home, secret) or "index file" in removal.pending
            assert removal.erasure_complete == (removal.pending == ())
            assert _holding(home, secret) == [] or not removal.erasure_complete
        (disk / "filler").unlink()
        with Gallery(home, pipeline=FakePipeline()) as g:  # the next open rebuilds the index
            assert len(g.people()) == 599
            assert g._store.consistency_problems() == []
        assert _holding(home, secret) == []


def test_a_removal_in_an_immutable_folder_says_the_index_file_is_pending_until_it_can_be_rewritten(
    tmp_path: Path,
) -> None:
    home = tmp_path / "gallery"
    _enrolled(home, ["Ada", "Alan", "Grace"])
    secret = fake_embedding_of("Alan").tobytes()
    with Gallery(home, pipeline=FakePipeline()) as g:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(home)]).returncode:
            pytest.skip("cannot make a folder immutable here (chattr +i needs root and a file system that has it)")
        try:
            removal = g.remove("Alan")  # the index can be neither replaced nor deleted
            assert removal.pending == ("index file",) and not removal.erasure_complete
            assert "faces.faiss" in _holding(home, secret)
            assert g._store.pending_erasure() == ("index file",)
        finally:
            subprocess.run(["chattr", "-i", str(home)], check=True)
        g.enroll("Edsger", fake_photo("Edsger"))  # the next write finishes the erasure
        assert _holding(home, secret) == []
        assert g._store.pending_erasure() == ()


def test_an_enrolment_on_a_full_disk_is_refused_or_durable(tmp_path: Path) -> None:
    enrolled: list[str] = []
    with _small_disk(tmp_path / "disk") as disk:
        home = disk / "gallery"
        _enrolled(home, [f"person {i}" for i in range(300)])
        with Gallery(home, pipeline=FakePipeline()) as g:
            for leave in (0, 8192, 64 * 1024):  # no room at all, room for the transaction alone
                (disk / "filler").unlink(missing_ok=True)
                _fill(disk, leave=leave)
                try:
                    g.enroll(f"Grace {leave}", fake_photo(f"Grace {leave}"))
                except StorageFailure:
                    continue
                enrolled.append(f"Grace {leave}")
        (disk / "filler").unlink()
        with Gallery(home, pipeline=FakePipeline()) as g:
            assert sorted(p.name for p in g.people() if p.name.startswith("Grace")) == sorted(enrolled)
            assert g._store.consistency_problems() == []


def test_a_removal_blocked_by_a_reader_says_the_database_is_pending_and_a_later_write_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "REMOVAL_ERASE_WAIT_S", 0.2)
    home = tmp_path / "gallery"
    _enrolled(home, ["Ada", "Alan", "Grace"])
    secret = fake_embedding_of("Alan").tobytes()
    reader = sqlite3.connect(home / "gallery.db", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM faces").fetchone() == (3,)  # holds its snapshot
    with Gallery(home, pipeline=FakePipeline()) as g, Gallery(home, pipeline=FakePipeline()) as other:
        removal = g.remove("Alan")
        assert removal.pending == ("database",)
        assert not removal.erasure_complete
        assert _holding(home, secret) != []  # honestly pending: the old pages are still there
        reader.execute("ROLLBACK")
        reader.close()
        other.enroll("Edsger", fake_photo("Edsger"))  # any write, from any user of the gallery
        assert _holding(home, secret) == []
        assert other._store.get_setting(ERASURE_PENDING) is None


def test_remove_says_an_erasure_is_pending_with_exit_code_5_and_in_its_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "REMOVAL_ERASE_WAIT_S", 0.1)
    home = tmp_path / "gallery"
    _enrolled(home, ["Ada", "Alan", "Grace"])
    reader = sqlite3.connect(home / "gallery.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM faces").fetchone()

    def remove(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--home", str(home), "remove", *args], obj=CliContext(pipeline=FakePipeline()))

    result = remove("--json", "Alan")
    assert result.exit_code == EXIT_ERASURE_PENDING == 5
    assert json.loads(result.stdout) == {
        "name": "Alan",
        "person_id": 2,
        "faces_removed": 1,
        "pending": ["database"],
        "erasure_complete": False,
    }
    result = remove("Grace")
    assert result.exit_code == 5
    assert result.stdout.startswith("Removed Grace (1 face(s))")
    assert "erasure pending: the database" in result.stderr
    reader.execute("ROLLBACK")
    reader.close()
    result = remove("--json", "Ada")
    assert result.exit_code == 0 and json.loads(result.stdout)["erasure_complete"] is True


def test_a_pending_erasure_is_finished_by_the_next_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "REMOVAL_ERASE_WAIT_S", 0.1)
    home = tmp_path / "gallery"
    _enrolled(home, ["Ada", "Alan"])
    secret = fake_embedding_of("Alan").tobytes()
    reader = sqlite3.connect(home / "gallery.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM faces").fetchone()
    with Gallery(home, pipeline=FakePipeline()) as g:
        assert g.remove("Alan").pending == ("database",)
        reader.execute("ROLLBACK")
        reader.close()
        with Store.open(home, model=FAKE_MODEL):
            assert _holding(home, secret) == []


# ---- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_gallery_folder_and_every_file_in_it_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    home = tmp_path / "new" / "gallery"
    previous = os.umask(umask)
    try:
        policy = IndexPolicy(exact_up_to=20, training_sample=64, segment_rows=16)  # slice files too
        with Store.open(home, model=FAKE_MODEL, index_policy=policy) as store:
            for i in range(80):
                store.add_person_with_face(f"p{i}", _face(i))
            files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in home.iterdir()}
    finally:
        os.umask(previous)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert {"gallery.db", "gallery.db-wal", "gallery.db-shm", "gallery.db.lock", "faces.faiss"} <= set(files)
    assert any(name.endswith(".seg") for name in files)
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}


def test_an_existing_folder_keeps_its_owners_permissions(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    home.mkdir()
    os.chmod(home, 0o750)
    _enrolled(home, ["Ada"])
    assert stat.S_IMODE(home.stat().st_mode) == 0o750
    assert stat.S_IMODE((home / "gallery.db").stat().st_mode) == 0o600


# ---- special files among the gallery's own files --------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink to /dev/zero"])
def test_a_special_file_named_like_the_index_is_rebuilt_over_not_blocked_on(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "gallery"
    _enrolled(home, ["Ada", "Alan"])
    index = home / "faces.faiss"
    index.unlink()
    if kind == "fifo":
        os.mkfifo(index)
    elif kind == "directory":
        index.mkdir()
    else:
        index.symlink_to("/dev/zero")
    with _within(20, lambda: Store.open(home, model=FAKE_MODEL)) as store:
        assert store.index_repair is not None
        hits = _within(20, lambda: store.search(fake_embedding_of("Ada"), 1))
        assert hits[0][0].name == "Ada"
    if kind != "directory":  # a folder cannot be replaced by a file; it is searched from memory
        assert index.is_file() and not index.is_symlink()


def test_a_fifo_named_like_a_slice_file_is_rebuilt_over(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    policy = IndexPolicy(exact_up_to=20, training_sample=64, segment_rows=16)
    _enrolled_with(home, policy, 80)
    (segment,) = list(home.glob("faces.faiss.*.seg"))[:1]
    segment.unlink()
    os.mkfifo(segment)
    with _within(20, lambda: Store.open(home, model=FAKE_MODEL, index_policy=policy)) as store:
        assert store.index_repair is not None
        assert _within(20, store.consistency_problems) == []


def _enrolled_with(home: Path, policy: IndexPolicy, count: int) -> None:
    with Store.open(home, model=FAKE_MODEL, index_policy=policy) as store:
        for i in range(count):
            store.add_person_with_face(f"s{i}", _face(i))


def _face(i: int) -> FaceRecord:
    return face_record(fake_embedding_of(f"s{i}"), FAKE_MODEL)


@pytest.mark.parametrize("name", ["gallery.db", "gallery.db-wal", "gallery.db-shm", "gallery.db.lock"])
def test_a_fifo_named_like_a_database_file_is_refused_without_blocking(tmp_path: Path, name: str) -> None:
    home = tmp_path / "gallery"
    if name != "gallery.db":
        _enrolled(home, ["Ada"])
    home.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (home / name).unlink()
    os.mkfifo(home / name)

    def use() -> None:
        with Gallery(home, pipeline=FakePipeline()) as g:
            g.enroll("Grace", fake_photo("Grace"))

    with pytest.raises((NotAGallery, StorageFailure)) as raised:
        _within(20, use)
    assert name in str(raised.value)


# ---- a read-only folder: the audit log cannot be written --------------------------------------


def test_an_audit_write_to_a_read_only_gallery_fails_with_one_typed_line(tmp_path: Path) -> None:
    home = tmp_path / "gallery"
    _enrolled(home, ["Ada"])
    with Store.open(home, model=FAKE_MODEL), _mounted(home, "--bind", str(home)):  # keeps the WAL open
        subprocess.run(["mount", "-o", "remount,ro,bind", str(home)], check=True)
        with Store.open(home, model=FAKE_MODEL) as store, pytest.raises(StorageFailure) as raised:
            store.audit_many([("identify", {"outcome": "unknown"})])
    message = str(raised.value)
    assert "\n" not in message and "audit" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
