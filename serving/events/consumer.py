"""The stream consumer behind `recstack consume --data DIR`: events from the Redis
Stream into the offline history and the online features, each at least once.

A Redis Streams consumer group (`recstack-consumers` by default) reads
`recstack:{project}:events` in batches. For each batch:

1. entries that are not valid events (poison) go to `recstack:{project}:events:dead`
   with the reason and their source id, acknowledged in the same Lua script;
2. the offline sink appends the valid events to `DIR/events_stream/` (each event_id
   once, atomic files: models/data/event_log.py);
3. the online sink pushes each affected user's real-time state to Feast and
   invalidates their cached recommendations (serving/events/realtime_sink.py);
4. only then are the entries acknowledged (XACK).

How it reads (group, name, batch sizes, intervals) is a `ConsumerConfig`
(serving/events/consumer_config.py), built and checked by the entry point.

A `forget_user` entry (`DELETE /v1/users/{id}`) is applied where it stands in the
batch: the events before it are written first, then the user's offline events are
tombstoned (hidden at once, deleted by the next compaction), their Feast online rows
deleted and their cache invalidated; the events after it are written after, and
kept: they are new data the user sent after the deletion.

Failures are of two kinds, told apart by what was raised:
- the sink's (Redis or the store down or refusing, a full disk: `TRANSIENT`):
  nothing is acknowledged; the batch is retried with backoff, for as long as it
  takes, and never dropped;
- the entry's (anything else, e.g. a value a sink cannot convert): the run is
  halved until the entries that fail on their own are found; those go to the
  dead-letter stream with the error as their reason, and the rest is written. One
  entry can never stall the group. (Entries that are not valid events are found
  before any write, step 1.)
Killed at any point, a restarted consumer first re-reads its own pending entries
(XREADGROUP from id 0), and any consumer claims entries left idle too long by a dead
one (XAUTOCLAIM). A redelivered entry is harmless: the offline sink skips ids it
already wrote, and the online sink recomputes a state that already holds the event.

A read takes up to `batch` entries; while reads come back full (the consumer is
behind) each takes twice as many, up to `max_batch`: the per-batch costs (a part
file and its fsyncs, the round trips, one Feast write) then spread over more events.

Acknowledged entries are trimmed from the stream (never one still pending or not
yet delivered to any group), and each day's part files are compacted now and then.
One consumer at a time per project and data directory is the setup this is built
for (any consumer reading the group gets entries, so there is no idle standby); one
started after another died takes over its pending entries (XAUTOCLAIM after
`claim_idle_s`). Two consuming at once would share the stream's
entries with no order between them for one user: each keeps its own id set (a
claim race could leave a duplicate row on disk, which readers and compaction drop),
and two folding events of one user at once can lose one of them online (each reads
the row, folds its own events and writes; the later stamp wins). The online sink's
memory of the states it pushed adds nothing to that: a row another consumer wrote
since is read again (serving/events/realtime_sink.py). Sharding users across streams, one
consumer each, would be the way to scale out.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from contracts.settings import Settings
from models.data.event_log import EventLog, compact, forget_user, hide_dead
from serving.cache import key_prefix
from serving.events.consumer_config import DEFAULT_GROUP, ConsumerConfig
from serving.events.event import Event
from serving.events.realtime_sink import REALTIME_VIEW, RealtimeSink
from serving.events.stream import stream_key
from serving.events.stream_entries import (
    EVENT_FIELD,
    ForgetUser,
    PoisonMessage,
    events_table,
    parse_entry,
)
from stores.feature_store import RedisAddress, open_store

log = logging.getLogger("recstack.consumer")

TRIM_EVERY_S = 30.0
Entry = tuple[bytes, dict[bytes, bytes] | None]
Poison = tuple[bytes, dict[bytes, bytes] | None, str]  # entry id, its fields, the reason

# KEYS[1]: the stream, KEYS[2]: the dead-letter stream; ARGV[1]: the group, ARGV[2]: the
# entry's id, ARGV[3..]: the dead letter's fields and values. Appends only if the entry
# was still pending, so a retried or repeated move leaves one dead letter.
MOVE_DEAD = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
  return 1
end
return 0
"""


# Failures of a sink, not of an entry: retried until they pass. Redis errors all
# (down, timing out, out of memory, read-only replica), disks (full, unmounted), memory.
TRANSIENT: tuple[type[BaseException], ...] = (redis.RedisError, OSError, MemoryError)

