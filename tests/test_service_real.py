"""``gallery serve`` with the real models, in a real process: enrol and identify real faces over HTTP."""

from __future__ import annotations

from pathlib import Path

from service_harness import Server, make_keys

DATA = Path(__file__).resolve().parent.parent / "data"


def test_gallery_serve_enrols_and_identifies_real_faces_with_the_real_models(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"desk": ["enrol"], "door": ["identify"]}, real=True)
    server = Server(home, real=True)
    with server, server.client(keys["desk"]) as desk, server.client(keys["door"]) as door:
        for name, photo in (("Barack Obama", "obama.jpg"), ("Joe Biden", "biden.jpg")):
            response = desk.post(
                "/v1/enrol", files={"photo": (photo, (DATA / photo).read_bytes())}, data={"name": name}
            )
            assert response.status_code == 200, response.text
        obama = door.post("/v1/identify", content=(DATA / "obama2.jpg").read_bytes())
        before = embedded(door.get("/metrics").text)
        group = door.post("/v1/identify", files={"photo": ("g.jpg", (DATA / "two_people.jpg").read_bytes())})
        metrics = door.get("/metrics").text
    assert obama.status_code == 200
    (face,) = obama.json()["faces"]
    assert face["outcome"] == "match" and face["match"]["name"] == "Barack Obama"
    assert len(group.json()["faces"]) == 2
    assert "gallery_faces_per_photo_count 2.0" in metrics
    # The faces went through the service's batching embedder, which reported its pass.
    assert embedded(metrics) == (before[0] + 1, before[1] + 2)
    assert "gallery_embed_queued_chips 0.0" in metrics


def embedded(metrics: str) -> tuple[float, float]:
    """(passes, chips) of the embedding batches the service reported."""
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("gallery_embed_batch_size_"))
    return float(values["gallery_embed_batch_size_count"]), float(values["gallery_embed_batch_size_sum"])
