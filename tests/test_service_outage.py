"""The service over a PostgreSQL gallery through a database outage: doors keep being answered, within the bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import FakePipeline, fake_photo
from pg_server import PostgresServer
from service_harness import Server

from gallery import Gallery


def test_doors_are_answered_through_an_outage_longer_than_the_key_cache(
    own_postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = own_postgres_server
    url = server.new_database()
    home = tmp_path / "host"
    with Gallery(home, pipeline=FakePipeline(), database_url=url) as gallery:
        gallery.enroll("Ada Lovelace", fake_photo("Ada Lovelace"))
        door_key = gallery.hosting.create_key("door-1", ["identify"]).secret
    monkeypatch.setenv("GALLERY_DATABASE_URL", url)
    with Server(home, settings={"key_cache_s": 0.5}) as service, service.client(door_key) as door:
        photo = {"photo": ("ada.png", fake_photo("Ada Lovelace"), "image/png")}
        assert door.post("/v1/identify", files=photo).json()["faces"][0]["match"]["name"] == "Ada Lovelace"
        server.stop("immediate")
        time.sleep(1.0)  # past the key cache: the key's standing can no longer be read
        answer = door.post("/v1/identify", files=photo)
        assert answer.status_code == 200, answer.text
        assert answer.json()["faces"][0]["match"]["name"] == "Ada Lovelace"
        assert answer.json()["data"]["age_s"] > 0.5  # and it says how old its data is
        assert door.get("/health/ready").status_code == 200  # within the maximum staleness
        server.start()
