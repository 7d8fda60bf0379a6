"""Poison against the stream consumer (issue 17), with the real test Redis and a real
Feast repo: every kind of bad entry written straight into the stream goes to the
dead-letter stream with its reason while the rest keeps flowing; an entry a sink
refuses is found and set aside alone; a bad row an older collector let into the
history is skipped by every reader, `features apply` included."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from contracts.schemas import EVENTS_SCHEMA
from contracts.settings import Settings
from models.data.dataset import read_dataset
from models.data.event_log import day_dir, hidden_ids, read_stream_events, write_part
from recstack.cli import app as cli
from serving.events.consumer import dead_letter_key
from serving.events.stream import stream_key
from tests.events import test_consumer
from tests.events.test_consumer import (
    AFTER,
    assert_online_matches_history,
    consumer,
    record,
    redis_client,
    xadd,
)

pytestmark = pytest.mark.integration
settings = test_consumer.settings
world = test_consumer.world


def _event(**fields: Any) -> bytes:
    return json.dumps(record("x", "u003", "i001") | fields).encode()


# (the entry's fields, a piece of the reason the dead letter must give)
POISON: list[tuple[dict[bytes, bytes], str]] = [
    ({b"event": _event(event_id="p-far", timestamp="9999-12-31T23:00:00+00:00")},
     "timestamp: Input should be between 1970"),
    ({b"event": _event(event_id="p-first", timestamp="0001-01-01T00:00:00+01:00")},
     "timestamp: Input should be between 1970"),
    ({b"event": _event(event_id="p-pandas", timestamp="2262-04-12T00:00:00+00:00")},
     "timestamp: Input should be between 1970"),
    ({b"event": b'{"event_id": "p-sur", "user_id": "\\ud800", "item_id": "i1", '
                b'"event_type": "view", "timestamp": "2026-03-01T08:00:00+00:00"}'},
     "user_id: Input should be a valid string"),
    ({b"event": _event(event_id="p-ctx", context='{"a": "\\ud800"}')},
     "context: Input should be valid Unicode text"),
    ({b"event": _event(event_id="p-nl", item_id="i\n1")}, "item_id: String should match"),
    ({b"event": _event(event_id="p-req", request_id=7)}, "request_id: Input should be a valid"),
    ({b"event": _event(event_id="p-val", value=-3)}, "value: Input should be greater"),
    ({b"event": _event(event_id="p-type", event_type="fly")}, "event_type: Input should be"),
    ({b"event": b"\xff\xfe"}, "is not JSON"),
    ({b"event": b'{"event_id": "p-utf8", "user_id": "\xc3("}'}, "not UTF-8"),
    ({b"event": b"[1]"}, "not a JSON object"),
    ({b"forget_user": b""}, "`forget_user` should be a user id"),
    ({b"forget_user": b"u1", b"extra": b"x"}, "other fields too"),
]


def _lag(client: Any, project: str) -> int:
    for group in client.xinfo_groups(stream_key(project)):
        return int(group["lag"] or 0) + int(group["pending"])
    return -1


def test_every_kind_of_poison_is_set_aside_and_the_stream_keeps_flowing(
        world: Path, settings: Settings) -> None:
    client, project = redis_client(settings), settings.feast_project
    worker = consumer(world, settings, block_ms=100)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        good = [record(f"g{n}", f"u00{n % 3 + 3}", f"i00{n % 5 + 1}",
                       at=AFTER + pd.Timedelta(seconds=n)) for n in range(40)]
        entries: list[Any] = []
        for n, (fields, _) in enumerate(POISON):  # poison among good events of the same users
            entries += [good[2 * n], fields, good[2 * n + 1]]
        entries += good[2 * len(POISON):]
        sent = time.monotonic()
        ids = xadd(client, project, entries)
        while _lag(client, project) != 0:
            assert time.monotonic() - sent < 10, "lag not back to zero 10 s after the poison"
            time.sleep(0.05)
        drained = time.monotonic() - sent
    finally:
        worker.stop.set()
        thread.join(30)
    dead = client.xrange(dead_letter_key(project))
    poison_ids = [ids[3 * n + 1] for n in range(len(POISON))]
    assert [entry[b"source_id"] for _, entry in dead] == poison_ids
    for (_, entry), (fields, reason) in zip(dead, POISON, strict=True):
        assert reason in entry[b"reason"].decode(errors="replace"), (fields, entry[b"reason"])
    streamed = read_stream_events(world)["event_id"].to_pylist()
    assert sorted(streamed) == sorted(e["event_id"] for e in good)  # none lost, none extra
    assert worker.counters.consumed == len(good) and worker.counters.dead == len(POISON)
    assert_online_matches_history(world, settings, ["u003", "u004", "u005"])
    print(f"{len(POISON)} poison entries among {len(good)} events: lag 0 after {drained:.2f} s")


def test_an_entry_a_sink_refuses_is_found_and_set_aside_alone(
        world: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    client, project = redis_client(settings), settings.feast_project
    worker = consumer(world, settings, min_backoff_s=0.01)
    apply = worker.online.apply

    def refusing(events: list[Any], *args: Any) -> int:  # a value this sink cannot take
        if any(e.event_id == "refused" for e in events):
            raise ValueError("cannot convert the value")
        return apply(events, *args)
    monkeypatch.setattr(worker.online, "apply", refusing)
    events = [record(f"s{n}", "u006", f"i00{n % 5 + 1}", at=AFTER + pd.Timedelta(seconds=n))
              for n in range(30)]
    events[17] = record("refused", "u006", "i002", at=AFTER + pd.Timedelta(seconds=17))
    ids = xadd(client, project, events)
    done = worker.run(until_idle=True)
    assert (done.consumed, done.dead, done.retries) == (29, 1, 0)  # content: no retry
    (_, letter), = client.xrange(dead_letter_key(project))
    assert letter[b"source_id"] == ids[17]
    assert letter[b"reason"].decode() == ("a sink refused it: ValueError: cannot convert the "
                                          "value")
    assert json.loads(letter[b"event"])["event_id"] == "refused"  # verbatim, to re-send
    # The offline sink had taken it before the online one refused: hidden from reads.
    assert "refused" in hidden_ids(world)
    assert "refused" not in read_stream_events(world)["event_id"].to_pylist()
    xadd(client, project, [record("after", "u006", "i003", at=AFTER + pd.Timedelta(minutes=5))])
    assert worker.run(until_idle=True).consumed == 30
    assert_online_matches_history(world, settings, ["u006"])


def _bad_row(data: Path) -> None:
    """A year-9999 event of u007 on disk, as a collector before issue 17 let through."""
    row = {name: [None] for name in EVENTS_SCHEMA.names}
    row.update(event_id=["ancient-poison"], user_id=["u007"], item_id=["i001"],
               event_type=["view"], timestamp=[datetime(9999, 12, 31, tzinfo=UTC)])
    write_part(pa.Table.from_pydict(row, schema=EVENTS_SCHEMA), day_dir(data, "9999-12-31"))


def test_a_bad_row_already_in_the_history_is_skipped_by_every_reader(
        world: Path, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    _bad_row(world)
    client, project = redis_client(settings), settings.feast_project
    # The last arrives late (older than the user's latest): their state is recomputed
    # from the history, which holds the bad row.
    xadd(client, project, [*(record(f"late{n}", "u007", "i002", at=AFTER + pd.Timedelta(
        seconds=n)) for n in range(2)), record("late2", "u007", "i003",
                                                at=pd.Timestamp("2020-01-01T00:00:00Z"))])
    with caplog.at_level(logging.WARNING, logger="models.data.event_log"):
        assert consumer(world, settings).run(until_idle=True).consumed == 3
        events = read_dataset(world).events
    assert "ancient-poison" not in set(events["event_id"])
    assert {"late0", "late1", "late2"} <= set(events["event_id"])
    assert any("skipped 1 event(s) no reader can hold" in r.message and
               "ancient-poison" in r.message for r in caplog.records)
    assert_online_matches_history(world, settings, ["u007"])
    env = {"RECSTACK_REDIS": settings.redis, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": project}
    applied = CliRunner().invoke(cli, ["features", "apply", "--data", str(world)], env=env)
    assert applied.exit_code == 0, applied.output
