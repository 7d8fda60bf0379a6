"""A realistic synthetic shop: catalog, users, sessions and the truth behind them.

`generate(out, ...)` writes a data directory plus `ground_truth/`; the same
seed and sizes give byte-identical files. Users are simulated in blocks of
`BLOCK_USERS`, each vectorised (sessions.py, funnel.py) and drawing from its own
random stream spawned from the seed, so a seed gives the same events whether the
blocks run in one process or several.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts.schemas import EVENTS_FILE
from models.data.dataset import check_destination, write_catalogs, write_tables_atomic
from models.data.synthetic.event_table import event_tables, timestamps_us
from models.data.synthetic.funnel import KINDS, EventColumns, funnel_events
from models.data.synthetic.sessions import Catalog, draw_sessions, draw_views, prepare_catalog
from models.data.synthetic.vocabulary import DEVICES
from models.data.synthetic.world import (
    GroundTruth,
    World,
    build_world,
    catalog_text,
    save_ground_truth,
)
from models.data.validate import Locator, normalize_items, normalize_users

DEFAULT_START = "2026-01-01T00:00:00Z"
BLOCK_USERS = 512
# Catalogs up to this size are scored whole by every session; larger ones through
# per-user pools of this many items (models/data/synthetic/pools.py).
DEFAULT_POOL = 4096

__all__ = ["DEFAULT_POOL", "DEFAULT_START", "GenerateConfig", "GroundTruth", "generate"]


@dataclass(frozen=True)
class GenerateConfig:
    users: int = 2000
    items: int = 1000
    days: int = 60
    seed: int = 0
    start: str = DEFAULT_START
    pool: int = DEFAULT_POOL

    def validate(self) -> None:
        for name, low in (("users", 1), ("items", 10), ("days", 1), ("pool", 64)):
            if getattr(self, name) < low:
                raise ValueError(f"--{name} must be at least {low}, got {getattr(self, name)}")


def _block_events(world: World, catalog: Catalog, seed: int, block: int) -> EventColumns:
    """One block of users' events. Each block draws from its own stream, spawned from
    the seed, so blocks can run in any order or process and give the same events."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block,)))
    users = np.arange(block * BLOCK_USERS,
                      min((block + 1) * BLOCK_USERS, len(world.user_ids)))
    sessions = draw_sessions(world, catalog, rng, users)
    views = draw_views(world, catalog, rng, users, sessions)
    return funnel_events(world, catalog.log_rel_price, rng, users, sessions, *views)


_worker_state: tuple[World, Catalog, int] | None = None


def _start_worker(world: World, catalog: Catalog, seed: int) -> None:
    global _worker_state
    _worker_state = (world, catalog, seed)


def _worker_block(block: int) -> EventColumns:
    assert _worker_state is not None, "_start_worker runs first"
    return _block_events(*_worker_state, block)


def simulate_events(world: World, seed: int, pool: int,
                    progress: Callable[[int], None] | None = None,
                    workers: int = 1) -> EventColumns:
    """All events of all users over the period, in the order the simulation makes them
    (user by user); `workers` processes simulate the blocks side by side."""
    catalog = prepare_catalog(world, pool)
    blocks = range(-(-len(world.user_ids) // BLOCK_USERS))
    done: list[EventColumns] = []

    def collect(results: Iterable[EventColumns]) -> None:
        for events, block in zip(results, blocks, strict=True):
            done.append(events)
            if progress is not None:
                progress(min(BLOCK_USERS, len(world.user_ids) - block * BLOCK_USERS))

    if workers <= 1 or len(blocks) <= 1:
        collect(_block_events(world, catalog, seed, block) for block in blocks)
    else:
        # forkserver: the workers start clean, not as copies of a process whose threads
        # (a progress bar's, a library's) might hold a lock at the fork.
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(world, catalog, seed)) as executor:
            collect(executor.map(_worker_block, blocks))
    return EventColumns.concat(done)


def _users_frame(world: World) -> pd.DataFrame:
    attributes = np.array([json.dumps({"device": d}) for d in DEVICES], dtype=object)
    frame = pd.DataFrame({
        "user_id": world.user_ids,
        "created_at": world.start + pd.to_timedelta(world.user_created_s, unit="s"),
        "segment": world.user_segment,
        "attributes": attributes[world.user_device],
    })
    frame["created_at"] = frame["created_at"].dt.floor("s")
    return frame


def summary(world: World, events: EventColumns) -> dict[str, Any]:
    """What `Dataset.summary` reports, from the simulated columns."""
    kinds, counts = np.unique(events.kind, return_counts=True)
    stamps = timestamps_us(world, events.t) if len(events) else [world.start.value // 1000]
    at = [str(pd.Timestamp(int(us), unit="us", tz="UTC")) for us in (np.min(stamps),
                                                                     np.max(stamps))]
    return {"events": len(events), "items": len(world.item_ids), "users": len(world.user_ids),
            "event_types": dict(sorted((KINDS[k], int(c)) for k, c in zip(kinds, counts,
                                                                          strict=True))),
            "first_event": at[0], "last_event": at[1]}


def generate(out: Path, config: GenerateConfig, overwrite: bool = False,
             progress: Callable[[int], None] | None = None, workers: int = 1
             ) -> dict[str, Any]:
    """Generate a synthetic data directory and return its summary (`Dataset.summary`'s
    keys). `progress` is called with the number of users simulated, block by block;
    `workers` processes simulate blocks side by side (the files do not depend on it)."""
    config.validate()
    check_destination(out, overwrite)
    rng = np.random.default_rng(config.seed)
    start = pd.Timestamp(config.start)
    if start.tzinfo is None:
        start = start.tz_localize("UTC")
    world = build_world(rng, config.users, config.items, config.days, start)
    items_raw = catalog_text(world, rng)
    events = simulate_events(world, config.seed, config.pool, progress, workers)

    source = f"generator(seed={config.seed})"
    items = normalize_items(items_raw, Locator(source, "item"))
    users = normalize_users(_users_frame(world), Locator(source, "user"))
    for validated in (items, users):
        validated.raise_if_invalid()  # a generator bug, not user error: fail loudly
    # The events are built in the contract's types directly (tests check that they
    # validate): normalising tens of millions of rows would cost more than making them.
    out.mkdir(parents=True, exist_ok=True)
    write_tables_atomic(event_tables(world, events), out / EVENTS_FILE)
    write_catalogs(out, items.frame, users.frame)
    save_ground_truth(world, out, config.seed)
    return summary(world, events)
