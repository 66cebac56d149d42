"""A property-based fuzz of the service's own OpenAPI schema (schemathesis): no request makes it answer 5xx.

Each operation of ``/openapi.json`` gets generated requests (bounded: ``MAX_EXAMPLES`` each, with
an admin key so the routes' own parsing is reached, and a few with a made-up key) against a real
uvicorn server. A 503 would be honest only under overload or a broken gallery, neither of which
the fuzz causes, so every status of 500 and above is a failure; every error answers the
documented ``{"error", "message"}`` body. Hypothesis draws requests for each operation by
hand-rolled ``@given`` loops (schemathesis' own pytest plugin does not run on this pytest).
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from service_harness import Server, make_keys

MAX_EXAMPLES = 25


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = make_keys(home, {"root": ["admin"]})
    options = {"rate_limit": "1000000/minute", "max_body_bytes": 1_000_000}
    with Server(home, settings=options) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 11
        for operation in operations:
            for secret, examples in ((keys["root"], MAX_EXAMPLES), ("gk_made-up", MAX_EXAMPLES // 5)):
                _fuzz(operation, secret, examples)


def _fuzz(operation, secret: str, examples: int) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def no_server_error(case) -> None:
        response = case.call_and_validate(headers={"Authorization": f"Bearer {secret}"}, checks=[not_a_server_error])
        assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
        if response.status_code >= 400 and response.headers.get("content-type") == "application/json":
            assert set(response.json()) == {"error", "message"}, response.text

    no_server_error()
