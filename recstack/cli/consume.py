"""`recstack consume`: the stream consumer (serving/events/consumer.py) for one data directory."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, fail

if TYPE_CHECKING:
    from contracts.settings import Settings
    from serving.events.consumer import StreamConsumer
    from serving.events.consumer_config import ConsumerConfig

# ConsumerConfig's fields that come from an option, by the option's name.
OPTIONS = {"group": "--group", "name": "--name", "batch": "--batch",
           "claim_idle_s": "--claim-idle", "compact_every_s": "--compact-every",
           "cache_ttl_s": "--cache-ttl", "trim": "--trim"}


def consume(
    data: Path = typer.Option(..., "--data", help="Data directory whose history the events "
                              "join (the one `recstack train --data` reads); its Feast repo "
                              "must be applied (`recstack features apply`)."),
    name: str | None = typer.Option(None, help="Consumer name in the group (default: "
                                    "HOST-PID). Reuse it after a restart to resume its "
                                    "pending entries at once."),
    group: str = typer.Option("recstack-consumers", help="Redis Streams consumer group."),
    batch: int = typer.Option(500, min=1, max=10_000, help="Entries per read."),
    compact_every: float = typer.Option(10.0, min=0, help="Minutes between compactions of "
                                        "each day's part files (0: never)."),
    claim_idle: float = typer.Option(60.0, min=0.1, help="Seconds after which entries "
                                     "pending with another (dead) consumer are taken over."),
    cache_ttl: float = typer.Option(3600.0, min=1, help="Seconds an invalidation of cached "
                                    "recommendations lasts: at least the servers' cache TTL."),
    trim: bool = typer.Option(True, help="Trim acknowledged entries from the stream."),
    progress_every: float = typer.Option(5.0, min=0.1, help="Seconds between progress lines."),
    until_idle: bool = typer.Option(False, help="Stop once nothing is left to read (for "
                                    "scripts) instead of waiting for more events."),
    wait: float = typer.Option(0.0, min=0, help="Seconds to wait for the data directory, "
                               "its applied Feast repo and Redis (a fresh install's first "
                               "run) before giving up; 0: give up at once."),
) -> None:
    """Read events from the Redis Stream recstack:PROJECT:events (a consumer group) into
    DATA's offline history (events_stream/, parquet by day) and the online features (the
    user_realtime view, with the user's cached recommendations invalidated); acknowledge
    each event only once both hold it. Poison messages go to recstack:PROJECT:events:dead.
    Redis is RECSTACK_REDIS, the project RECSTACK_FEAST_PROJECT. SIGTERM or Ctrl-C stops
    it after the batch in hand."""
    if not wait:
        checks.data_dir("--data", data)  # before the imports below (Feast: seconds)
    # Imported here: the CLI's --help stays fast (this one is light: pydantic only).
    from serving.events.consumer_config import ConsumerConfig

    # A value the config refuses (an empty --group) is named by its option.
    config = checks.validated(
        ConsumerConfig, OPTIONS, group=group, batch=batch, claim_idle_s=claim_idle,
        compact_every_s=compact_every * 60, cache_ttl_s=cache_ttl, trim=trim,
        **({} if name is None else {"name": name}))  # default: HOST-PID
    settings = checks.settings()
    # Only now the consumer's imports (Feast, pandas, torch: seconds).
    from serving.events.consumer import configure_logging, stop_on_signals

    configure_logging()
    stop = threading.Event()
    stop_on_signals(stop)
    consumer = _build(data, config, settings, stop, wait)
    console.print(f"consuming {consumer.key} as {config.name} in group {config.group} "
                  f"into {data}", highlight=False)
    consumer.run(report=lambda line: console.print(line, highlight=False),
                 progress_every_s=progress_every, until_idle=until_idle)


def _build(data: Path, config: ConsumerConfig, settings: Settings, stop: threading.Event,
           wait: float) -> StreamConsumer:
    """The consumer, once DATA, its applied Feast repo and Redis are there: at once, or
    within `wait` seconds (a fresh install's first run), a line each time the reason
    for waiting changes."""
    import time

    from serving.events.consumer import NotApplied, build_consumer
    from stores.feature_store import OnlineStoreUnavailable

    deadline, said = time.monotonic() + wait, ""
    while True:
        try:
            if not (data / "events.parquet").exists():  # only when waiting: checked above
                raise NotApplied(f"--data {data}: not a data directory (no events.parquet)")
            return build_consumer(
                data, config, settings, stop=stop,
                announce=lambda line: console.print(line, highlight=False))
        except (NotApplied, OnlineStoreUnavailable) as exc:
            if time.monotonic() >= deadline or stop.is_set():
                if isinstance(exc, NotApplied):
                    fail(str(exc), EXIT_INVALID_INPUT)
                fail(f"no Redis answers at RECSTACK_REDIS ({settings.redis}): "
                     "the consumer reads the events stream and writes the online "
                     "features there")
            if str(exc) != said:  # a line when the reason changes, not every few seconds
                said = str(exc)
                console.print(f"waiting (up to {wait:.0f} s) for the first run: {said}",
                              highlight=False)
            stop.wait(5)
