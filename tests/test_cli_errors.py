"""Every error class the library defines, run into through the command line: one line on stderr, no
traceback, exit code 3 for ``NoFaceFound`` and 4 for every other ``GalleryError``.

``CASES`` maps each class of ``gallery.errors`` (found by walking the module, so a new class
without a case fails ``test_every_error_class_has_a_case``) to how the command meets it for
real: a missing photo, a gallery database that is not one, a model file that is not there. The
few that the command cannot meet say why (``NotThroughTheCli``) and are provoked through the
Python API instead, or shown never to be raised at all.

Most cases run the command in-process over ``FakePipeline`` (milliseconds); the photo policy
case that needs two real faces runs the real models, and the model-file cases run
``python -m gallery`` in a fresh process whose ``face_recognition_models`` package is a fake
one, so the models really are loaded from the broken files.
"""

from __future__ import annotations

import ast
import http.server
import json
import os
import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import filelock
import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo
from PIL import Image
from service_harness import ROOT, TESTS, Server, free_port, make_keys

import gallery
import gallery.cli.context
import gallery.errors
from gallery.cli import EXIT_ERROR, EXIT_NO_FACE, CliContext, cli
from gallery.enrolment import face_record
from gallery.errors import GalleryError
from gallery.gallery import Gallery
from gallery.models.files import DETECTOR_FILE, model_path
from gallery.store import Store
from gallery.vision.image import load_rgb

DATA = Path(__file__).resolve().parent.parent / "data"
PACKAGE = Path(gallery.__file__).resolve().parent

ERROR_CLASSES = sorted(
    (
        value
        for value in vars(gallery.errors).values()
        if isinstance(value, type) and issubclass(value, GalleryError) and value.__module__ == "gallery.errors"
    ),
    key=lambda cls: cls.__name__,
)


@dataclass
class Outcome:
    """What the command did: exit code, stdout, stderr, and the error class it failed with (in-process only)."""

    exit_code: int
    stdout: str
    stderr: str
    raised: type[GalleryError] | None


class Shell:
    """A gallery home and the command run on it, over the fake pipeline unless told otherwise."""

    def __init__(
        self,
        tmp_path: Path,
        failures: list[GalleryError],
        monkeypatch: pytest.MonkeyPatch,
        fresh_process: Callable[[str], Outcome],
        request: pytest.FixtureRequest,
    ) -> None:
        self.tmp = tmp_path
        self.request = request
        self.home = tmp_path / "home"
        self.monkeypatch = monkeypatch
        self.fresh_process = fresh_process
        self._failures = failures

    def photo(self, name: str, **options: int) -> Path:
        path = self.tmp / f"{name}.png"
        if not path.exists():
            path.write_bytes(fake_photo(name, **options))
        return path

    def file(self, name: str, content: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content)
        return path

    def __call__(self, *args: object, pipeline: FakePipeline | None = None, real: bool = False) -> Outcome:
        context = CliContext() if real else CliContext(pipeline=pipeline or FakePipeline())
        before = len(self._failures)
        result = CliRunner().invoke(cli, ["--home", str(self.home), *map(str, args)], obj=context)
        raised = self._failures[before:]
        return Outcome(result.exit_code, result.stdout, result.stderr, type(raised[-1]) if raised else None)

    def remote(self, server: str, *args: object, key: str | None = None) -> Outcome:
        """The command as a client of the gallery service at ``server`` (``--server``), with no gallery here."""
        before = len(self._failures)
        env = {"GALLERY_API_KEY": key} if key else {"GALLERY_API_KEY": None}
        result = CliRunner().invoke(cli, ["--server", server, *map(str, args)], obj=CliContext(), env=env)
        raised = self._failures[before:]
        return Outcome(result.exit_code, result.stdout, result.stderr, type(raised[-1]) if raised else None)

    def gallery(self, pipeline: FakePipeline | None = None) -> Gallery:
        return Gallery(self.home, pipeline=pipeline or FakePipeline())


@dataclass(frozen=True)
class ThroughTheCli:
    """How the command meets the error, and a pattern its one-line message matches."""

    provoke: Callable[[Shell], Outcome]
    says: str


@dataclass(frozen=True)
class NotThroughTheCli:
    """A class the command cannot meet, why, and what is checked instead."""

    reason: str
    check: Callable[[Shell], None]


