"""The streamed part of a data directory's history: `DIR/events_stream/`.

The stream consumer appends accepted events here, beside `DIR/events.parquet`
(which importers and the generator own), and `models.data.dataset.read_dataset`
reads the union of both, so the next `recstack train --data DIR` sees them.

Layout: `events_stream/date=YYYY-MM-DD/part-<uuid>.parquet`, one directory per UTC
day of the events' timestamps, each file in the `EVENTS_SCHEMA` contract.

Crash safety rests on two rules. A file appears whole or not at all: it is written
under a temporary name in its own directory, fsynced, then renamed (and the
directory fsynced). And an `event_id` is written once: `EventLog` remembers every
id already on disk (rebuilt at start from the id columns), so an event delivered
again after a crash is skipped. `compact` merges each day's files into one whose
metadata names the files it replaces, so that the history never holds both.
Readers still de-duplicate by `event_id`: should two writers ever race (two
consumers on one directory), nothing worse than a duplicate row on disk, never in
what is read, can result.

Other tools may read the directory as a hive-partitioned parquet dataset; they
should list files with `stream_parts` (or run `compact` first), since for a moment
after a compaction (or after a crash in it) replaced files may still be there, and
leave out `forgotten_ids` (deleted users' events not yet compacted away).

Deleted users (`DELETE /v1/users/{id}`, filed by the consumer with `forget_user`):
one tombstone per deletion in `events_stream/deleted_users/<name>.json`, holding
the user and the ids of the events they had when the deletion was processed.
Readers leave those events out at once; `compact` then removes them from the day
files, `events.parquet` and the user's row from `users.parquet`, and marks the
tombstone compacted. Tombstones hold ids only, not events, and are kept: cheap,
and a late redelivery of a deleted event stays hidden. Events the user sends after
the deletion are not in the tombstone: they are new data, and kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts.schemas import EVENTS_FILE, EVENTS_SCHEMA, TIMESTAMP, USERS_FILE

log = logging.getLogger(__name__)

STREAM_DIR = "events_stream"
PART_GLOB = "date=*/part-*.parquet"
COMPACTED_PREFIX = "part-c-"
REPLACES_KEY = b"recstack.replaces"
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 600.0  # a temporary file older than this belongs to a writer that died
SORT_KEYS = [("timestamp", "ascending"), ("event_id", "ascending")]
TOMBSTONE_DIR = "deleted_users"
DEAD_DIR = "dead_events"  # events a sink refused after the history had them (consumer)
# What every reader can hold: pandas' nanosecond timestamps end at 1677-09-21 and
# 2262-04-11. A row outside (the collector let such events in before issue 17) would
# stop every pandas reader, `features apply` and `train` among them: it is skipped.
READABLE_FROM = pa.scalar(datetime(1678, 1, 1, tzinfo=UTC), TIMESTAMP)
READABLE_TO = pa.scalar(datetime(2262, 1, 1, tzinfo=UTC), TIMESTAMP)
REQUIRED = ("event_id", "user_id", "event_type", "timestamp")
MAX_CACHED_ROWS = 500_000  # rows of history files an EventLog keeps in memory (~100 MB)


def stream_dir(data_dir: Path) -> Path:
    return data_dir / STREAM_DIR


def day_dir(data_dir: Path, day: str) -> Path:
    return stream_dir(data_dir) / f"date={day}"


def stream_parts(data_dir: Path) -> list[Path]:
    """The part files that hold the history, in a stable order: finished files only
    (temporary names never match), less those a compacted file replaces."""
    return _live(sorted(stream_dir(data_dir).glob(PART_GLOB)))


def _live(paths: list[Path]) -> list[Path]:
    replaced = {path.parent / name for path in paths if path.name.startswith(COMPACTED_PREFIX)
                for name in _replaces(path)}
    return [path for path in paths if path not in replaced]


def _replaces(path: Path) -> list[str]:
    """The names of the part files a compacted file merged (kept in its metadata)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except FileNotFoundError:  # itself compacted away since it was listed
        return []
    names: list[str] = json.loads(metadata.get(REPLACES_KEY, b"[]"))
    return names


