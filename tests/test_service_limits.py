"""The service's limits over a real uvicorn server: body size (413), rate (429), overload (503), time (504), revocation.

Overload and timeouts need requests that take a while: the server's fake pipeline sleeps per photo
(``GALLERY_TEST_SLOW_S``), a stand-in for the real models' cost.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fakes import FakePipeline, fake_photo
from service_harness import Server, make_keys

import gallery.errors
from gallery.errors import GalleryError
from gallery.gallery import Gallery
from gallery.service.errors import status_of


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"door": ["identify"]})
    with Server(home, settings={"max_body_bytes": 50_000}) as server, server.client(keys["door"]) as door:
        declared = door.post("/v1/identify", content=b"\0" * 50_001)

        def chunks():  # no Content-Length: the limit is counted as the body streams in
            for _ in range(20):
                yield b"\0" * 10_000

        streamed = door.post("/v1/identify", content=chunks())
        multipart = door.post("/v1/identify", files={"photo": ("p.png", b"\0" * 60_000)})
        within = door.post("/v1/identify", content=fake_photo("someone"))
    for response in (declared, streamed, multipart):
        assert (response.status_code, response.json()["error"]) == (413, "RequestTooLarge")
        assert "50,000 bytes" in response.json()["message"]
    assert within.status_code == 200


def test_identify_and_verify_share_a_per_key_rate_limit_answered_429(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"door-1": ["identify"], "door-2": ["identify"]})
    server = Server(home, settings={"rate_limit": "3/minute"})
    with server, server.client(keys["door-1"]) as door_1, server.client(keys["door-2"]) as door_2:
        answers = [door_1.post("/v1/identify", content=fake_photo("x")).status_code for _ in range(3)]
        verify = door_1.post("/v1/verify", files={"photo": ("p.png", fake_photo("x"))}, data={"name": "x"})
        other_key = door_2.post("/v1/identify", content=fake_photo("x"))
    assert answers == [200, 200, 200]
    assert (verify.status_code, verify.json()["error"]) == (429, "RateLimited")
    assert int(verify.headers["Retry-After"]) >= 1
    assert other_key.status_code == 200  # the limit is per key


def test_overload_is_answered_503_at_once_and_nothing_accepted_is_lost(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"door": ["identify"]})
    settings = {"workers": 1, "queue": 2, "rate_limit": "1000/second"}
    with Server(home, settings=settings, slow_s=0.5) as server, server.client(keys["door"]) as door:

        def ask(_: int) -> tuple[int, str, float]:
            started = time.perf_counter()
            response = door.post("/v1/identify", content=fake_photo("x"))
            return response.status_code, response.json().get("error", ""), time.perf_counter() - started

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(8)))
        metrics = door.get("/metrics").text
    accepted = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] == 503]
    assert len(accepted) + len(refused) == 8, answers
    assert 1 <= len(accepted) <= 3 + 1 and len(refused) >= 4  # one worker, two waiting (a slot may free meanwhile)
    assert {error for _, error, _ in refused} == {"ServiceOverloaded"}
    assert max(seconds for *_, seconds in refused) < 0.5  # refused at once, not after queueing
    assert 'gallery_http_requests_total{route="/v1/identify",status="503"}' in metrics


def test_a_read_slower_than_the_timeout_is_answered_504_and_the_service_recovers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"door": ["identify"]})
    with Server(home, settings={"request_timeout_s": 0.3}, slow_s=1.0) as server, server.client(keys["door"]) as door:
        slow = door.post("/v1/identify", content=fake_photo("x"))
        time.sleep(1.0)
        health = door.get("/health/ready")
    assert (slow.status_code, slow.json()["error"]) == (504, "RequestTimedOut")
    assert health.status_code == 200


def test_a_revoked_key_stops_working_within_the_key_cache_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"door": ["identify"]})
    with Server(home, settings={"key_cache_s": 1.0}) as server, server.client(keys["door"]) as door:
        assert door.post("/v1/identify", content=fake_photo("x")).status_code == 200
        with Gallery(home, pipeline=FakePipeline()) as other_host:  # `gallery keys revoke door` elsewhere
            other_host.hosting.revoke_key("door")
        revoked_at = time.monotonic()
        while door.post("/v1/identify", content=fake_photo("x")).status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "the revoked key kept working past the key cache time"
            time.sleep(0.05)
        response = door.post("/v1/identify", content=fake_photo("x"))
    assert (response.status_code, response.json()["error"]) == (401, "NotAuthenticated")


def test_a_service_whose_gallery_cannot_be_opened_stays_up_and_says_why_it_is_not_ready(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "gallery.db").write_bytes(b"this is not a gallery database" * 100)
    server = Server(home)
    server.start(until="/health/live")
    try:
        with server.client("gk_any") as client:
            deadline = time.monotonic() + 30
            while "NotAGallery" not in (ready := client.get("/health/ready")).text and time.monotonic() < deadline:
                time.sleep(0.1)
            route = client.get("/v1/people")
    finally:
        server.stop()
    assert (ready.status_code, ready.json()["error"]) == (503, "ServiceNotReady")
    assert "NotAGallery" in ready.json()["message"]
    assert (route.status_code, route.json()["error"]) == (503, "ServiceNotReady")


@pytest.mark.parametrize(
    "error",
    [
        cls
        for cls in vars(gallery.errors).values()
        if isinstance(cls, type)
        and issubclass(cls, GalleryError)
        and cls is not GalleryError
        and not issubclass(cls, gallery.errors.ClientError)  # the client's, about the service: never answered
    ],
    ids=lambda cls: cls.__name__,
)
def test_every_error_class_answers_a_documented_status_never_500(error: type[GalleryError]) -> None:
    instance = error.__new__(error)
    assert 400 <= status_of(instance) < 500 or status_of(instance) in (503, 504)