# ---- inputs -------------------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


def _animated_gif(shell: Shell) -> Path:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((200, 30, 30), (30, 200, 30))]
    path = shell.tmp / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def _blank(shell: Shell) -> Path:
    path = shell.tmp / "blank.png"
    Image.fromarray(np.full((120, 120, 3), 127, np.uint8)).save(path)
    return path


def _labelled(shell: Shell, people: int, photos_each: int) -> Path:
    root = shell.tmp / "labelled"
    for person in range(people):
        folder = root / f"Person_{person}"
        folder.mkdir(parents=True)
        for number in range(1, photos_each + 1):
            (folder / f"Person_{person}_{number:04d}.png").write_bytes(fake_photo(f"{person}-{number}"))
    return root


# ---- the cases ----------------------------------------------------------------------------


def _schema_from_the_future(shell: Shell) -> Outcome:
    shell.gallery().close()
    with sqlite3.connect(shell.home / "gallery.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00d_from_the_future'")
    return shell("list")


def _not_a_gallery(shell: Shell) -> Outcome:
    shell.home.mkdir()
    (shell.home / "gallery.db").write_bytes(b"these are my holiday notes, not a database\n" * 200)
    return shell("list")


def _write_lock_held_elsewhere(shell: Shell) -> Outcome:
    shell.gallery().close()
    # Another holder really has the write lock; only the wait is cut from the default 60 s.
    shell.monkeypatch.setitem(vars(Store)["open"].__func__.__kwdefaults__, "lock_timeout", 0.2)
    with filelock.FileLock(shell.home / "gallery.db.lock"):
        return shell("enroll", "Ada Lovelace", shell.photo("ada"))


def _home_under_a_file(shell: Shell) -> Outcome:
    shell.file("a-file", b"not a folder")
    shell.home = shell.tmp / "a-file" / "home"
    return shell("list")


def _damaged_stored_embedding(shell: Shell) -> Outcome:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    with sqlite3.connect(shell.home / "gallery.db") as connection:
        connection.execute("UPDATE faces SET embedding = x'00010203'")
    (shell.home / "faces.faiss").unlink()  # so opening rebuilds the index from the stored embeddings
    return shell("list")


def _damaged_stored_chip(shell: Shell) -> Outcome:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada"), pipeline=FakePipeline("older-model")).exit_code == 0
    with sqlite3.connect(shell.home / "gallery.db") as connection:
        connection.execute("UPDATE faces SET chip_jpeg = x'ffd8ffe000104a4649'")  # a JPEG cut after its header
    return shell("reembed")


def _faces_of_another_model(shell: Shell) -> Outcome:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada"), pipeline=FakePipeline("older-model")).exit_code == 0
    return shell("identify", shell.photo("ada"))


def _enrolled_twice(shell: Shell) -> Outcome:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    return shell("enroll", "Ada Lovelace", shell.photo("ada-2"))