Run = list[tuple[bytes, Event]]


def in_order_runs(valid: list[tuple[bytes, Event | ForgetUser]]
                  ) -> list[Run | tuple[bytes, ForgetUser]]:
    """The batch as runs of consecutive events and single deletions, in stream order."""
    runs: list[Run | tuple[bytes, ForgetUser]] = []
    for entry_id, item in valid:
        if isinstance(item, ForgetUser):
            runs.append((entry_id, item))
        elif runs and isinstance(runs[-1], list):
            runs[-1].append((entry_id, item))
        else:
            runs.append([(entry_id, item)])
    return runs


def dead_letter_key(project: str) -> str:
    return f"{stream_key(project)}:dead"


def next_count(count: int, got: int, config: ConsumerConfig) -> int:
    """The next read's size: twice this one's while reads come back full, else `batch`."""
    if got < count:
        return config.batch
    return max(config.batch, min(2 * count, config.max_batch))


@dataclass
class Counters:
    consumed: int = 0  # valid events acknowledged
    written: int = 0  # of those, new rows in the offline history
    users: int = 0  # online states pushed
    dead: int = 0  # poison messages moved to the dead-letter stream
    retries: int = 0  # failed sink attempts, retried
    compactions: int = 0
    forgotten: int = 0  # user deletions applied

    def line(self, lag: int | None, rate: float | None = None) -> str:
        per_s = "" if rate is None else f" ({rate:,.0f}/s)"
        return (f"consumed {self.consumed:,} events{per_s}, {self.written:,} new offline, "
                f"{self.users:,} user states pushed, {self.forgotten:,} users deleted, "
                f"{self.dead:,} dead letters, {self.retries:,} retries; "
                f"lag {'?' if lag is None else f'{lag:,}'}")


class Stopped(Exception):
    """Asked to stop while a batch could not be finished: it stays pending."""


def _id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _vanished(exc: redis.ResponseError) -> bool:
    """The stream or the group is gone (deleted, the database flushed); a read blocked
    on the stream when it went is answered UNBLOCKED."""
    return any(sign in str(exc) for sign in ("NOGROUP", "no such key", "UNBLOCKED"))


