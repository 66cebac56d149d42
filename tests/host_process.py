"""One host of a site, as a process of its own: a home folder, one PostgreSQL database, commands on stdin.

``Host`` (the test's side) starts ``python tests/host_process.py`` and talks to it in JSON
lines: each command gets one answer, ``{"ok": ...}`` or ``{"error": "ClassName", "message": ...}``.
The process opens a ``Store`` (faces made from names with ``vector_of``: cheap, no torch) or,
with ``gallery=True``, a ``Gallery`` on the fake pipeline (tests/fakes.py), whose photos are
``fake_photo(name)``. Times it reports are ``time.monotonic()``, one clock for every process of
the machine, so the test can time a change from one host to another.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "host-test-model"
FOUND_BELOW = 1e-4  # a search hit this close is the same face: the person is "recognised"


def vector_of(name: str) -> np.ndarray:
    """The one face of ``name`` (store-level hosts): distinct names are about 1.4 apart."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(scale=0.1, size=128).astype(np.float32)


class Host:
    """The test's handle on a host process."""

    def __init__(self, home: Path, url: str, *, gallery: bool = False, **options: Any) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.log = home.parent / f"{home.name}.stderr"
        here = Path(__file__).resolve().parent
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
        arguments = json.dumps({"home": str(home), "url": url, "gallery": gallery, "options": options})
        self.process = subprocess.Popen(
            [sys.executable, __file__, arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("ab"),
            text=True,
            env=environment,
        )
        self.opened = self.receive()  # waits for the store to open: {"generation": ...} or an error

    def send(self, command: str, **arguments: Any) -> None:
        """Send a command without waiting for its answer (``receive`` it later)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"command": command, **arguments}) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the host process ended (exit {self.process.wait()}): {self.log.read_text()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, command: str, **arguments: Any) -> Any:
        """Run a command and return its result; a gallery error is raised as an AssertionError naming it."""
        self.send(command, **arguments)
        answer = self.receive()
        if "error" in answer:
            raise AssertionError(f"{command} failed on {self.home.name}: {answer['error']}: {answer['message']}")
        return answer["ok"]

    def attempt(self, command: str, **arguments: Any) -> dict[str, Any]:
        """Run a command and return its raw answer (an error is an answer)."""
        self.send(command, **arguments)
        return self.receive()

    def close(self) -> None:
        """Close the store cleanly and end the process."""
        if self.process.poll() is None:
            self.send("exit")
            self.process.wait(timeout=60)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=60)


# ---- the host process ------------------------------------------------------------------------


class _Served:
    """What a host process does with its store or gallery."""

    def __init__(self, home: str, url: str, gallery: bool, options: dict[str, Any]) -> None:
        self.gallery = None
        if gallery:
            from fakes import FakePipeline

            from gallery.gallery import Gallery

            self.gallery = Gallery(home, pipeline=FakePipeline(), database_url=url, **options)
            self.store = self.gallery._store
        else:
            from gallery.store import Store

            self.store = Store.open(home, model=MODEL, database_url=url, **options)

    def open(self) -> dict[str, Any]:
        return {"generation": self.store.data_state()[0], "index_repair": self.store.index_repair}

    def enroll(self, names: list[str]) -> dict[str, Any]:
        """Enrol each name, one transaction each; errors are collected, not raised."""
        errors, began = [], time.monotonic()
        for name in names:
            try:
                if self.gallery is not None:
                    from fakes import fake_photo

                    self.gallery.enroll(name, fake_photo(name))
                else:
                    self.store.add_person_with_face(name, _face(name))
            except Exception as error:
                errors.append(f"{name}: {type(error).__name__}: {error}")
        return {"errors": errors, "began": began}

    def remove(self, name: str) -> dict[str, Any]:
        began = time.monotonic()
        if self.gallery is not None:
            pending = list(self.gallery.remove(name).pending)
        else:
            pending = list(self.store.remove_person(name).pending)
        return {"began": began, "pending": pending}

    def identify(self, name: str) -> str | None:
        """Who the host recognises in ``name``'s face: a name, or None."""
        if self.gallery is not None:
            from fakes import fake_photo

            (face,) = self.gallery.identify(fake_photo(name))
            return face.match.name if face.match is not None else None
        hits = self.store.search(vector_of(name), 1)[0]
        return hits[0].name if hits and hits[0].distance < FOUND_BELOW else None

    def await_identify(self, name: str, expected: str | None, timeout_s: float) -> dict[str, Any]:
        """Identify ``name`` until the answer is ``expected``; when it was first seen, or a timeout.

        A refusal (the replica too stale, after an outage) counts as "not yet".
        """
        from gallery.errors import GalleryError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                answer: str | None = self.identify(name)
            except GalleryError as error:
                answer = f"{type(error).__name__}: {error}"
            now = time.monotonic()
            if answer == expected:
                return {"seen": now}
            if now > deadline:
                return {"seen": None, "answer": answer}
            time.sleep(0.002)

    def identify_until(self, stop_file: str, names: list[str]) -> dict[str, Any]:
        """A door: identify ``names`` over and over until ``stop_file`` exists; a match must name the right person."""
        calls, wrong = 0, []
        while not os.path.exists(stop_file):
            for name in names:
                answer = self.identify(name)
                calls += 1
                if answer is not None and answer != name:
                    wrong.append(f"{name}'s face recognised as {answer}")
            time.sleep(0.01)
        return {"calls": calls, "wrong": wrong}

    def state(self) -> dict[str, Any]:
        generation, age_s = self.store.data_state()
        return {"generation": generation, "age_s": age_s}

    def check(self, settle_s: float = 5.0) -> dict[str, Any]:
        """What the host holds against the database, once it agrees or ``settle_s`` passed (its follower
        applies the last writes of other hosts within the wake-up bound)."""
        deadline = time.monotonic() + settle_s
        while (problems := self.store.consistency_problems()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {
            "problems": problems,
            "people": sorted(p.name for p in self.store.people()),
            "indexed": self.store.stats().indexed_faces,
            "index_repair": self.store.index_repair,
        }

    def close(self) -> None:
        (self.gallery or self.store).close()


def _face(name: str) -> Any:
    from records import face_record

    return face_record(vector_of(name), MODEL)


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(arguments: dict[str, Any]) -> None:
    try:
        served = _Served(arguments["home"], arguments["url"], arguments["gallery"], arguments["options"])
        _answer({"ok": served.open()})
    except Exception as error:
        _answer({"error": type(error).__name__, "message": str(error)})
        return
    for line in sys.stdin:
        request = json.loads(line)
        command = request.pop("command")
        if command == "exit":
            break
        try:
            _answer({"ok": getattr(served, command)(**request)})
        except Exception as error:
            _answer({"error": type(error).__name__, "message": str(error)})
    served.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