def _read_parts(paths: Iterable[Path], columns: list[str] | None = None,
                users: Collection[str] | None = None, cache: FileCache | None = None
                ) -> pa.Table:
    schema = EVENTS_SCHEMA if columns is None else pa.schema(
        [EVENTS_SCHEMA.field(c) for c in columns])
    filters = None if users is None else [("user_id", "in", list(users))]
    wanted = None if users is None else pa.array(list(users), pa.string())
    tables = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # compacted away since it was listed
            whole = None if cache is None else cache.read(path)
            if whole is not None:
                table = whole if wanted is None else whole.filter(
                    pc.is_in(whole["user_id"], wanted))
                tables.append(readable(table.select(schema.names), path))
                continue
            table = pq.read_table(path, columns=schema.names, filters=filters)
            # (cast: one schema for all, without the writers' pandas metadata)
            tables.append(readable(table.select(schema.names).cast(schema), path))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def readable(table: pa.Table, source: Path) -> pa.Table:
    """The rows every reader can hold (see READABLE_FROM): the others are skipped, with
    a line naming the file, the count and the first ids. Tables without a timestamp
    column (id sets) are returned whole."""
    if "timestamp" not in table.column_names or table.num_rows == 0:
        return table
    stamps = table["timestamp"]
    keep = pc.and_(pc.greater_equal(stamps, READABLE_FROM), pc.less(stamps, READABLE_TO))
    for name in REQUIRED:
        if name in table.column_names:
            keep = pc.and_(keep, pc.is_valid(table[name]))
    keep = pc.fill_null(keep, False)
    if pc.all(keep).as_py():
        return table
    bad = table.filter(pc.invert(keep))
    ids = [str(i) for i in bad["event_id"].to_pylist()[:5]] if "event_id" in bad.column_names \
        else []
    log.warning("%s: skipped %d event(s) no reader can hold (a timestamp outside "
                "1678-2261 or an empty required field): %s", source, bad.num_rows,
                ", ".join(ids) + (" ..." if bad.num_rows > len(ids) else ""))
    return table.filter(keep)


class FileCache:
    """History files held in memory whole, each under its identity (inode, size, mtime):
    a part file never changes once renamed into place, and events.parquet is only ever
    replaced whole (a rename), so a file whose identity is unchanged holds what was read.
    The consumer recomputes a few users' states from their history now and then; reading
    every part file for that costs more with each batch written, reading memory does not.
    Bounded by rows: the oldest files go first, and a file larger than the bound is read
    from disk each time."""

    def __init__(self, max_rows: int = MAX_CACHED_ROWS) -> None:
        self.max_rows = max_rows
        self._files: dict[Path, tuple[tuple[int, int, int], pa.Table]] = {}
        self._rows = 0

    def read(self, path: Path) -> pa.Table | None:
        """The file's rows (EVENTS_SCHEMA), from memory or read now; None when it is too
        large to keep. Raises FileNotFoundError."""
        identity = _identity(path)
        held = self._files.get(path)
        if held is not None and held[0] == identity:
            return held[1]
        if pq.read_metadata(path).num_rows > self.max_rows:
            return None
        table = _as_events(pq.read_table(path))
        self.put(path, table, identity)
        return table

    def put(self, path: Path, table: pa.Table, identity: tuple[int, int, int] | None = None
            ) -> None:
        """Keep `table` (EVENTS_SCHEMA) as the content of `path`."""
        self._drop(path)
        if table.num_rows > self.max_rows:
            return
        self._files[path] = (identity or _identity(path), table)
        self._rows += table.num_rows
        while self._rows > self.max_rows:
            self._drop(next(iter(self._files)))

    def _drop(self, path: Path) -> None:
        held = self._files.pop(path, None)
        if held is not None:
            self._rows -= held[1].num_rows


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def dedupe_sorted(table: pa.Table) -> pa.Table:
    """One row per `event_id` (the first met), sorted by timestamp then event_id."""
    if table.num_rows == 0:
        return table
    first = (table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
             .group_by("event_id", use_threads=False).aggregate([("_row", "min")]))
    return table.take(first["_row_min"]).sort_by(SORT_KEYS)


