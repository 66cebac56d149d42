"""``gallery --server URL``: the command as a client of a real gallery service prints what the local command prints.

A real service (uvicorn in a subprocess, ``tests/service_harness.py``) over the fake pipeline
serves a gallery; the client is the real ``python -m gallery --server URL ...`` in a fresh
process each time, and its stdout, stderr and exit code are compared with the local command's
(run in-process over the same fake pipeline) on the same gallery, or, for writes, on a twin
gallery built by the same commands. One test runs the real models on both sides.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakePipeline, fake_photo
from PIL import Image
from service_harness import ROOT, Server, make_keys

from gallery.cli import CliContext, cli

DATA = ROOT / "data"
HEAVY = ("torch", "faiss", "numpy", "sqlalchemy", "PIL")


@dataclass(frozen=True)
class Said:
    """What a command printed, and its exit code."""

    stdout: str
    stderr: str
    exit_code: int


def local(home: Path, *args: object, real: bool = False) -> Said:
    context = CliContext() if real else CliContext(pipeline=FakePipeline())
    result = CliRunner().invoke(cli, ["--home", str(home), *map(str, args)], obj=context)
    return Said(result.stdout, result.stderr, result.exit_code)


def remote(url: str, key: str | None, *args: object, python_options: tuple[str, ...] = ()) -> Said:
    """The real command in a fresh process: ``python -m gallery --server URL ARGS`` with the key in its variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLERY_")} | {"PYTHONPATH": str(ROOT)}
    if key is not None:
        env["GALLERY_API_KEY"] = key
    done = subprocess.run(
        [sys.executable, *python_options, "-m", "gallery", "--server", url, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return Said(done.stdout, done.stderr, done.returncode)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    made = {}
    for name in ("ada", "ada-2", "alan", "grace", "stranger"):
        made[name] = folder / f"{name}.png"
        made[name].write_bytes(fake_photo(name))
    made["blank"] = folder / "blank.png"
    Image.new("RGB", (96, 96), (120, 120, 120)).save(made["blank"])
    made["letter"] = folder / "letter.jpg"
    made["letter"].write_bytes(b"Dear visitor, this is not a photo.\n" * 20)
    return made


def build_gallery(home: Path, photos: dict[str, Path]) -> None:
    assert local(home, "enroll", "Ada Lovelace", photos["ada"]).exit_code == 0
    assert local(home, "enroll", "Alan Turing", photos["alan"], "--external-id", "E-7").exit_code == 0


@dataclass(frozen=True)
class Served:
    home: Path
    url: str
    keys: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("served") / "home"
    build_gallery(home, photos)
    keys = make_keys(home, {"desk": ["admin"], "door": ["identify"]})
    with Server(home, settings={"rate_limit": "1000/second"}) as server:
        yield Served(home, server.url, keys)


READS = {
    "identify": ("identify", "{ada}"),
    "identify --json": ("identify", "--json", "--top-k", "2", "{ada}"),
    "identify a stranger": ("identify", "{stranger}"),
    "identify --json a stranger": ("identify", "--json", "{stranger}"),
    "identify no face": ("identify", "{blank}"),
    "identify --json no face": ("identify", "--json", "{blank}"),
    "identify a missing photo": ("identify", "{missing}"),
    # Not a photo: the service names the upload by the path the client sent, as the local command does.
    "identify a letter": ("identify", "{letter}"),
    "verify a letter": ("verify", "Ada Lovelace", "{letter}"),
    "verify": ("verify", "Ada Lovelace", "{ada}"),
    "verify --json, someone else": ("verify", "--json", "Ada Lovelace", "{alan}"),
    "verify nobody": ("verify", "Nobody", "{ada}"),
    "list": ("list",),
    "list --json": ("list", "--json"),
    "info": ("info",),
    "info --json": ("info", "--json"),
    "log": ("log", "--limit", "4"),
    "log --json, filtered": (
        "log",
        "--json",
        "--action",
        "identify",
        "--person",
        "Ada Lovelace",
        "--since",
        "2020-01-01",
    ),
    "remove nobody": ("remove", "Nobody"),
    "enroll someone enrolled": ("enroll", "Ada Lovelace", "{grace}"),
    "enroll no face": ("enroll", "Grace Hopper", "{blank}"),
    "enroll a bad name": ("enroll", "Grace\nHopper", "{grace}"),
    "enroll a letter": ("enroll", "Grace Hopper", "{letter}"),
}


def filled(args: tuple[str, ...], photos: dict[str, Path]) -> list[str]:
    places = {name.replace("-", "_"): str(path) for name, path in photos.items()}
    places["missing"] = str(photos["ada"].parent / "missing.jpg")
    return [arg.format(**places) for arg in args]


@pytest.mark.parametrize("case", READS)
def test_the_client_says_what_the_local_command_says(served: Served, photos: dict[str, Path], case: str) -> None:
    args = filled(READS[case], photos)
    here = local(served.home, *args)
    there = remote(served.url, served.keys["desk"], *args)
    assert there == here
    assert here.exit_code in (0, 1, 3, 4)


def test_writes_through_the_client_say_what_they_say_on_a_twin_gallery(tmp_path: Path, photos: dict[str, Path]) -> None:
    served_home, twin_home = tmp_path / "served", tmp_path / "twin"
    for home in (served_home, twin_home):
        build_gallery(home, photos)
    keys = make_keys(served_home, {"desk": ["enrol"]})
    steps = [
        ("enroll", "Grace Hopper", photos["grace"]),
        ("enroll", "--json", "--add", "Ada Lovelace", photos["ada-2"]),
        ("enroll", "--add", "Ada Lovelace", photos["ada-2"]),  # the same photo again: PhotoAlreadyEnrolled
        ("enroll", "--add", "--allow-different", "--external-id", "E-7", "Alan Turing", photos["stranger"]),
        ("remove", "--json", "Ada Lovelace"),
        ("remove", "Grace Hopper"),
        ("remove", "Grace Hopper"),
    ]
    with Server(served_home) as server:
        for step in steps:
            there = remote(server.url, keys["desk"], *step)
            here = local(twin_home, *step)
            assert there == here, step
    assert local(served_home, "list").stdout == local(twin_home, "list").stdout
    assert local(served_home, "list").stdout.startswith("Alan Turing\t2 photo(s)\t")


def test_the_client_imports_neither_torch_faiss_numpy_sqlalchemy_nor_pil(
    served: Served, photos: dict[str, Path]
) -> None:
    said = remote(served.url, served.keys["door"], "identify", photos["ada"], python_options=("-X", "importtime"))
    assert said.exit_code == 0 and said.stdout.startswith("Ada Lovelace\t")
    imported = {line.rsplit("|", 1)[-1].strip() for line in said.stderr.splitlines() if line.startswith("import time:")}
    assert "gallery.client.transport" in imported  # the report is read right
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY)
    assert not heavy, heavy


def test_a_refused_key_each_say_so_on_one_line_with_exit_4(served: Served, photos: dict[str, Path]) -> None:
    no_key = remote(served.url, None, "identify", photos["ada"])
    assert no_key.exit_code == 4 and no_key.stdout == ""
    assert no_key.stderr.startswith("Error: ") and no_key.stderr.count("\n") == 1
    assert "GALLERY_API_KEY" in no_key.stderr
    unknown = remote(served.url, "not-a-key", "identify", photos["ada"])
    assert unknown.exit_code == 4 and unknown.stderr.startswith("Error: ") and unknown.stderr.count("\n") == 1
    door_lists = remote(served.url, served.keys["door"], "list")  # an identify key may not list people
    assert door_lists.exit_code == 4 and door_lists.stdout == ""
    assert door_lists.stderr.startswith("Error: ") and door_lists.stderr.count("\n") == 1


def test_commands_that_need_the_galleries_files_refuse_a_server(served: Served, tmp_path: Path) -> None:
    for args in (("enroll-dir", tmp_path), ("reembed",), ("calibrate", tmp_path)):
        said = remote(served.url, served.keys["desk"], *args)
        assert said.exit_code == 2 and "cannot be run with --server" in said.stderr, args
    with_home = remote(served.url, served.keys["desk"], "--home", tmp_path, "list")
    assert with_home.exit_code == 2 and "--home" in with_home.stderr


def test_the_client_and_the_local_command_agree_with_the_real_models(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert local(home, "enroll", "Barack Obama", DATA / "obama.jpg", real=True).exit_code == 0
    assert local(home, "enroll", "Joe Biden", DATA / "biden.jpg", real=True).exit_code == 0
    keys = make_keys(home, {"door": ["identify"]}, real=True)
    with Server(home, real=True) as server:
        for args in (("identify", DATA / "obama2.jpg"), ("identify", "--json", DATA / "two_people.jpg")):
            there = remote(server.url, keys["door"], *args)
            assert there == local(home, *args, real=True)
            assert there.exit_code == 0
