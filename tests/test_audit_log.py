"""The audit log's read API: newest first, filtered by action, person, outcome and time, in SQL (SQLite's and
PostgreSQL's: the JSON of an identify's faces is read by each engine's own functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from backends import Database
from test_store import MODEL, embedding, face

from gallery.store import AuditEvent, InvalidFaceRecord, Store, StoreClosed


@pytest.fixture
def store(tmp_path, database: Database):
    with database.open(tmp_path / "home", model=MODEL) as opened:
        yield opened


def _identify(faces: list[tuple[str, int | None]], first_name: str | None = None) -> tuple[str, dict]:
    """An identify event as ``Gallery.identify`` records it: per-face outcomes joined, the first match named."""
    first = faces[0][1]
    return (
        "identify",
        {
            "outcome": ",".join(outcome for outcome, _ in faces),
            "person_name": first_name if first is not None else None,
            "person_id": first,
            "model": MODEL,
            "detail": {"faces": [{"outcome": o, "person_id": p, "distance": 0.3} for o, p in faces]},
        },
    )


@pytest.fixture
def logged(store: Store) -> dict[str, int]:
    """Ada and Grace enrolled; Ada identified alone, as a second face, then removed; a stranger seen."""
    ada, _ = store.add_person_with_face("Ada", face(embedding(1)))
    grace, _ = store.add_person_with_face("Grace", face(embedding(2)))
    store.audit_many(
        [
            ("enroll", {"outcome": "enrolled", "person_name": "Ada", "person_id": ada}),
            ("enroll", {"outcome": "enrolled", "person_name": "Grace", "person_id": grace}),
            _identify([("match", ada)], "Ada"),
            _identify([("unknown", None)]),
            _identify([("match", grace), ("match", ada)], "Grace"),
            (
                "verify",
                {"outcome": "rejected", "person_name": "Grace", "person_id": grace, "detail": {"distance": 0.9}},
            ),
            ("identify", {"outcome": "no_face"}),
        ]
    )
    store.remove_person("Ada")
    store.audit_many([("remove", {"outcome": "removed", "person_name": "Ada", "person_id": ada})])
    return {"Ada": ada, "Grace": grace}


def test_the_log_reads_newest_first_as_typed_events_with_aware_times(store: Store, logged: dict[str, int]) -> None:
    events = store.audit_log()
    assert all(isinstance(e, AuditEvent) for e in events)
    assert [e.action for e in events][:2] == ["remove", "identify"]
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in events)
    assert len(store.audit_log(limit=3)) == 3
    assert store.audit_log(limit=0) == []
    assert len(store.audit_log(limit=None)) == 8


def test_a_person_filter_finds_every_event_about_them_even_after_their_removal(
    store: Store, logged: dict[str, int]
) -> None:
    ada = store.audit_log(person="Ada")
    # enroll, identified alone, identified as the second face of a photo, removed
    assert [(e.action, e.outcome) for e in ada] == [
        ("remove", "removed"),
        ("identify", "match,match"),
        ("identify", "match"),
        ("enroll", "enrolled"),
    ]
    assert [e.action for e in store.audit_log(person=" Grace ")] == ["verify", "identify", "enroll"]
    assert store.audit_log(person="Nobody") == []


def test_a_person_filter_matches_names_as_the_store_keeps_them(store: Store) -> None:
    store.add_person_with_face("José", face(embedding(1)))  # composed
    store.audit_many([("enroll", {"outcome": "enrolled", "person_name": "José", "person_id": 1})])
    assert [e.action for e in store.audit_log(person="Jose\u0301")] == ["enroll"]  # decomposed
    with pytest.raises(InvalidFaceRecord):
        store.audit_log(person="")


def test_an_outcome_filter_takes_any_face_of_an_identify(store: Store, logged: dict[str, int]) -> None:
    assert [e.outcomes for e in store.audit_log(outcome="match")] == [("match", "match"), ("match",)]
    assert [e.outcome for e in store.audit_log(outcome="unknown")] == ["unknown"]
    assert [e.action for e in store.audit_log(outcome="rejected")] == ["verify"]
    assert [e.outcome for e in store.audit_log(outcome="no_face")] == ["no_face"]
    assert store.audit_log(outcome="no%face") == [] and store.audit_log(outcome="no_fac") == []  # no wildcards
    assert [e.action for e in store.audit_log(action="identify", outcome="match", person="Grace")] == ["identify"]


def test_a_time_range_takes_events_from_since_up_to_until(store: Store) -> None:
    store.audit_many([("calibrate", {"outcome": "calibrated"})])
    (first,) = store.audit_log()
    later = first.at + timedelta(seconds=1)
    store.audit_many([("reembed", {"outcome": "reembedded"})])
    assert [e.action for e in store.audit_log(since=first.at)] == ["reembed", "calibrate"]
    assert [e.action for e in store.audit_log(until=first.at + timedelta(microseconds=1))] == ["calibrate"]
    assert store.audit_log(since=later + timedelta(days=1)) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        store.audit_log(since=first.at.replace(tzinfo=None))
    with pytest.raises(ValueError):
        store.audit_log(limit=-1)


def test_reading_the_log_of_a_closed_store_fails(store: Store) -> None:
    store.close()
    with pytest.raises(StoreClosed):
        store.audit_log()


def test_an_event_at_time_is_timezone_aware_utc(store: Store) -> None:
    before = datetime.now(UTC)
    store.audit_many([("calibrate", {"outcome": "calibrated"})])
    (event,) = store.audit_log()
    assert before - timedelta(seconds=1) <= event.at <= datetime.now(UTC) + timedelta(seconds=1)
