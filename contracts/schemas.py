"""The on-disk data contract: `events`, `items` and `users` tables.

A data directory holds `events.parquet`, `items.parquet` and `users.parquet`
with exactly these Arrow schemas. Every importer and the synthetic generator
write them through `models.data.dataset.write_dataset`, which validates first.

IDs are strings kept verbatim from the source (MovieLens movieId 318 stays
"318"); internal integer indices never appear in these tables. Timestamps are
UTC with microsecond precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from contracts.event_types import EVENT_TYPES

EVENTS_FILE = "events.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
GROUND_TRUTH_DIR = "ground_truth"


TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Field:
    """One column of a table: its Arrow type, whether it may be null, and what it means."""

    name: str
    type: pa.DataType
    nullable: bool
    doc: str


EVENT_FIELDS: tuple[Field, ...] = (
    Field("event_id", pa.string(), False,
          "Unique id; re-sending an event with the same id never duplicates it. "
          "Derived from the row's content when the source has none."),
    Field("user_id", pa.string(), False, "Who acted, verbatim from the source."),
    Field("item_id", pa.string(), True, "What they acted on; null only for `search`."),
    Field("event_type", pa.string(), False, f"One of {', '.join(EVENT_TYPES)}."),
    Field("value", pa.float64(), True,
          "Rating (required for `rating`), dwell seconds for `view`, amount for "
          "`purchase`; finite and >= 0 when present."),
    Field("timestamp", TIMESTAMP, False, "When it happened, UTC."),
    Field("session_id", pa.string(), True, "Groups events of one visit."),
    Field("query", pa.string(), True, "Search text; required for `search`."),
    Field("request_id", pa.string(), True,
          "Ties the event to the recommendation response that caused it."),
    Field("context", pa.string(), True,
          "JSON object with free-form context (device, page, ...)."),
)

ITEM_FIELDS: tuple[Field, ...] = (
    Field("item_id", pa.string(), False, "Unique item id, verbatim from the source."),
    Field("title", pa.string(), False, "Display title."),
    Field("description", pa.string(), True, "Short text used by content models."),
    Field("category", pa.string(), False, "Primary category ('unknown' when the source has none)."),
    Field("categories", pa.list_(pa.string()), False, "All categories or genres, primary first."),
    Field("tags", pa.list_(pa.string()), False, "Free-form tags, most frequent first."),
    Field("price", pa.float64(), True, "Price when the catalog has one; >= 0."),
    Field("year", pa.int32(), True, "Release or model year when known."),
    Field("created_at", TIMESTAMP, False,
          "When the item entered the catalog (first interaction when unknown)."),
    Field("available", pa.bool_(), False, "Whether the item may be recommended now."),
)

USER_FIELDS: tuple[Field, ...] = (
    Field("user_id", pa.string(), False, "Unique user id, verbatim from the source."),
    Field("created_at", TIMESTAMP, False, "Sign-up time (first event when unknown)."),
    Field("segment", pa.string(), True, "Marketing or behavioural segment when known."),
    Field("attributes", pa.string(), True,
          "JSON object of other profile fields (age, gender, occupation, ...)."),
)


def arrow_schema(fields: tuple[Field, ...]) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type, nullable=f.nullable) for f in fields])


EVENTS_SCHEMA = arrow_schema(EVENT_FIELDS)
ITEMS_SCHEMA = arrow_schema(ITEM_FIELDS)
USERS_SCHEMA = arrow_schema(USER_FIELDS)


def describe(fields: tuple[Field, ...]) -> str:
    """A Markdown table of the fields, used by `recstack data schema` and the docs."""
    rows = ["| field | type | nullable | meaning |", "|---|---|---|---|"]
    rows += [f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | {f.doc} |"
             for f in fields]
    return "\n".join(rows)
