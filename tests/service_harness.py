"""A real gallery service for tests: uvicorn in a subprocess on a free loopback port, driven with httpx.

``Server`` starts ``tests/service_app.py`` (the fake pipeline) or ``python -m gallery serve``
(the real models), waits for ``/health/ready`` and stops it with SIGTERM (a graceful shutdown,
checked: the process must exit 0). Keys are made through ``Gallery.hosting`` on the same home,
as ``gallery keys create`` does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from fakes import FakePipeline

from gallery.gallery import Gallery

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
STARTUP_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_keys(home: Path, scopes: dict[str, list[str]], *, real: bool = False) -> dict[str, str]:
    """Name -> key, one key per entry, made in ``home`` as ``gallery keys create`` does."""
    with Gallery(home, pipeline=None if real else FakePipeline()) as gallery:
        return {name: gallery.hosting.create_key(name, wanted).secret for name, wanted in scopes.items()}


class Server:
    """A service on ``home`` in its own process; ``url`` once started."""

    def __init__(
        self, home: Path, *, real: bool = False, settings: dict[str, Any] | None = None, slow_s: float = 0.0
    ) -> None:
        self.home = home
        self.real = real
        self.settings = settings or {}
        self.slow_s = slow_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home.parent / f"server-{self.port}.log"

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, *, until: str = "/health/ready") -> None:
        """Start the server and wait until ``until`` answers 200."""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
            "GALLERY_HOME": str(self.home),
            "GALLERY_SERVICE_SETTINGS": json.dumps(self.settings),
            "GALLERY_TEST_SLOW_S": str(self.slow_s),
            "GALLERY_THREADS": "2",
        }
        if self.real:
            options = [f"--{name.replace('_', '-')}={value}" for name, value in _cli_options(self.settings).items()]
            command = [sys.executable, "-m", "gallery", "serve", "--port", str(self.port), *options]
        else:
            command = [sys.executable, "-m", "uvicorn", "service_app:app", "--factory", "--port", str(self.port)]
            command += ["--host", "127.0.0.1", "--log-level", "info", "--no-access-log"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, cwd=TESTS, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}{until}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {STARTUP_S} s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, then wait: returns the exit code (after a graceful shutdown uvicorn re-raises the signal: -15)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=options.pop("timeout", 60), **options)


def _cli_options(settings: dict[str, Any]) -> dict[str, Any]:
    names = {"request_timeout_s": "timeout", "key_cache_s": "key_cache", "rate_limit": "rate_limit"}
    return {names.get(name, name): value for name, value in settings.items()}