def read_stream_events(data_dir: Path, users: Collection[str] | None = None) -> pa.Table:
    """The streamed events (only `users`' when given), de-duplicated and sorted, less
    deleted users' events."""
    table = _read_parts(stream_parts(data_dir), users=users)
    return dedupe_sorted(without_ids(table, hidden_ids(data_dir)))


def read_history(data_dir: Path, users: Collection[str] | None = None,
                 cache: FileCache | None = None) -> pa.Table:
    """`events.parquet` and the streamed events together (only `users`' when given),
    one row per event_id (the file's row wins), sorted by timestamp then event_id,
    less deleted users' events (already compacted away or not). `cache`: files already
    read (see FileCache)."""
    paths = [data_dir / EVENTS_FILE] if (data_dir / EVENTS_FILE).exists() else []
    table = _read_parts([*paths, *stream_parts(data_dir)], users=users, cache=cache)
    return dedupe_sorted(without_ids(table, hidden_ids(data_dir)))


def without_ids(table: pa.Table, ids: Collection[str]) -> pa.Table:
    """The rows whose event_id is not in `ids`."""
    if not ids or table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table["event_id"], pa.array(list(ids), pa.string()))))


# -- deleted users -----------------------------------------------------------------------

@dataclass(frozen=True)
class Tombstone:
    name: str  # the file's stem: the forget entry's stream id, so a redelivery is a no-op
    user_id: str
    deleted_at: float  # epoch seconds, when the consumer processed the deletion
    event_ids: list[str]
    compacted: bool = False  # the events are gone from disk, not just hidden


def tombstone_dir(data_dir: Path) -> Path:
    return stream_dir(data_dir) / TOMBSTONE_DIR


def read_tombstones(data_dir: Path) -> list[Tombstone]:
    tombstones = []
    for path in sorted(tombstone_dir(data_dir).glob("*.json")):
        with contextlib.suppress(FileNotFoundError):
            tombstones.append(Tombstone(name=path.stem, **json.loads(path.read_text())))
    return tombstones


def forgotten_ids(data_dir: Path) -> set[str]:
    return {i for t in read_tombstones(data_dir) for i in t.event_ids}


def hidden_ids(data_dir: Path) -> set[str]:
    """Events no read returns: deleted users' and dead ones (`hide_dead`)."""
    dead: set[str] = set()
    for path in sorted((stream_dir(data_dir) / DEAD_DIR).glob("*.json")):
        with contextlib.suppress(FileNotFoundError):
            dead.update(json.loads(path.read_text())["event_ids"])
    return forgotten_ids(data_dir) | dead


def hide_dead(data_dir: Path, name: str, event_ids: list[str], reason: str) -> None:
    """Hide events from every read: ones a sink refused after the offline history had
    them (the stream consumer dead-letters them), so that no recomputation from the
    history meets them again. Kept on disk, named by the stream entry `name`."""
    directory = stream_dir(data_dir) / DEAD_DIR
    _make_dirs(directory)
    tmp = directory / f"{TMP_PREFIX}{name}-{uuid.uuid4().hex}"
    with open(tmp, "w") as out:
        json.dump({"event_ids": event_ids, "reason": reason, "at": time.time()}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, directory / f"{name}.json")
    _fsync_dir(directory)


def forgotten_users(data_dir: Path) -> set[str]:
    return {t.user_id for t in read_tombstones(data_dir)}


def _write_tombstone(data_dir: Path, tombstone: Tombstone) -> None:
    """Atomically and durably, as part files are written."""
    directory = tombstone_dir(data_dir)
    _make_dirs(directory)
    path = directory / f"{tombstone.name}.json"
    tmp = directory / f"{TMP_PREFIX}{tombstone.name}-{uuid.uuid4().hex}"
    body = {k: v for k, v in asdict(tombstone).items() if k != "name"}
    with open(tmp, "w") as out:
        json.dump(body, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)


