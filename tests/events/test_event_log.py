"""The streamed offline history on disk (no services): appends once per event_id, across
restarts; atomic part files; compaction keeps the rows; `read_dataset` sees the union;
the real-time view leaves impressions out on both sides."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts.schemas import EVENTS_SCHEMA
from models.data.dataset import read_dataset
from models.data.event_log import (
    EventLog,
    compact,
    read_stream_events,
    stream_dir,
    stream_parts,
    write_part,
)
from models.features.build import user_realtime
from models.features.realtime import RealtimeState, epoch_seconds
from tests.features.handbuilt import write_handbuilt

START = datetime(2026, 2, 1, 23, 0, tzinfo=UTC)


def events(ids: range, user: str = "u1", item: str | None = "i1", event_type: str = "view",
           session: str | None = "s9", start: datetime = START, step_s: float = 600.0
           ) -> pa.Table:
    """Events `e{n}`, `step_s` apart from `start` (so a long range spans days)."""
    rows = [{"event_id": f"e{n}", "user_id": user, "item_id": item, "event_type": event_type,
             "value": None, "timestamp": start + timedelta(seconds=n * step_s),
             "session_id": session, "query": None, "request_id": None, "context": None}
            for n in ids]
    return pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)


def raw_rows(data: Path) -> pa.Table:
    """Every row in every part file, duplicates included."""
    return pa.concat_tables([pq.read_table(p).cast(EVENTS_SCHEMA) for p in stream_parts(data)])


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_handbuilt(tmp_path / "hand")


def test_append_writes_each_event_id_once_across_restarts(data: Path) -> None:
    log = EventLog(data)
    assert log.append(events(range(10))) == 10
    assert log.append(events(range(5, 15))) == 5  # e5..e9 already there
    # A restarted consumer rebuilds the id set from disk: a redelivered batch is skipped.
    assert EventLog(data).append(events(range(0, 15))) == 0
    rows = raw_rows(data)
    assert rows.num_rows == 15 and len(set(rows["event_id"].to_pylist())) == 15
    # Ten-minute steps from 23:00 on 1 Feb: e0..e5 that day, the rest the next; a file
    # per day per append.
    assert sorted(p.parent.name for p in stream_parts(data)) == [
        "date=2026-02-01", "date=2026-02-02", "date=2026-02-02"]
    assert not list(stream_dir(data).rglob(".tmp-*"))  # temporary names never linger


def test_events_of_the_base_file_are_not_appended_again(data: Path) -> None:
    base = read_dataset(data).events
    again = pa.Table.from_pandas(base, schema=EVENTS_SCHEMA, preserve_index=False)
    assert EventLog(data).append(again) == 0
    assert "u1" in EventLog(data).users


def test_compaction_merges_each_day_and_keeps_the_rows(data: Path) -> None:
    log = EventLog(data)
    for start in range(0, 40, 8):
        log.append(events(range(start, start + 8), step_s=3600.0))
    # A duplicate on disk, as two writers racing on one directory could leave.
    write_part(events(range(0, 1), step_s=3600.0), stream_parts(data)[0].parent)
    before = read_stream_events(data)
    assert raw_rows(data).num_rows == 41

    done = compact(data)
    after = read_stream_events(data)
    assert after.equals(before) and after.num_rows == 40
    assert raw_rows(data).num_rows == 40  # the duplicate is gone from disk too
    days = [p.parent.name for p in stream_parts(data)]
    assert len(days) == len(set(days)) == done.days == 3  # one file per day
    assert compact(data).days == 0  # nothing left to merge
    assert EventLog(data).append(events(range(40))) == 0


def test_a_crash_inside_compaction_neither_loses_nor_doubles_rows(data: Path,
                                                                 tmp_path: Path) -> None:
    log = EventLog(data)
    for start in range(0, 12, 4):
        log.append(events(range(start, start + 4), step_s=60.0))
    before = read_stream_events(data)
    day = stream_parts(data)[0].parent
    kept = tmp_path / "kept"
    shutil.copytree(day, kept)
    compact(data)
    # As if killed after the merged file's rename but before the old parts' removal:
    for old in kept.iterdir():
        shutil.copy(old, day / old.name)
    assert len(list(day.glob("part-*.parquet"))) == 4
    assert len(stream_parts(data)) == 1  # the merged file replaces the other three
    assert raw_rows(data).equals(before)
    compact(data)  # and the next compaction clears them away
    assert len(list(day.glob("part-*.parquet"))) == 1
    assert read_stream_events(data).equals(before)


def test_read_dataset_sees_streamed_events(data: Path) -> None:
    before = read_dataset(data)
    log = EventLog(data)
    log.append(events(range(3), user="u1", item="i2"))
    log.append(events(range(3, 5), user="newcomer", item="brand-new"))
    # Written around the log (a second writer's race): read once all the same.
    write_part(events(range(4, 5), user="newcomer", item="brand-new"),
               stream_parts(data)[0].parent)
    after = read_dataset(data)
    assert len(after.events) == len(before.events) + 5
    assert after.events["event_id"].is_unique
    ordered = after.events.sort_values(["timestamp", "event_id"], kind="stable")
    assert after.events.index.equals(ordered.index)
    assert str(after.events["timestamp"].dtype) == str(before.events["timestamp"].dtype)
    # The base file's rows are unchanged, and ids only streamed events mention get
    # catalog rows, as importers give them.
    pd.testing.assert_frame_equal(after.events.iloc[: len(before.events)], before.events)
    assert "brand-new" in set(after.items["item_id"])
    assert "newcomer" in set(after.users["user_id"])
    assert set(before.items["item_id"]) < set(after.items["item_id"])


def test_read_dataset_still_names_a_missing_events_file(tmp_path: Path) -> None:
    EventLog(tmp_path).append(events(range(2)))
    with pytest.raises(FileNotFoundError, match=r"events.parquet not found"):
        read_dataset(tmp_path)


def test_read_dataset_unchanged_without_a_stream(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    (stream_dir(copy) / "date=2026-01-01").mkdir(parents=True)  # empty: nothing streamed
    pd.testing.assert_frame_equal(read_dataset(copy).events, read_dataset(data).events)


def test_realtime_view_leaves_impressions_out() -> None:
    rows = [("u1", "i1", "view", "s1", "2026-01-01T10:00:00Z", "a"),
            ("u1", "i9", "impression", None, "2026-01-01T10:00:30Z", "b"),
            ("u1", None, "search", "s1", "2026-01-01T10:01:00Z", "c"),
            ("u1", "i2", "click", "s1", "2026-01-01T10:01:00Z", "d")]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "session_id",
                                        "timestamp", "event_id"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("us")
    table = user_realtime(frame)
    assert list(table["last_event_type"]) == ["view", "search", "click"]
    assert table.iloc[-1]["recent_items"] == ["i2", "i1"]
    assert list(table["session_event_count"]) == [1, 2, 3]
    # The consumer's fold gives the very same last row.
    state = RealtimeState()
    for _, item, kind, session, at, _ in rows:
        if kind != "impression":
            state.add(item, session, kind, epoch_seconds(pd.Timestamp(at).value // 1000))
    last = table.iloc[-1]
    assert (state.recent_items, state.session_id, state.session_event_count,
            state.last_event_type, state.last_event_ts) == (
        last["recent_items"], last["session_id"], last["session_event_count"],
        last["last_event_type"], last["last_event_ts"])
