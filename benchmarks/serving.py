"""``gallery serve`` for a benchmark: started on a free loopback port, waited for until ready, stopped after.

Standard library only, so a benchmark timing cold commands loads nothing more itself.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence

READY_WITHIN_S = 300  # loading the models and a large index on a busy machine


@contextlib.contextmanager
def gallery_service(python: str, arguments: Sequence[str], env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``python -m gallery *arguments --port P`` (``arguments`` end with ``serve`` and its options), ready.

    Yields the service's URL and the server's pid; the server's own output goes to stderr.

    Raises:
        RuntimeError: the server exited, or was not ready within ``READY_WITHIN_S``.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [python, "-m", "gallery", *arguments, "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while not _ready(url):
            if server.poll() is not None:
                raise RuntimeError(f"gallery serve exited with {server.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gallery serve was not ready within {READY_WITHIN_S} s")
            time.sleep(0.2)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(60)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:  # not listening yet, or not ready (503)
        return False
