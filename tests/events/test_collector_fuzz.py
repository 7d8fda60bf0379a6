"""Schemathesis against the collector's own OpenAPI spec, over real HTTP to a real
uvicorn and the real test Redis: every check schemathesis has (no 5xx, status codes,
content types, headers and bodies as documented, bad data refused, valid data
accepted, auth enforced), positive and negative cases, with a fixed seed.

The default run takes `RECSTACK_SCHEMATHESIS_EXAMPLES` (60) examples per operation;
`pytest -m slow` runs the same with 1000."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from serving.api_keys import ApiKeys
from serving.events.collector import CollectorSettings, create_app
from stores.feature_store import RedisAddress
from tests.events.test_collector import running

pytestmark = pytest.mark.integration
PROJECT = "recstack_schemathesis"
KEY = "fuzz-key"
EXAMPLES = int(os.environ.get("RECSTACK_SCHEMATHESIS_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def collector_url() -> Iterator[str]:
    from tests.conftest import TEST_REDIS

    address = RedisAddress.parse(TEST_REDIS)
    address.client().flushdb()
    settings = CollectorSettings(redis=address, project=PROJECT, api_keys=ApiKeys([KEY]))
    with running(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"
    address.client().flushdb()


def _fuzz(url: str, examples: int) -> dict[str, int]:
    """Every operation, in each generation mode, `examples` cases; every check. (Driven
    from hypothesis here: schemathesis' own pytest plugin does not load on pytest 9.)
    Returns how many cases were sent per operation and mode."""
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    api.hook(map_body)
    sent: dict[str, int] = {}
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE,
                     schemathesis.GenerationMode.NEGATIVE):
            label = f"{operation.label} {mode.value}"
            sent[label] = 0
            try:
                _cases(operation.as_strategy(generation_mode=mode), examples, label, sent)()
            except Unsatisfiable:  # nothing to make invalid (a route with no input)
                assert mode is schemathesis.GenerationMode.NEGATIVE, label
    return sent


def map_body(_: schemathesis.HookContext, body: Any) -> Any:
    """The one rule no schema can state, that a timestamp be at most a day from now
    (the spec says so in words, and bounds the year), kept in generated cases: a
    schema-valid future date becomes now, which is just as schema-valid."""
    events = body.get("events") if isinstance(body, dict) else None
    for event in events if isinstance(events, list) else [body]:
        stamp = event.get("timestamp") if isinstance(event, dict) else None
        try:
            future = isinstance(stamp, str) and datetime.fromisoformat(stamp) > datetime.now(UTC)
        except ValueError:
            future = False
        if future:
            event["timestamp"] = datetime.now(UTC).isoformat()
    return body


def _cases(strategy: st.SearchStrategy[schemathesis.Case], examples: int, label: str,
           sent: dict[str, int]) -> Callable[[], None]:
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        sent[label] += 1
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"})
    return run  # type: ignore[no-any-return]


def test_collector_conforms_to_its_spec(collector_url: str) -> None:
    sent = _fuzz(collector_url, EXAMPLES)
    print(f"schemathesis: {sum(sent.values())} cases (derandomized): {sent}")
    assert all(n for label, n in sent.items() if label.endswith("positive")), sent
    assert sent["POST /v1/events negative"] and sent["DELETE /v1/users/{user_id} negative"]


@pytest.mark.slow
def test_collector_conforms_to_its_spec_at_length(collector_url: str) -> None:
    sent = _fuzz(collector_url, 1000)
    print(f"schemathesis: {sum(sent.values())} cases (derandomized): {sent}")
    assert sent["POST /v1/events positive"] and sent["POST /v1/events negative"]