class StreamConsumer:
    def __init__(self, client: redis.Redis, project: str, event_log: EventLog,
                 online: RealtimeSink, config: ConsumerConfig,
                 stop: threading.Event | None = None) -> None:
        self.client, self.event_log, self.online, self.config = client, event_log, online, config
        self.key, self.dead_key = stream_key(project), dead_letter_key(project)
        self.stop = stop or threading.Event()
        self.counters = Counters()
        self._move_dead = client.register_script(MOVE_DEAD)

    # -- the group ---------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; from id 0, so that events
        appended before the first consumer ever started are read too."""
        try:
            self.client.xgroup_create(self.key, self.config.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def lag(self) -> int | None:
        """Entries not yet acknowledged by the group: never delivered plus pending."""
        for group in self.client.xinfo_groups(self.key):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.config.group:
                lag = group.get("lag")
                return None if lag is None else int(lag) + int(group["pending"])
        return None

    # -- reading -----------------------------------------------------------------------

    def read(self, start: str, block: bool, count: int | None = None) -> list[Entry]:
        """XREADGROUP: `>` for new entries, `0` for this consumer's own pending ones."""
        reply = self.client.xreadgroup(
            self.config.group, self.config.name, {self.key: start},
            count=count or self.config.batch, block=self.config.block_ms if block else None)
        return list(reply[0][1]) if reply else []

    def recover_own(self) -> int:
        """Re-process what this consumer (this name) read before it was stopped or killed."""
        done = 0
        while not self.stop.is_set():
            entries = self.read("0", block=False)
            if not entries:
                break
            self.process(entries)
            done += len(entries)
        return done

    def claim_idle(self) -> int:
        """Take over and process entries another consumer left pending too long."""
        done, start = 0, "0-0"
        idle_ms = int(self.config.claim_idle_s * 1000)
        while not self.stop.is_set():
            reply = self.client.xautoclaim(self.key, self.config.group, self.config.name,
                                           idle_ms, start_id=start, count=self.config.batch)
            start, entries = reply[0], list(reply[1])
            if entries:
                log.info("claimed %d entries idle for over %.0f s", len(entries),
                         self.config.claim_idle_s)
                self.process(entries)
                done += len(entries)
            if _id(start) == (0, 0):
                break
        return done

    # -- one batch ---------------------------------------------------------------------

    def process(self, entries: Sequence[Entry]) -> None:
        """Dead-letter the poison, write both sinks (deletions in stream order with the
        events), then acknowledge the batch."""
        valid: list[tuple[bytes, Event | ForgetUser]] = []
        poison: list[Poison] = []
        ids: list[bytes] = []
        fields_of: dict[bytes, dict[bytes, bytes] | None] = {}
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream while pending: nothing to do
                ids.append(entry_id)
                continue
            try:
                valid.append((entry_id, parse_entry(fields)))
                ids.append(entry_id)
                fields_of[entry_id] = fields
            except PoisonMessage as exc:
                poison.append((entry_id, fields, str(exc)))
        if poison:
            self._retrying("dead-lettering", lambda: self._dead_letter(poison),
                           [p[0] for p in poison])
        dead: set[bytes] = set()
        for run in in_order_runs(valid):
            if isinstance(run, list):
                action = functools.partial(self._write_isolating, run, fields_of, dead, ids)
                self._retrying("writing the sinks", action, ids)
            else:
                action = functools.partial(self._forget_isolating, *run, fields_of, dead, ids)
                self._retrying("deleting a user", action, ids)
        if ids:
            self._retrying("acknowledging", lambda: self.client.xack(
                self.key, self.config.group, *ids), ids)
            self.counters.consumed += sum(isinstance(v, Event) and entry_id not in dead
                                          for entry_id, v in valid)

    def _write_isolating(self, run: Run, fields_of: dict[bytes, dict[bytes, bytes] | None],
                         dead: set[bytes], ids: list[bytes]) -> None:
        """Write the run; should it fail for its content, halve it until the entries that
        fail alone are found, and dead-letter those. Sink failures propagate (retried)."""
        run = [(entry_id, event) for entry_id, event in run if entry_id not in dead]
        if not run:
            return
        try:
            self._write([event for _, event in run])
        except TRANSIENT:
            raise
        except Exception as exc:
            if len(run) > 1:
                half = len(run) // 2
                self._write_isolating(run[:half], fields_of, dead, ids)
                self._write_isolating(run[half:], fields_of, dead, ids)
                return
            self._entry_failed(run[0][0], fields_of, exc, dead, ids, run[0][1])

    def _forget_isolating(self, entry_id: bytes, forget: ForgetUser,
                          fields_of: dict[bytes, dict[bytes, bytes] | None], dead: set[bytes],
                          ids: list[bytes]) -> None:
        if entry_id in dead:
            return
        try:
            self._forget(entry_id, forget)
        except TRANSIENT:
            raise
        except Exception as exc:
            self._entry_failed(entry_id, fields_of, exc, dead, ids)

    def _entry_failed(self, entry_id: bytes, fields_of: dict[bytes, dict[bytes, bytes] | None],
                      exc: Exception, dead: set[bytes], ids: list[bytes],
                      event: Event | None = None) -> None:
        log.error("stream entry %s failed on its own (%s: %s): dead-lettered",
                  entry_id.decode(), type(exc).__name__, exc)
        reason = f"a sink refused it: {type(exc).__name__}: {exc}"[:2000]
        if event is not None and event.event_id in self.event_log.seen:
            # The offline sink took it before the online one refused it: hidden from
            # every read, or each recomputation of this user would meet it again.
            self._retrying("hiding a dead event", lambda: hide_dead(
                self.event_log.data_dir, entry_id.decode(), [str(event.event_id)], reason),
                ids)
        self._retrying("dead-lettering", lambda: self._dead_letter(
            [(entry_id, fields_of.get(entry_id), reason)]), ids)
        dead.add(entry_id)

    def _write(self, events: list[Event]) -> None:
        known_users = {e.user_id for e in events if e.user_id in self.event_log.users}
        known_ids = {str(e.event_id) for e in events if e.event_id in self.event_log.seen}
        # Offline first: a state recomputed from the history must find this batch there.
        self.counters.written += self.event_log.append(events_table(events))
        self.counters.users += self.online.apply(events, known_users, known_ids)

    def _forget(self, entry_id: bytes, forget: ForgetUser) -> None:
        """Offline first (tombstone: their events are hidden from every read, so no later
        recomputation brings them back online), then online rows and cache. Named after
        the entry, so that a redelivery files nothing new: the user's events written after
        the deletion stay theirs."""
        forget_user(self.event_log.data_dir, forget.user_id, name=entry_id.decode())
        self.event_log.users.discard(forget.user_id)  # a later event starts from nothing
        self.online.forget(forget.user_id)
        self.counters.forgotten += 1
        log.info("deleted a user (stream entry %s)", entry_id.decode())

    def _dead_letter(self, poison: list[Poison]) -> None:
        """Each poison entry to the dead-letter stream with its reason, acknowledged in the
        same script: moved exactly once, even if a retry or another consumer repeats it."""
        for entry_id, fields, reason in poison:
            record: dict[bytes, bytes] = {
                b"reason": reason.encode(), b"source_id": entry_id,
                b"source_stream": self.key.encode(), b"consumer": self.config.name.encode(),
                b"dead_at": f"{time.time():.6f}".encode()}
            for name, value in (fields or {}).items():
                # The original fields, verbatim, so a fixed entry can be re-sent.
                record[name if name == EVENT_FIELD else b"entry." + name] = value
            pairs = [part for item in record.items() for part in item]
            if self._move_dead(keys=[self.key, self.dead_key],
                               args=[self.config.group, entry_id, *pairs]):
                self.counters.dead += 1
                log.warning("poison message %s moved to %s: %s", entry_id.decode(),
                            self.dead_key, reason)

    def _retrying(self, what: str, action: Callable[[], Any], ids: list[bytes]) -> None:
        """Run `action` until it succeeds, backing off; never skip it. Between tries the
        entries are re-claimed by this consumer (which resets their idle time), so that no
        other consumer takes over a batch that is only waiting for a sink to return."""
        backoff = self.config.min_backoff_s
        while True:
            try:
                action()
                return
            except TRANSIENT as exc:  # a sink's failure: retried, never dropped
                self.counters.retries += 1
                log.warning("%s failed (%s: %s); retrying in %.1f s", what,
                            type(exc).__name__, exc, backoff)
            if self.stop.wait(backoff):
                raise Stopped(f"stopped while {what}; the batch stays pending")
            backoff = min(2 * backoff, self.config.max_backoff_s)
            # (if Redis is what failed, this fails too, and the next try says so)
            with contextlib.suppress(redis.RedisError, OSError):
                self.client.xclaim(self.key, self.config.group, self.config.name, 0, ids,
                                   justid=True)

    # -- housekeeping ------------------------------------------------------------------

    def trim(self) -> None:
        """Drop entries every group has acknowledged: up to the oldest pending one, or
        the last delivered one when none is pending (MINID keeps the bound)."""
        bound: tuple[int, int] | None = None
        for group in self.client.xinfo_groups(self.key):
            pending = self.client.xpending(self.key, group["name"])
            floor = _id(pending["min"] if pending["pending"] else group["last-delivered-id"])
            bound = floor if bound is None else min(bound, floor)
        if bound is not None and bound != (0, 0):
            self.client.xtrim(self.key, minid=f"{bound[0]}-{bound[1]}", approximate=True)

    # -- the loop ----------------------------------------------------------------------

    def run(self, report: Callable[[str], None] | None = None, progress_every_s: float = 5.0,
            until_idle: bool = False) -> Counters:
        """Consume until `stop` is set (or, with `until_idle`, until nothing is left to
        read); the batch in hand is finished first. Redis failures are waited out."""
        # Everything loaded so far (Feast, pandas, the registry: ~400k objects) lives as
        # long as the loop: frozen, the collector's full passes skip it. They cost a
        # fifth of the loop's time otherwise.
        gc.freeze()
        try:
            return self._loop(report, progress_every_s, until_idle)
        finally:
            gc.unfreeze()

    def _loop(self, report: Callable[[str], None] | None, progress_every_s: float,
              until_idle: bool) -> Counters:
        last = {"claim": time.monotonic(), "compact": time.monotonic(),
                "trim": 0.0, "report": time.monotonic()}
        reported = self.counters.consumed
        recovered = False
        count = self.config.batch
        backoff = self.config.min_backoff_s
        while not self.stop.is_set():
            try:
                if not recovered:
                    self.ensure_group()
                    self.recover_own()
                    self.claim_idle()
                    recovered = True
                entries = self.read(">", block=not until_idle, count=count)
                if entries:
                    self.process(entries)
                count = next_count(count, len(entries), self.config)
                now = time.monotonic()
                if now - last["claim"] >= self.config.claim_idle_s / 2:
                    self.claim_idle()
                    last["claim"] = now
                if self.config.trim and now - last["trim"] >= TRIM_EVERY_S:
                    self.trim()
                    last["trim"] = now
                if (self.config.compact_every_s > 0
                        and now - last["compact"] >= self.config.compact_every_s):
                    self._compact()
                    last["compact"] = now
                if report is not None and now - last["report"] >= progress_every_s:
                    rate = (self.counters.consumed - reported) / (now - last["report"])
                    report(self.counters.line(self.lag(), rate))
                    last["report"], reported = now, self.counters.consumed
                if until_idle and not entries:
                    break
                backoff = self.config.min_backoff_s
            except Stopped as exc:
                log.info("%s", exc)
                break
            except redis.ResponseError as exc:
                if not _vanished(exc):
                    raise
                log.warning("the group or stream vanished (%s); recreating it", exc)
                recovered = False
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("Redis failed (%s); retrying in %.1f s", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(2 * backoff, self.config.max_backoff_s)
        if report is not None:
            report(self.counters.line(self._lag_or_none()))
        return self.counters

    def _compact(self) -> None:
        done = compact(self.event_log.data_dir)
        if done.days:
            self.counters.compactions += 1
            log.info("compacted %d day(s): %d files into %d, %d rows", done.days,
                     done.files_before, done.days, done.rows)

    def _lag_or_none(self) -> int | None:
        try:
            return self.lag()
        except (redis.RedisError, OSError):
            return None


@dataclass(frozen=True)
class GroupProgress:
    acked: int  # entries the group has acknowledged
    left: int  # entries not yet acknowledged: never delivered, plus pending


def group_progress(client: redis.Redis, project: str, group: str = DEFAULT_GROUP
                   ) -> GroupProgress | None:
    """Where a consumer group of the project's stream stands (for the benchmarks and
    the demo, which watch the consumer from outside); None before the stream or the
    group exists. Redis reports no lag once entries were trimmed out of order; the
    stream's length stands in then (the consumer trims what it acknowledged)."""
    key = stream_key(project)
    try:
        groups = client.xinfo_groups(key)
    except redis.ResponseError:  # no stream yet
        return None
    for info in groups:
        name = info["name"]
        if (name.decode() if isinstance(name, bytes) else name) == group:
            pending, lag = int(info["pending"]), info.get("lag")
            left = int(client.xlen(key)) if lag is None else int(lag) + pending
            return GroupProgress(int(info["entries-read"] or 0) - pending, left)
    return None


def stream_client(settings: Settings, block_ms: int) -> redis.Redis:
    # The socket must outlast a blocking read.
    return RedisAddress.parse(settings.redis).client(2.0, read_timeout=block_ms / 1000 + 5.0)


class NotApplied(RuntimeError):
    pass


def build_consumer(data_dir: Path, config: ConsumerConfig, settings: Settings,
                   stop: threading.Event | None = None,
                   announce: Callable[[str], None] = print) -> StreamConsumer:
    """Everything the consumer needs for `data_dir`: the stream's Redis, the data
    directory's event log, its Feast store (already applied) and the response cache.
    `settings` come from the entry point (`recstack consume`), which reads them once.
    Raises NotApplied, or OnlineStoreUnavailable when Redis does not answer."""
    if settings.online_store == "auto":
        # The stream is on Redis: with Redis down at start, falling back to an embedded
        # store would send every state where no server reads it. Fail instead.
        settings = settings.model_copy(update={"online_store": "redis"})
    store = open_store(data_dir, settings, announce=announce)
    if REALTIME_VIEW not in {view.name for view in store.list_feature_views()}:
        raise NotApplied(f"the Feast repo of {data_dir} has no `{REALTIME_VIEW}` view: run "
                         f"`recstack features apply --data {data_dir}` first")
    client = stream_client(settings, config.block_ms)
    event_log = EventLog(data_dir)
    online = RealtimeSink(store, client, key_prefix(settings.feast_project),
                          config.cache_ttl_s, event_log.history)
    return StreamConsumer(client, settings.feast_project, event_log, online, config, stop)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to stop once the batch in hand is done."""
    def handler(signum: int, _frame: object) -> None:
        log.info("%s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def configure_logging() -> None:
    """Retries, poison messages, claims and compactions, on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("feast").setLevel(logging.WARNING)  # a line per registry refresh