def forget_user(data_dir: Path, user_id: str, name: str | None = None,
                now: float | None = None) -> int:
    """Hide every event `user_id` has in the history now, and have `compact` delete them;
    returns how many. `name`: a unique name for this deletion (the stream entry's id):
    filing the same deletion twice (a redelivery) changes nothing, so events the user
    sent after it are never swept into it."""
    name = name or uuid.uuid4().hex
    if (tombstone_dir(data_dir) / f"{name}.json").exists():
        return 0
    ids = read_history(data_dir, [user_id])["event_id"].to_pylist()
    _write_tombstone(data_dir, Tombstone(name, user_id, time.time() if now is None else now,
                                         ids))
    return len(ids)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """Create `path` and its parents, fsyncing each new entry's parent, so a renamed
    file inside cannot be lost with its directory."""
    if path.exists():
        return
    _make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    _fsync_dir(path.parent)


def write_part(table: pa.Table, directory: Path, prefix: str = "part-") -> Path:
    """Write `table` as a new part file in `directory`, atomically and durably."""
    _make_dirs(directory)
    name = f"{prefix}{uuid.uuid4().hex}.parquet"
    tmp, path = directory / f"{TMP_PREFIX}{name}", directory / name
    with open(tmp, "wb") as out:
        pq.write_table(table, out, compression="zstd")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)
    return path


def _as_events(table: pa.Table) -> pa.Table:
    return table.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA)


def _days(table: pa.Table) -> pa.Array:
    return pc.strftime(table["timestamp"], format="%Y-%m-%d")


class EventLog:
    """Appends events to `DIR/events_stream`, each `event_id` once.

    Keeps every id already in the history (events.parquet included) in memory, and the
    ids of users with any history (the real-time sink asks). Fine up to tens of
    millions of events; past that, an on-disk index would take its place. The files it
    wrote or read whole stay in `files` (bounded), for `history`."""

    def __init__(self, data_dir: Path, max_cached_rows: int = MAX_CACHED_ROWS) -> None:
        self.data_dir = data_dir
        history = read_history_columns(data_dir, ["event_id", "user_id"])
        self.seen: set[str] = set(history["event_id"].to_pylist())
        self.users: set[str] = set(pc.unique(history["user_id"]).to_pylist())
        self.files = FileCache(max_cached_rows)

    def history(self, users: Collection[str]) -> pa.Table:
        """`read_history` of these users, from the files in memory where it can."""
        return read_history(self.data_dir, users, cache=self.files)

    def append(self, table: pa.Table) -> int:
        """Write the rows whose event_id is new (one part file per day); returns how
        many. `table` holds events in the EVENTS_SCHEMA columns."""
        table = _as_events(table)
        ids = table["event_id"].to_pylist()
        fresh, batch = [], set()
        for n, event_id in enumerate(ids):
            if event_id not in self.seen and event_id not in batch:
                fresh.append(n)
                batch.add(event_id)
        if not fresh:
            return 0
        table = table.take(pa.array(fresh, pa.int64()))
        days = _days(table)
        written = 0
        for day in sorted(pc.unique(days).to_pylist()):
            part = table.filter(pc.equal(days, day)).sort_by(SORT_KEYS)
            self.files.put(write_part(part, day_dir(self.data_dir, day)), part)
            # Recorded as soon as the rename made them durable: a failure later in the
            # batch must not let a retry write these rows a second time.
            self.seen.update(part["event_id"].to_pylist())
            self.users.update(pc.unique(part["user_id"]).to_pylist())
            written += part.num_rows
        return written


def read_history_columns(data_dir: Path, columns: list[str]) -> pa.Table:
    """Some columns of every row on disk, duplicates included (cheap: for id sets)."""
    paths = [data_dir / EVENTS_FILE] if (data_dir / EVENTS_FILE).exists() else []
    return _read_parts([*paths, *stream_parts(data_dir)], columns=columns)


@dataclass(frozen=True)
class Compaction:
    days: int  # days whose files were merged
    files_before: int  # part files in those days, before
    rows: int  # rows in the merged files (duplicates dropped)


