"""Your own events into a data directory (`recstack data import events`): the events
file and the optional item and user tables read and normalized to the contract, each
event's item checked against the catalog (`read_import`), and new rows added to a
data directory's (`merge`, for --append)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.data.dataset import Dataset
from models.data.validate import Validated


@dataclass(frozen=True)
class Imported:
    """The normalized tables; `validated` holds each one read, with its issues."""

    events: Validated
    items: Validated | None
    users: Validated | None
    validated: list[Validated]

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
        return (self.events.frame, None if self.items is None else self.items.frame,
                None if self.users is None else self.users.frame)


def read_import(file: Path, columns: dict[str, str], timestamp_unit: str,
                items_file: Path | None = None, users_file: Path | None = None) -> Imported:
    """Read and normalize the events (their fields from `columns`, contract field ->
    column; numeric timestamps in `timestamp_unit`) and the optional catalogs; an
    event whose item the catalog lacks is an issue. Bad rows are issues; a file that
    is unusable as a whole (missing, unreadable, a required column absent) raises
    DataValidationError."""
    from models.data.readers import read_table
    from models.data.validate import (
        check_references,
        normalize_events,
        normalize_items,
        normalize_users,
    )

    raw, locator, read_issues = read_table(file, columns)
    events = normalize_events(raw, locator, timestamp_unit)
    events.issues[:0] = read_issues
    validated = [events]
    items = users = None
    if items_file is not None:
        items_raw, items_loc, item_read_issues = read_table(items_file)
        items = normalize_items(items_raw, items_loc)
        items.issues[:0] = item_read_issues
        events = check_references(events, "item_id", set(items.frame["item_id"]), locator,
                                  str(items_file))
        validated = [events, items]
    if users_file is not None:
        users_raw, users_loc, user_read_issues = read_table(users_file)
        users = normalize_users(users_raw, users_loc)
        users.issues[:0] = user_read_issues
        validated.append(users)
    return Imported(events, items, users, validated)


def merge(existing: Dataset, events: pd.DataFrame, items: pd.DataFrame | None,
          users: pd.DataFrame | None
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Existing rows win: an event re-sent with the same id is not added twice; new
    catalog rows replace old ones with the same id."""
    merged = pd.concat([existing.events, events], ignore_index=True)
    merged = merged.drop_duplicates("event_id", keep="first")
    new_items = existing.items if items is None else pd.concat(
        [existing.items[~existing.items["item_id"].isin(items["item_id"])], items],
        ignore_index=True)
    new_users = existing.users if users is None else pd.concat(
        [existing.users[~existing.users["user_id"].isin(users["user_id"])], users],
        ignore_index=True)
    return merged, new_items, new_users
