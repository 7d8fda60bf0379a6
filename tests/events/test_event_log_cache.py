"""`EventLog.history`, which the consumer recomputes states from, reads the files it
wrote (or read) from memory: it must always equal `read_history` from disk, through
more appends, compactions that replace the files, deletions, a rewritten
events.parquet and another writer's files, and stay within its bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.schemas import EVENTS_FILE
from models.data.event_log import EventLog, compact, forget_user, read_history
from tests.events.test_event_log import events
from tests.features.handbuilt import write_handbuilt


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_handbuilt(tmp_path / "hand")


def assert_same(log: EventLog, users: list[str]) -> None:
    assert log.history(users).equals(read_history(log.data_dir, users))


def test_history_from_memory_equals_the_files(data: Path) -> None:
    log = EventLog(data)
    users = ["u1", "u2", "nobody"]
    log.append(events(range(0, 10), user="u1"))
    log.append(events(range(10, 20), user="u2"))
    assert_same(log, users)
    assert len(log.files._files) >= 3  # the parts written, and events.parquet read once

    # Another writer's part (a second consumer on the directory): read from disk.
    EventLog(data).append(events(range(20, 25), user="u1"))
    assert_same(log, users)
    assert set(log.history(["u1"])["event_id"].to_pylist()) >= {"e20", "e24"}

    # Compaction replaces the parts: the merged file is read, the old ones are unlisted.
    assert compact(data).days >= 1
    assert_same(log, users)

    # A deletion hides the user's events at once; events.parquet rewritten by the next
    # compaction is a new file (a rename), and read again.
    forget_user(data, "u1", name="deletion-1")
    assert_same(log, users)
    before = (data / EVENTS_FILE).stat().st_ino
    compact(data)
    assert (data / EVENTS_FILE).stat().st_ino != before  # (u1 had events in it)
    assert_same(log, users)
    assert log.history(["u1"]).num_rows == 0


def test_the_memory_is_bounded_by_rows(data: Path) -> None:
    log = EventLog(data, max_cached_rows=12)
    for start in range(0, 40, 10):
        log.append(events(range(start, start + 10), user="u3"))
        assert log.files._rows <= 12
    assert_same(log, ["u3", "u1"])
    assert log.history(["u3"]).num_rows == 40
    # A file larger than the bound is never held: read from disk each time.
    compact(data)  # one day file of 40 rows
    assert_same(log, ["u3", "u1"])
    assert log.files._rows <= 12
