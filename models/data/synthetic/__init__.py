"""A realistic synthetic shop: catalog, users, sessions and the truth behind them.

`generate(out, ...)` writes a data directory plus `ground_truth/`; the same
seed and sizes give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.data.dataset import Dataset, write_dataset
from models.data.synthetic.sessions import simulate_events
from models.data.synthetic.world import GroundTruth, build_world, catalog_text, save_ground_truth
from models.data.validate import Locator, normalize_events, normalize_items, normalize_users

DEFAULT_START = "2026-01-01T00:00:00Z"

__all__ = ["DEFAULT_START", "GenerateConfig", "GroundTruth", "generate"]


@dataclass(frozen=True)
class GenerateConfig:
    users: int = 2000
    items: int = 1000
    days: int = 60
    seed: int = 0
    start: str = DEFAULT_START

    def validate(self) -> None:
        for name, low in (("users", 1), ("items", 10), ("days", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"--{name} must be at least {low}, got {getattr(self, name)}")


def generate(out: Path, config: GenerateConfig, overwrite: bool = False,
             progress: Callable[[int], None] | None = None) -> Dataset:
    """Generate a synthetic data directory. `progress` is called once per user simulated."""
    config.validate()
    rng = np.random.default_rng(config.seed)
    start = pd.Timestamp(config.start)
    if start.tzinfo is None:
        start = start.tz_localize("UTC")
    world = build_world(rng, config.users, config.items, config.days, start)
    items_raw = catalog_text(world, rng)
    events_raw = simulate_events(world, rng, progress)
    users_raw = pd.DataFrame({
        "user_id": world.user_ids,
        "created_at": [start + pd.to_timedelta(s, unit="s") for s in world.user_created_s],
        "segment": world.user_segment,
        "attributes": [json.dumps({"device": ["mobile", "desktop", "tablet"][d]})
                       for d in world.user_device],
    })
    users_raw["created_at"] = pd.to_datetime(users_raw["created_at"]).dt.floor("s")

    source = f"generator(seed={config.seed})"
    events = normalize_events(events_raw, Locator(source, "event"))
    items = normalize_items(items_raw, Locator(source, "item"))
    users = normalize_users(users_raw, Locator(source, "user"))
    for validated in (events, items, users):
        validated.raise_if_invalid()  # a generator bug, not user error: fail loudly
    dataset = write_dataset(out, events.frame, items.frame, users.frame, overwrite=overwrite)
    save_ground_truth(world, out, config.seed)
    return dataset
