"""`recstack demo`'s real-time loop (steps 6-9, recstack/cli/demo_loop.py) against
real services: `recstack serve` (Ray Serve behind KServe, two A/B variants),
`recstack collect` and `recstack consume` as child processes on a copy of the small
world, features and the events stream in the test Redis, HTTP from this process.
The consumer files what went through (impressions, clicks, carts, purchases) into
the copy's history, and the online report reads it back per variant."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from contracts.settings import Settings
from models.data.dataset import read_dataset
from recstack.cli.demo_loop import run_loop, run_or_skip
from recstack.demo.services import unavailable
from stores.feature_store import RedisAddress
from stores.registry import Registry
from tests.conftest import TEST_REDIS, applied_copy
from tests.serving.conftest import served_version  # noqa: F401  (a fixture, used below)

REALTIME_ACTIONS = {"click", "add_to_cart", "purchase"}


@pytest.fixture()
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A Feast project of its own in the test Redis, in this process's environment
    (the services inherit it); its keys are deleted afterwards."""
    address = RedisAddress.parse(TEST_REDIS)
    if not address.reachable():
        pytest.fail(f"no Redis at {address}: start one (`.ci/run` does) or set "
                    "RECSTACK_TEST_REDIS")
    project = f"recstack_demo_{uuid.uuid4().hex[:8]}"
    for name, value in (("RECSTACK_REDIS", TEST_REDIS), ("RECSTACK_ONLINE_STORE", "redis"),
                        ("RECSTACK_FEAST_PROJECT", project)):
        monkeypatch.setenv(name, value)
    yield Settings.from_env()
    client = address.client()
    for key in client.scan_iter(match=f"*{project}*".encode(), count=1000):
        client.delete(key)


def test_without_redis_the_loop_is_skipped_with_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_or_skip(tmp_path, tmp_path / "registry", "u1", 10, 0,
                       Settings(redis="127.0.0.1:1")) is None
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert line.startswith("6-9/9 serving, events and the online report skipped: no Redis "
                           "at 127.0.0.1:1 db 0 (RECSTACK_REDIS)")
    assert "Redis Streams" in line and "RECSTACK_REDIS=host:port" in line
    assert "RECSTACK_ONLINE_STORE=sqlite" in str(unavailable(Settings(online_store="sqlite")))


@pytest.mark.integration
@pytest.mark.slow  # about 100 s, plus 70 s to train the served version when run alone
def test_the_loop_serves_collects_consumes_and_reports_per_variant(
        small_world: Path, served_version: Path, settings: Settings,  # noqa: F811
        tmp_path: Path) -> None:
    # The demo's state after step 5: a data directory with its features in Redis and a
    # registry whose dev stage is a version trained on it (copies: the loop adds events).
    data = applied_copy(small_world, tmp_path / "world", settings)
    registry = tmp_path / "registry"
    shutil.copytree(served_version.parent.parent, registry)
    Registry(str(registry)).promote(served_version.name, "dev")
    events = pd.read_parquet(data / "events.parquet")
    busy = str(events["user_id"].value_counts().index[0])

    result = run_loop(data, registry, busy, sessions=60, seed=3, settings=settings)

    # The busy user's click and purchase reached their next answer within seconds.
    assert result.freshness.seconds < 30
    tally = result.tally
    assert set(tally.by_variant) == {"control", "diverse"}
    assert tally.degraded == 0
    assert tally.by_type["click"] > 0 and tally.accepted == sum(tally.by_type.values())

    # Everything that went through is in the history, attributed to its answer.
    history = read_dataset(data).events
    streamed = history[history["timestamp"] > events["timestamp"].max()]
    impressions = streamed[streamed["event_type"] == "impression"]
    assert len(impressions) == tally.impressions
    actions = streamed[streamed["event_type"].isin(REALTIME_ACTIONS)]
    assert len(actions) == tally.accepted
    assert set(actions["request_id"]) <= set(impressions["request_id"])
    mine = actions[actions["user_id"] == busy]
    assert set(mine["item_id"]) == {result.freshness.item}
    assert sorted(mine["event_type"]) == ["click", "purchase"]

    # The online report has both variants; the services are gone, their logs kept.
    html = result.report.read_text()
    assert "control" in html and "diverse" in html
    for name in ("serve", "collect", "consume"):
        assert (data / "logs" / f"{name}.log").stat().st_size > 0