def compact(data_dir: Path) -> Compaction:
    """Merge each day's part files into one (de-duplicated, sorted), and delete the
    events of deleted users not yet compacted away (see `forget_user`), from the day
    files and from `events.parquet`, and their rows from `users.parquet`.

    The merged file names the files it replaces in its metadata and is renamed into
    place before they are removed; from that rename on, `stream_parts` no longer lists
    them. So a crash at any point leaves either the old files or the merged one in the
    history, never both and never neither; the next compaction removes what a crash
    left behind (and temporary files of writers that died). A tombstone is marked
    compacted only after every file is rewritten, so a crash means a redo, never a miss."""
    tombstones = read_tombstones(data_dir)
    pending = [t for t in tombstones if not t.compacted]
    # Every tombstone's ids go when a file is rewritten anyway; only pending ones force it.
    every_id = {i for t in tombstones for i in t.event_ids}
    pending_ids = {i for t in pending for i in t.event_ids}
    days = files_before = rows = 0
    if stream_dir(data_dir).exists():
        for directory in sorted(stream_dir(data_dir).glob("date=*")):
            merged = _compact_day(directory, every_id, pending_ids)
            if merged is not None:
                days, files_before, rows = days + 1, files_before + merged[0], rows + merged[1]
    if pending:
        _rewrite_without(data_dir / EVENTS_FILE, "event_id", every_id)
        _rewrite_without(data_dir / USERS_FILE, "user_id", {t.user_id for t in pending})
        for tombstone in pending:
            _write_tombstone(data_dir, replace(tombstone, compacted=True))
    return Compaction(days, files_before, rows)


def _compact_day(directory: Path, every_id: set[str], pending_ids: set[str]
                 ) -> tuple[int, int] | None:
    """Merge one day's parts, less deleted events: (files merged, rows), or None when
    there was nothing to do."""
    _remove_stale_tmp(directory)
    every = sorted(directory.glob("part-*.parquet"))
    parts = _live(every)
    for leftover in set(every) - set(parts):  # replaced, then a crash before removal
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    if not parts or (len(parts) < 2 and not _holds_any(parts, pending_ids)):
        return None
    try:
        merged = dedupe_sorted(without_ids(
            pa.concat_tables([_as_events(pq.read_table(p)) for p in parts]), every_id))
    except FileNotFoundError:  # another compaction got there first
        return None
    replaces = json.dumps([p.name for p in parts]).encode()
    write_part(merged.replace_schema_metadata({REPLACES_KEY: replaces}), directory,
               prefix=COMPACTED_PREFIX)
    for path in parts:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    _fsync_dir(directory)
    return len(parts), merged.num_rows


def _holds_any(paths: list[Path], ids: set[str]) -> bool:
    if not ids:
        return False
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            if pc.any(pc.is_in(pq.read_table(path, columns=["event_id"])["event_id"],
                               pa.array(list(ids), pa.string()))).as_py():
                return True
    return False


def _rewrite_without(path: Path, column: str, values: set[str]) -> None:
    """Rewrite a parquet file without the rows whose `column` is in `values`, atomically
    (temporary file, fsync, rename); untouched when it holds none."""
    if not values or not path.exists():
        return
    drop = pc.is_in(pq.read_table(path, columns=[column])[column],
                    pa.array(list(values), pa.string()))
    if not pc.any(drop).as_py():
        return
    table = pq.read_table(path)
    kept = table.filter(pc.invert(pc.is_in(table[column], pa.array(list(values), pa.string()))))
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex}")
    with open(tmp, "wb") as out:
        pq.write_table(kept, out, compression="zstd")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove_stale_tmp(directory: Path) -> None:
    cutoff = time.time() - STALE_TMP_S
    for tmp in directory.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def newest_mtime(data_dir: Path) -> float | None:
    """When the streamed history last changed (None if there is none): commands that
    cache work derived from the events (feature tables) compare against it."""
    # A deletion changes the history too: features built before it still hold the user,
    # and materializing them would bring their online rows back.
    paths = [*stream_parts(data_dir), *tombstone_dir(data_dir).glob("*.json")]
    times = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # compacted away since it was listed
            times.append(path.stat().st_mtime)
    return max(times) if times else None
