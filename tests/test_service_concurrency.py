"""16 clients at once against one real service, enrolling, identifying and removing: nothing lost or doubled, no 500."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fakes import fake_photo
from service_harness import Server, make_keys

CLIENTS = 16
PEOPLE_PER_CLIENT = 4


def test_sixteen_clients_enrolling_identifying_and_removing_at_once_lose_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"desk": ["enrol", "identify"]})
    settings = {"workers": 4, "queue": 64, "rate_limit": "100000/minute"}
    with Server(home, settings=settings) as server:

        def client_run(client_number: int) -> list[tuple[str, int, dict]]:
            seen = []
            with server.client(keys["desk"]) as desk:
                for n in range(PEOPLE_PER_CLIENT):
                    name = f"Person {client_number}-{n}"
                    photo = fake_photo(name)
                    enrolled = desk.post("/v1/enrol", files={"photo": ("p.png", photo)}, data={"name": name})
                    twice = desk.post("/v1/enrol", files={"photo": ("p.png", photo)}, data={"name": name})
                    found = desk.post("/v1/identify", content=photo)
                    seen += [("enrol", enrolled.status_code, enrolled.json())]
                    seen += [("enrol again", twice.status_code, twice.json())]
                    seen += [("identify", found.status_code, found.json())]
                    if n % 2:  # every other person is removed again
                        removed = desk.post("/v1/remove", json={"name": name})
                        seen += [("remove", removed.status_code, removed.json())]
            return seen

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [answer for client in pool.map(client_run, range(CLIENTS)) for answer in client]
        with server.client(keys["desk"]) as desk:
            people = desk.get("/v1/people").json()

    assert all(status != 500 for _, status, _ in answers)
    by_kind: dict[str, list[tuple[int, dict]]] = {}
    for kind, status, body in answers:
        by_kind.setdefault(kind, []).append((status, body))
    assert {status for status, _ in by_kind["enrol"]} == {200}
    assert {(status, body["error"]) for status, body in by_kind["enrol again"]} == {(409, "AlreadyEnrolled")}
    for status, body in by_kind["identify"]:
        assert status == 200 and body["faces"][0]["outcome"] == "match"
    assert all(status == 200 and body["erasure_complete"] for status, body in by_kind["remove"])
    kept = {f"Person {c}-{n}" for c in range(CLIENTS) for n in range(PEOPLE_PER_CLIENT) if n % 2 == 0}
    names = [p["name"] for p in people]
    assert sorted(names) == sorted(kept)  # nothing lost, nothing duplicated, every removal done
    assert all(p["face_count"] == 1 for p in people)
