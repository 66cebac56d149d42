"""The HTTP service's routes over a real uvicorn server (fake pipeline): keys and scopes, answers, errors, restart.

One server per module (``tests/service_harness.py``): each test uses names of its own.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakePipeline, fake_photo
from service_harness import Server, make_keys

from gallery.gallery import Gallery

SCOPE_OF_KEY = {"door": ["identify"], "desk": ["enrol"], "root": ["admin"], "gone": ["identify", "enrol"]}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("service") / "home"
    keys = make_keys(home, SCOPE_OF_KEY)
    with Gallery(home, pipeline=FakePipeline()) as gallery:
        gallery.hosting.revoke_key("gone")
    with Server(home) as server:
        with server.client(keys["root"]) as root:
            for name in ("Ada Lovelace", "Alan Turing"):
                assert enrol(root, name).status_code == 200
        yield server, keys


def enrol(client: httpx.Client, name: str, photo: str | None = None, **fields: str) -> httpx.Response:
    return client.post(
        "/v1/enrol", files={"photo": ("p.png", fake_photo(photo or name))}, data={"name": name, **fields}
    )


# Each route, the scope it needs, and a request that is valid for it.
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "identify": ("identify", {"method": "POST", "url": "/v1/identify", "content": fake_photo("Ada Lovelace")}),
    "verify": (
        "identify",
        {
            "method": "POST",
            "url": "/v1/verify",
            "files": {"photo": ("p.png", fake_photo("Ada Lovelace"))},
            "data": {"name": "Ada Lovelace"},
        },
    ),
    "enrol": (
        "enrol",
        {"method": "POST", "url": "/v1/enrol", "files": {"photo": ("p.png", fake_photo("x"))}, "data": {"name": "x"}},
    ),
    "remove": ("enrol", {"method": "POST", "url": "/v1/remove", "json": {"name": "Nobody At All"}}),
    "people": ("enrol", {"method": "GET", "url": "/v1/people"}),
    "person": ("enrol", {"method": "GET", "url": "/v1/people/1"}),
    "info": ("admin", {"method": "GET", "url": "/v1/info"}),
    "audit": ("admin", {"method": "POST", "url": "/v1/audit", "json": {"limit": 5}}),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("key_name", [*sorted(SCOPE_OF_KEY), "no key", "made-up key"])
def test_each_key_reaches_exactly_the_routes_of_its_scopes(service, route: str, key_name: str) -> None:
    server, keys = service
    needed, request = ROUTES[route]
    key = {"no key": None, "made-up key": "gk_" + "x" * 43}.get(key_name, keys.get(key_name))
    request = dict(request)
    if route == "enrol":  # a name of its own per key, so every allowed enrolment is a new person
        request["data"] = {"name": f"Matrix {key_name}"}
        request["files"] = {"photo": ("p.png", fake_photo(f"Matrix {key_name}"))}
    with server.client(key) as client:
        response = client.request(**request)
    if key_name in ("no key", "made-up key", "gone"):
        assert (response.status_code, response.json()["error"]) == (401, "NotAuthenticated")
    elif needed in SCOPE_OF_KEY[key_name] or "admin" in SCOPE_OF_KEY[key_name]:
        assert response.status_code in (200, 404), response.text
        if response.status_code == 404:
            assert response.json()["error"] == "PersonNotFound"
    else:
        assert (response.status_code, response.json()["error"]) == (403, "ScopeDenied")
        assert key_name in response.json()["message"]


def test_a_key_is_read_only_from_the_authorization_header_as_a_bearer_token(service) -> None:
    server, keys = service
    with server.client() as client:
        for header in (keys["door"], f"Basic {keys['door']}", "Bearer", f"Bearer{keys['door']}"):
            response = client.post(
                "/v1/identify", content=fake_photo("Ada Lovelace"), headers={"Authorization": header}
            )
            assert response.status_code == 401, header
        # Never from the URL.
        response = client.post(f"/v1/identify?key={keys['door']}", content=fake_photo("Ada Lovelace"))
        assert response.status_code == 401


def test_identify_answers_the_json_of_identify_plus_the_datas_version_and_age(service) -> None:
    server, keys = service
    with server.client(keys["door"]) as door:
        multipart = door.post(
            "/v1/identify", files={"photo": ("p.png", fake_photo("Alan Turing"))}, params={"top_k": 2}
        )
        raw = door.post("/v1/identify", content=fake_photo("Alan Turing"), params={"top_k": 2})
        stranger = door.post("/v1/identify", content=fake_photo("a stranger"))
        blank = door.post("/v1/identify", content=_blank_png())
    assert multipart.status_code == raw.status_code == 200
    assert multipart.json()["faces"] == raw.json()["faces"]
    (face,) = raw.json()["faces"]
    assert set(face) == {"box", "candidates", "match", "outcome", "confidence", "rule", "data"}
    assert face["data"] == raw.json()["data"]  # the data each face was decided on is the answer's
    assert face["outcome"] == "match" and face["match"]["name"] == "Alan Turing"
    assert len(face["candidates"]) == 2
    assert raw.json()["data"]["version"] >= 2 and raw.json()["data"]["age_s"] >= 0
    assert stranger.json()["faces"][0]["outcome"] == "unknown"
    assert blank.json()["faces"] == []


def test_enrol_and_verify_answer_what_the_commands_print_with_json(service) -> None:
    server, keys = service
    with server.client(keys["desk"]) as desk, server.client(keys["door"]) as door:
        first = enrol(desk, "Grace Hopper")
        again = enrol(desk, "Grace Hopper", photo="Grace Hopper 2")
        added = enrol(desk, "Grace Hopper", photo="Grace Hopper 2", add="true", allow_different="true")
        bad_flag = enrol(desk, "Grace Hopper", photo="Grace Hopper 3", add="maybe")
        verified = door.post(
            "/v1/verify", files={"photo": ("p.png", fake_photo("Grace Hopper"))}, data={"name": "Grace Hopper"}
        )
        rejected = door.post(
            "/v1/verify", files={"photo": ("p.png", fake_photo("Alan Turing"))}, data={"name": "Grace Hopper"}
        )
    assert first.status_code == 200 and first.json()["new_person"] is True
    assert set(first.json()) == {"name", "person_id", "face_id", "box", "new_person", "resembles", "domain"}
    assert (again.status_code, again.json()["error"]) == (409, "AlreadyEnrolled")
    assert added.status_code == 200 and added.json()["new_person"] is False
    assert (bad_flag.status_code, bad_flag.json()["error"]) == (400, "InvalidArgument")
    assert verified.json()["verified"] is True and rejected.json()["verified"] is False
    assert set(verified.json()) == {"name", "person_id", "verified", "distance", "threshold", "box"}


def test_remove_answers_the_erasure_receipt_and_the_person_is_gone(service) -> None:
    server, keys = service
    with server.client(keys["desk"]) as desk, server.client(keys["door"]) as door:
        enrolled = enrol(desk, "Erased Person").json()
        receipt = desk.post("/v1/remove", json={"name": "Erased Person"})
        again = desk.post("/v1/remove", json={"name": "Erased Person"})
        after = door.post("/v1/identify", content=fake_photo("Erased Person"))
        person = desk.get(f"/v1/people/{enrolled['person_id']}")
    assert receipt.status_code == 200
    assert receipt.json() == {
        "name": "Erased Person",
        "person_id": enrolled["person_id"],
        "faces_removed": 1,
        "pending": [],
        "erasure_complete": True,
    }
    assert (again.status_code, again.json()["error"]) == (404, "PersonNotFound")
    assert all(c["name"] != "Erased Person" for c in after.json()["faces"][0]["candidates"])
    assert (person.status_code, person.json()["error"]) == (404, "PersonNotFound")


def test_every_change_is_audited_with_the_name_of_the_key_that_made_it(service) -> None:
    server, keys = service
    with server.client(keys["desk"]) as desk:
        enrol(desk, "Audited Person")
        desk.post("/v1/remove", json={"name": "Audited Person"})
    with server.client(keys["root"]) as root:
        events = root.post("/v1/audit", json={"person": "Audited Person"}).json()
        keys_made = root.post("/v1/audit", json={"action": "key"}).json()
    assert [(e["action"], e["outcome"], e["detail"]["by_key"]) for e in events] == [
        ("remove", "removed", "desk"),
        ("enroll", "enrolled", "desk"),
    ]
    assert {(e["outcome"], e["detail"]["key"]) for e in keys_made} >= {("created", "door"), ("revoked", "gone")}


def test_people_and_info_answer_the_commands_json(service) -> None:
    server, keys = service
    with server.client(keys["root"]) as root:
        people = root.get("/v1/people").json()
        ada = next(p for p in people if p["name"] == "Ada Lovelace")
        one = root.get(f"/v1/people/{ada['id']}").json()
        info = root.get("/v1/info").json()
    assert one == ada
    assert set(ada) == {"id", "name", "external_id", "created_at", "updated_at", "face_count"}
    assert info["people"] == len(people) and info["schema_revision"] == "0003"


@pytest.mark.parametrize(
    ("request_", "status", "error"),
    [
        ({"method": "POST", "url": "/v1/identify", "content": b"not a photo"}, 422, "ImageUnreadable"),
        ({"method": "POST", "url": "/v1/identify", "content": b""}, 422, "ImageUnreadable"),
        ({"method": "POST", "url": "/v1/identify?top_k=0", "content": b"x"}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/identify?upsample=abc", "content": b"x"}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/verify", "content": b"x"}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/enrol", "data": {"name": "No Photo"}}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/remove", "content": b"{not json"}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/remove", "json": ["a list"]}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/remove", "json": {"name": 7}}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/remove", "json": {"name": ""}}, 422, "InvalidName"),
        ({"method": "POST", "url": "/v1/audit", "json": {"since": "2026-01-01"}}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/audit", "json": {"limit": -1}}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/audit", "json": {"limit": 2**64}}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/audit", "json": {"limit": "50"}}, 400, "InvalidArgument"),
        ({"method": "POST", "url": "/v1/audit", "json": {"limit": True}}, 400, "InvalidArgument"),
        ({"method": "GET", "url": "/v1/people/0"}, 400, "InvalidArgument"),
        ({"method": "GET", "url": "/v1/people/abc"}, 400, "InvalidArgument"),
        ({"method": "GET", "url": "/v1/nothing-here"}, 404, "NoSuchRoute"),
        ({"method": "DELETE", "url": "/v1/people"}, 405, "MethodNotAllowed"),
    ],
)
def test_bad_requests_get_a_documented_status_and_an_error_body(service, request_, status: int, error: str) -> None:
    server, keys = service
    with server.client(keys["root"]) as root:
        response = root.request(**request_)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert response.json()["message"]


def test_a_photo_without_a_face_at_enrolment_is_422_no_face_found(service) -> None:
    server, keys = service
    with server.client(keys["desk"]) as desk:
        response = desk.post("/v1/enrol", files={"photo": ("p.png", _blank_png())}, data={"name": "Blank"})
    assert (response.status_code, response.json()["error"]) == (422, "NoFaceFound")


def test_health_metrics_and_the_openapi_schema_need_no_key(service) -> None:
    server, _ = service
    with server.client() as client:
        assert client.get("/health/live").json() == {"status": "alive"}
        assert client.get("/health/ready").json() == {"status": "ready"}
        schema = client.get("/openapi.json").json()
        metrics = client.get("/metrics").text
    assert {"/v1/identify", "/v1/verify", "/v1/enrol", "/v1/remove", "/v1/people", "/v1/info", "/v1/audit"} <= set(
        schema["paths"]
    )
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for name in (
        'gallery_http_requests_total{route="/v1/identify",status="200"}',
        'gallery_decisions_total{action="identify",outcome="match"}',
        "gallery_faces_per_photo_bucket",
        "gallery_photos_without_face_total",
        "gallery_queue_depth",
        "gallery_embed_batch_size_bucket",
        "gallery_index_version",
        "gallery_data_age_seconds",
        "gallery_domain_crowded 0.0",  # the service's fake faces are far apart, as calibrated
        "gallery_domain_scale 1.0",
    ):
        assert name in metrics, name


def test_the_gallery_survives_a_restart_of_the_service(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"root": ["admin"]})
    with Server(home) as first, first.client(keys["root"]) as root:
        assert enrol(root, "Kept Person").status_code == 200
        people_before = root.get("/v1/people").json()
    assert first.stop() == -signal.SIGTERM  # uvicorn shut down gracefully, then re-raised the signal
    assert "Application shutdown complete" in first.output()
    with Server(home) as second, second.client(keys["root"]) as root:
        assert root.get("/v1/people").json() == people_before
        # The audit events of the first run were written at its shutdown.
        assert root.post("/v1/audit", json={"person": "Kept Person"}).json()[0]["outcome"] == "enrolled"
        (face,) = root.post("/v1/identify", content=fake_photo("Kept Person")).json()["faces"]
        assert face["match"]["name"] == "Kept Person"


def _blank_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()