def _external_id_twice(shell: Shell) -> Outcome:
    assert shell("enroll", "--external-id", "E-1", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    return shell("enroll", "--external-id", "E-1", "Alan Turing", shell.photo("alan"))


def _same_face_two_names(shell: Shell) -> Outcome:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    # The same pixels in another file: the same face, but not the same photo (PhotoAlreadyEnrolled).
    copy = shell.tmp / "ada-copy.png"
    Image.open(shell.photo("ada")).save(copy, compress_level=1)
    return shell("enroll", "Augusta Ada King", copy)


def _another_persons_photo_added(shell: Shell) -> Outcome:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    return shell("enroll", "--add", "Ada Lovelace", shell.photo("alan"))  # another fake face: ~1.4 away


def _same_photo_added_again(shell: Shell) -> Outcome:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    return shell("enroll", "--add", "Ada Lovelace", shell.photo("ada"))


def _another_external_id_with_add(shell: Shell) -> Outcome:
    assert shell("enroll", "--external-id", "E-1", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    return shell("enroll", "--add", "--external-id", "E9", "Ada Lovelace", shell.photo("ada-2"))


def _malformed_face_record(shell: Shell) -> None:
    with shell.gallery() as g:
        photo = shell.photo("ada")
        face = FakePipeline().faces(photo)[0]
        record = face_record(face, g._pipeline.model_id, "not a sha-256")
        with pytest.raises(gallery.InvalidFaceRecord, match="photo_sha256") as refused:
            g._store.add_person_with_face("Ada Lovelace", record)
        assert type(refused.value) is gallery.InvalidFaceRecord
        assert g.people() == []


def _calibrate_on_four_photos(shell: Shell) -> Outcome:
    # --json: no progress bar, so stderr holds the error alone
    return shell("calibrate", "--json", "--fpir", "0.01", _labelled(shell, people=2, photos_each=2))


def _nan_threshold_stored(shell: Shell) -> Outcome:
    """The issue's damaged rule: a decision_rule whose threshold is NaN (it used to match every stranger)."""
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    record = {"rule": {"kind": "distance_threshold", "threshold": float("nan")}, "provenance": {}}
    connection = sqlite3.connect(shell.home / "gallery.db")
    with connection:
        connection.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES ('decision_rule', ?, '2026-11-29 00:00:00')",
            (json.dumps(record),),
        )
    connection.close()
    return shell("identify", shell.photo("grace"))


def _audit_unwritable_under_required(shell: Shell) -> Outcome:
    def failing(self: Store, events: object) -> None:
        raise E.StorageFailure("attempt to write a readonly database")

    shell.monkeypatch.setattr(Store, "audit_many", failing)
    return shell("--audit", "required", "identify", shell.photo("ada"))


def _pairs(shell: Shell, text: str, *options: str) -> Outcome:
    root = _labelled(shell, people=2, photos_each=2)
    (root / "pairs.txt").write_text(text)
    return shell("eval", "--json", *options, "--pairs", root / "pairs.txt")


def _detector_file_with_one_weight_changed() -> bytes:
    data = bytearray(model_path(DETECTOR_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the convolution weights (raw floats): still parses, to other numbers
    return bytes(data)


# What ``face_recognition_models`` holds in the fresh process of each model-file case.
MODEL_FILES: dict[str, Callable[[], dict[str, bytes]]] = {
    "ModelFilesNotFound": lambda: {},
    "DlibFormatError": lambda: {DETECTOR_FILE: model_path(DETECTOR_FILE).read_bytes()[:1000]},
    "WeightsMismatch": lambda: {DETECTOR_FILE: _detector_file_with_one_weight_changed()},
}


def _start_fresh_process(folder: Path, model_files: dict[str, bytes]) -> subprocess.Popen[str]:
    """``python -m gallery enroll`` with the real pipeline, whose ``face_recognition_models`` holds ``model_files``.

    The package is a stand-in put first on the path, and the weight cache is empty, so the
    models are read from these files and converted, as on a first run.
    """
    models = folder / "site" / "face_recognition_models" / "models"
    models.mkdir(parents=True)
    (models.parent / "__init__.py").write_text("")
    for name, content in model_files.items():
        (models / name).write_bytes(content)
    path = [str(models.parent.parent), str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "GALLERY_CACHE_DIR": str(folder / "empty-cache"),
    }
    command = [sys.executable, "-m", "gallery", "--home", str(folder / "home"), "enroll", "Barack Obama"]
    return subprocess.Popen(
        [*command, str(DATA / "obama.jpg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _used_after_close(shell: Shell) -> None:
    g = shell.gallery()
    g.close()
    with pytest.raises(gallery.StoreClosed):
        g.people()


def _bad_arguments(shell: Shell) -> None:
    with shell.gallery() as g:
        with pytest.raises(gallery.InvalidArgument):
            g.audit_log(limit=-1)
        with pytest.raises(gallery.InvalidArgument):
            g.audit_log(since=datetime(2026, 1, 1))  # naive: ambiguous
    with pytest.raises(gallery.InvalidArgument):
        gallery.set_threads(0)


def _vetoed_by_liveness(shell: Shell) -> None:
    with Gallery(shell.home, pipeline=FakePipeline(), liveness=lambda photo, face: False) as g:
        g.enroll("Ada Lovelace", shell.photo("ada"))
        with pytest.raises(gallery.NotLive):
            g.verify("Ada Lovelace", shell.photo("ada"))


def _folder_deleted_while_open(shell: Shell) -> None:
    with Gallery(shell.home, pipeline=FakePipeline()) as g:
        g.enroll("Ada Lovelace", shell.photo("ada"))
        shutil.rmtree(shell.home)
        with pytest.raises(gallery.GalleryVanished):
            g.enroll("Alan Turing", shell.photo("alan"))


def _unsupported_arrays(shell: Shell) -> None:
    for array in (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 2), np.uint8)):
        with pytest.raises(gallery.UnsupportedImage):
            load_rgb(array)
    with pytest.raises(gallery.UnsupportedImage):
        load_rgb(12345)  # type: ignore[arg-type]


def _index_repaired(shell: Shell) -> None:
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    (shell.home / "faces.faiss").write_bytes(b"garbage" * 100)
    outcome = shell("identify", shell.photo("ada"))
    assert outcome.exit_code == 0 and outcome.stdout.startswith("Ada Lovelace\t"), outcome.stderr


def _never_raised_directly(shell: Shell, error: type[GalleryError]) -> None:
    """A family's base class: no code raises it itself, only its members (each with its own case)."""
    raised = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                raised.add(node.exc.func.id)
    assert error.__name__ not in raised, f"{error.__name__} is raised directly now: give it a CLI case"
    assert error.__subclasses__(), f"{error.__name__} has no members"


def _nobody_listening(shell: Shell) -> Outcome:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return shell.remote(f"http://127.0.0.1:{port}", "list")


class _QuietFileServer(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # its access log would land in the command's captured stderr


def _not_a_gallery_service(shell: Shell) -> Outcome:
    """A real web server, but a plain file server: it answers the API's routes with an HTML 404."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietFileServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return shell.remote(f"http://127.0.0.1:{server.server_address[1]}", "info")
    finally:
        server.shutdown()
        server.server_close()


def _served(shell: Shell, scope: str = "admin", **settings: object) -> tuple[Server, str]:
    """A real service (uvicorn, fake pipeline) on the shell's gallery, with Ada enrolled, and a key of ``scope``."""
    assert shell("enroll", "Ada Lovelace", shell.photo("ada")).exit_code == 0
    key = make_keys(shell.home, {"desk": [scope]})["desk"]
    slow_s = float(settings.pop("slow_s", 0.0))  # type: ignore[arg-type]
    return Server(shell.home, settings=settings, slow_s=slow_s), key


def _served_without_key(shell: Shell) -> Outcome:
    server, _ = _served(shell)
    with server:
        return shell.remote(server.url, "identify", shell.photo("ada"))


def _served_to_a_door_key(shell: Shell) -> Outcome:
    server, key = _served(shell, scope="identify")
    with server:
        return shell.remote(server.url, "list", key=key)


def _served_over_the_rate(shell: Shell) -> Outcome:
    server, key = _served(shell, scope="identify", rate_limit="1/minute")
    with server:
        assert shell.remote(server.url, "identify", shell.photo("ada"), key=key).exit_code == 0
        return shell.remote(server.url, "identify", shell.photo("ada"), key=key)


def _served_a_photo_over_the_body_limit(shell: Shell) -> Outcome:
    server, key = _served(shell, max_body_bytes=4096)
    with server:
        return shell.remote(server.url, "identify", shell.photo("large", side=400), key=key)


def _served_while_busy(shell: Shell) -> Outcome:
    """One worker, no queue, each photo 3 s: a second identify while the first runs is refused."""
    server, key = _served(shell, workers=1, queue=0, slow_s=3.0)
    with server:
        first = threading.Thread(target=lambda: shell.remote(server.url, "identify", shell.photo("ada"), key=key))
        first.start()
        while "gallery_requests_in_flight 1.0" not in httpx.get(f"{server.url}/metrics").text:
            time.sleep(0.02)
        second = shell.remote(server.url, "identify", shell.photo("ada"), key=key)
        first.join()
        return second


def _served_too_slowly(shell: Shell) -> Outcome:
    server, key = _served(shell, request_timeout_s=0.3, slow_s=2.0)
    with server:
        return shell.remote(server.url, "identify", shell.photo("ada"), key=key)


def _served_from_a_gallery_that_cannot_open(shell: Shell) -> Outcome:
    """The service runs, but its gallery folder lies under a file: it never becomes ready."""
    blocker = shell.file("not-a-folder", b"")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "GALLERY_HOME": str(blocker / "home")}
    command = [sys.executable, "-m", "uvicorn", "service_app:app", "--factory", "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=TESTS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/health/live").status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, "the service exited"
                time.sleep(0.1)
        return shell.remote(url, "identify", shell.photo("ada"), key="any key")
    finally:
        server.terminate()
        server.wait(60)


def _family(error: type[GalleryError]) -> NotThroughTheCli:
    return NotThroughTheCli(
        "a family's base class: never raised itself, only its members (each has its own case)",
        lambda shell: _never_raised_directly(shell, error),
    )


def _key_made_twice(shell: Shell) -> Outcome:
    assert shell("keys", "create", "--name", "door-1", "--scope", "identify").exit_code == 0
    return shell("keys", "create", "--name", "door-1", "--scope", "enrol")


E = gallery.errors


def _wrong_database_password(shell: Shell) -> Outcome:
    server = shell.request.getfixturevalue("postgres_server")
    outcome = shell("--db", server.url(password="not-the-password"), "list")
    assert "not-the-password" not in outcome.stderr  # a URL's password never reaches a message
    return outcome


def _replica_older_than_allowed(shell: Shell) -> None:
    url = shell.request.getfixturevalue("postgres_url")
    with Gallery(shell.home, pipeline=FakePipeline(), database_url=url, max_staleness_s=0.2) as g:
        g.enroll("Ada Lovelace", shell.photo("ada"))
        assert g.identify(shell.photo("ada"))[0].match is not None
        g._store.site.stop()  # as if it could not reach the database since
        time.sleep(0.3)
        with pytest.raises(gallery.DataTooStale, match=r"longer than the 0.2 s allowed"):
            g.identify(shell.photo("ada"))


CASES: dict[type[GalleryError], ThroughTheCli | NotThroughTheCli] = {
    E.GalleryError: _family(E.GalleryError),
    E.ImageError: ThroughTheCli(_damaged_stored_chip, r"face \d+'s stored chip cannot be decoded"),
    E.ImageNotFound: ThroughTheCli(lambda shell: shell("identify", shell.tmp / "missing.jpg"), "no such file"),
    E.ImageUnreadable: ThroughTheCli(
        lambda shell: shell("identify", shell.file("letter.jpg", b"Dear visitor, this is not a photo.\n" * 20)),
        "is not an image Pillow can read",
    ),
    E.ImageTooLarge: ThroughTheCli(
        lambda shell: shell("enroll", "Ada Lovelace", shell.file("huge.png", _png_claiming(9000, 9000))),
        r"81,000,000 pixels \(9000x9000\), more than gallery.s limit of 64 MP",
    ),
    E.MultiFrameImage: ThroughTheCli(lambda shell: shell("identify", _animated_gif(shell)), "has 2 frames"),
    E.UnsupportedImage: NotThroughTheCli(
        "the command hands the library file paths, and every pixel mode Pillow decodes converts to RGB; "
        "it is raised for Python API inputs (arrays of another dtype or shape, other objects)",
        _unsupported_arrays,
    ),
    E.InvalidArgument: NotThroughTheCli(
        "click checks every option's type and range before a Gallery method is called (exit 2)", _bad_arguments
    ),
    E.NoFaceFound: ThroughTheCli(lambda shell: shell("enroll", "Ada Lovelace", _blank(shell)), "no face found"),
    E.MultipleFaces: ThroughTheCli(
        lambda shell: shell("enroll", "Two People", DATA / "two_people.jpg", real=True), "holds 2 faces"
    ),
    E.PoorQuality: ThroughTheCli(
        lambda shell: shell("enroll", "Ada Lovelace", shell.photo("tiny", side=40)), "40 px across"
    ),
    E.NotLive: NotThroughTheCli(
        "the liveness check is a Python API hook (Gallery(liveness=...)); the command has none", _vetoed_by_liveness
    ),
    E.LooksLikeSomeoneElse: ThroughTheCli(_same_face_two_names, "identify would answer 'Ada Lovelace' for this face"),
    E.NotTheSamePerson: ThroughTheCli(_another_persons_photo_added, "this face is not 'Ada Lovelace'.*nobody enrolled"),
    E.ModelError: _family(E.ModelError),
    E.ModelFilesNotFound: ThroughTheCli(
        lambda shell: shell.fresh_process("ModelFilesNotFound"),
        f"{DETECTOR_FILE} is missing from the face-recognition-models package",
    ),
    E.DlibFormatError: ThroughTheCli(
        lambda shell: shell.fresh_process("DlibFormatError"), "unexpected end of file|expected .* but found"
    ),
    E.WeightsMismatch: ThroughTheCli(
        lambda shell: shell.fresh_process("WeightsMismatch"), "has SHA-256 [0-9a-f]{64}, expected"
    ),
    E.StoreError: ThroughTheCli(_damaged_stored_embedding, r"face \d+'s embedding has 4 bytes"),
    E.AlreadyEnrolled: ThroughTheCli(_enrolled_twice, "'Ada Lovelace' is already enrolled"),
    E.DuplicateExternalId: ThroughTheCli(_external_id_twice, "external id 'E-1'"),
    E.PersonNotFound: ThroughTheCli(lambda shell: shell("remove", "Nobody"), "'Nobody' is not enrolled"),
    E.SchemaTooNew: ThroughTheCli(_schema_from_the_future, "f00d_from_the_future"),
    E.NotAGallery: ThroughTheCli(_not_a_gallery, "not a readable gallery database"),
    E.StoreBusy: ThroughTheCli(_write_lock_held_elsewhere, r"gallery\.db\.lock for over"),
    E.StoreClosed: NotThroughTheCli(
        "only a Gallery used after close() raises it; each command opens and closes its own", _used_after_close
    ),
    E.ModelMismatch: ThroughTheCli(_faces_of_another_model, "run `gallery reembed`"),
    E.InvalidFaceRecord: NotThroughTheCli(
        "the command stores only the faces the pipeline made; a caller of the store handing it a malformed "
        "record meets it (a bad name meets InvalidName, its subclass, which has its own case)",
        _malformed_face_record,
    ),
    E.InvalidName: ThroughTheCli(
        lambda shell: shell("enroll", os.fsdecode(b"Caf\xe9"), shell.photo("ada")),
        r"name 'Caf\\xe9' holds byte 0xE9 that is not UTF-8",
    ),
    E.PhotoAlreadyEnrolled: ThroughTheCli(
        _same_photo_added_again, r"this photo \(the same file\) is enrolled already, as 'Ada Lovelace''s"
    ),
    E.ExternalIdMismatch: ThroughTheCli(
        _another_external_id_with_add, "'Ada Lovelace' carries external id 'E-1', not 'E9'; adding a photo never"
    ),
    E.IndexFileInvalid: NotThroughTheCli(
        "the store catches it and rebuilds the index from the database; the command succeeds", _index_repaired
    ),
    E.StorageFailure: ThroughTheCli(_home_under_a_file, "cannot create the gallery folder"),
    E.HostNotFound: ThroughTheCli(
        lambda shell: shell("hosts", "forget", "12345678"), "no single host has an id starting '12345678'"
    ),
    E.InvalidDatabaseUrl: ThroughTheCli(
        lambda shell: shell("--db", "mysql://door@db.example/gallery", "list"), "'mysql' is not supported"
    ),
    E.DatabaseLoginRefused: ThroughTheCli(_wrong_database_password, "the server refused the login"),
    E.DatabaseUnavailable: ThroughTheCli(
        lambda shell: shell("--db", f"postgresql://door:secret@127.0.0.1:{free_port()}/gallery", "list"),
        r"the database server cannot be reached: .*127\.0\.0\.1",
    ),
    E.DataTooStale: NotThroughTheCli(
        "a command connects to the database when it starts, so it meets DatabaseUnavailable, never an aged "
        "replica; a long-running Gallery whose follower has stopped does",
        _replica_older_than_allowed,
    ),
    E.AuditNotWritten: ThroughTheCli(
        _audit_unwritable_under_required, "the audit event of this identify could not be written"
    ),
    E.GalleryVanished: NotThroughTheCli(
        "a command opens the gallery for one call; the folder would have to vanish within it",
        _folder_deleted_while_open,
    ),
    E.CalibrationError: ThroughTheCli(_calibrate_on_four_photos, "needs at least 100 stranger photos"),
    E.PairsFormatError: ThroughTheCli(
        lambda shell: _pairs(shell, "Person_0 1 2 3 4 5\n"), r"pair 1 \('Person_0 1 2 3 4 5'\): 6 fields"
    ),
    E.PairsFileUnreadable: ThroughTheCli(
        lambda shell: shell("eval", "--pairs", "/proc/self/mem"),  # a file whose read fails (EIO), even for root
        "cannot read the pairs file /proc/self/mem: Input/output error",
    ),
    E.PhotosMissing: ThroughTheCli(
        lambda shell: _pairs(shell, "Nobody 1 2\n"), "2 of the 2 photos the pairs file names are missing under"
    ),
    E.NoUsablePairs: ThroughTheCli(
        lambda shell: _pairs(shell, "Nobody 1 2\n", "--allow-missing"), "none of the 1 pairs"
    ),
    E.RuleInvalid: ThroughTheCli(
        _nan_threshold_stored, r"decision_rule setting cannot be trusted \(threshold is nan, must be a finite number"
    ),
    E.KeyNameTaken: ThroughTheCli(_key_made_twice, "a key named 'door-1' exists already"),
    E.KeyNotFound: ThroughTheCli(lambda shell: shell("keys", "revoke", "door-9"), "no API key is named 'door-9'"),
    E.ServiceError: _family(E.ServiceError),
    E.ClientError: _family(E.ClientError),
    E.NotAuthenticated: ThroughTheCli(
        _served_without_key, r"this route needs an API key.*\(no key was sent: set \$GALLERY_API_KEY\)"
    ),
    E.ScopeDenied: ThroughTheCli(_served_to_a_door_key, r"API key 'desk' \(identify\) lacks the 'enrol' scope"),
    E.RateLimited: ThroughTheCli(_served_over_the_rate, "desk"),
    E.RequestTooLarge: ThroughTheCli(_served_a_photo_over_the_body_limit, "4,?096"),
    E.ServiceOverloaded: ThroughTheCli(_served_while_busy, "."),
    E.RequestTimedOut: ThroughTheCli(_served_too_slowly, "."),
    E.ServiceNotReady: ThroughTheCli(
        _served_from_a_gallery_that_cannot_open, "the service is not ready: could not start: StorageFailure"
    ),
    E.ServiceUnreachable: ThroughTheCli(
        _nobody_listening, r"cannot reach the gallery service at http://127\.0\.0\.1:\d+: .*refused"
    ),
    E.ServiceResponseInvalid: ThroughTheCli(
        _not_a_gallery_service, r"the server at http://127\.0\.0\.1:\d+ answered HTTP 404 without the gallery's error"
    ),
}


# ---- the tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Outcome]]:
    """``fresh_process(case)``: the model-file case's outcome; the first call starts every case's process at once."""
    running: dict[str, subprocess.Popen[str]] = {}

    def outcome(name: str) -> Outcome:
        if not running:
            for case, files in MODEL_FILES.items():
                running[case] = _start_fresh_process(tmp_path_factory.mktemp(case), files())
        stdout, stderr = running[name].communicate(timeout=300)
        return Outcome(running[name].returncode, stdout, stderr, None)

    yield outcome
    for process in running.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def shell(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_process: Callable[[str], Outcome],
    request: pytest.FixtureRequest,
) -> Iterator[Shell]:
    failures: list[GalleryError] = []
    fail = gallery.cli.context.fail

    def spy(err: GalleryError):  # records which class reached the command, then fails as it would
        failures.append(err)
        fail(err)

    monkeypatch.setattr(gallery.cli.context, "fail", spy)
    yield Shell(tmp_path, failures, monkeypatch, fresh_process, request)


def test_every_error_class_has_a_case() -> None:
    missing = [cls.__name__ for cls in ERROR_CLASSES if cls not in CASES]
    assert not missing, f"add a CLI case (or say why there cannot be one) for {missing}"
    assert set(CASES) == set(ERROR_CLASSES)
    assert {cls.__name__ for cls in ERROR_CLASSES} <= set(gallery.__all__)


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_the_command_reports_each_error_on_one_line_with_its_exit_code(error: type[GalleryError], shell: Shell):
    found = CASES[error]
    if isinstance(found, NotThroughTheCli):
        assert found.reason
        found.check(shell)
        return
    outcome = found.provoke(shell)
    assert outcome.exit_code == (EXIT_NO_FACE if error is gallery.NoFaceFound else EXIT_ERROR), outcome.stderr
    if outcome.raised is not None:  # in-process: the very class reached the command
        assert outcome.raised is error
    assert outcome.stdout == ""
    assert "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr
    assert re.search(found.says, lines[0]), lines[0]
