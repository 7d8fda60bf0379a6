"""Reading one entry of the events stream back into an `Event`, or saying why not.

The collector writes each accepted event as `Event.to_json()` in the entry's
`event` field (serving/events/stream.py): the `events` row, with `context` as JSON
text. Anything else in the stream (a hand-made XADD, another producer's bug) is a
poison message: `parse_entry` raises `PoisonMessage` with a reason, and the
consumer moves the entry to the dead-letter stream rather than stalling on it.

Stricter than the collector in one way: `event_id` and `timestamp` must be
present. The collector fills both in; were either derived here, a redelivered
entry (after a crash) would be stamped anew and stored twice.

The other kind of entry is a deletion (`DELETE /v1/users/{id}`): one field,
`forget_user`, holding the user id; it is read as `ForgetUser`. It travels in the
same stream so that the consumer applies it in order with the user's events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from contracts.schemas import EVENTS_SCHEMA
from serving.events.event import MAX_ID_LENGTH, STORED, Event, describe

EVENT_FIELD = b"event"
FORGET_FIELD = b"forget_user"
REQUIRED = ("event_id", "timestamp")


class PoisonMessage(ValueError):
    """An entry that no retry can make valid; its message is the reason."""


@dataclass(frozen=True)
class ForgetUser:
    """Delete this user's online features and offline history (not their later events)."""
    user_id: str


def parse_entry(fields: dict[bytes, bytes] | None) -> Event | ForgetUser:
    if fields and FORGET_FIELD in fields:
        return parse_forget(fields)
    return parse_event(fields)


def parse_forget(fields: dict[bytes, bytes]) -> ForgetUser:
    if set(fields) != {FORGET_FIELD}:
        others = ", ".join(sorted(f.decode(errors="replace") for f in fields
                                  if f != FORGET_FIELD))
        raise PoisonMessage(f"a `forget_user` entry has other fields too: {others}")
    try:
        user_id = fields[FORGET_FIELD].decode()
    except UnicodeDecodeError as exc:
        raise PoisonMessage(f"`forget_user` is not UTF-8 text: {exc}") from None
    if not 1 <= len(user_id) <= MAX_ID_LENGTH:
        raise PoisonMessage(f"`forget_user` should be a user id of 1 to {MAX_ID_LENGTH} "
                            f"characters, got {len(user_id)}")
    return ForgetUser(user_id)


def parse_event(fields: dict[bytes, bytes] | None) -> Event:
    if not fields or EVENT_FIELD not in fields:
        raise PoisonMessage("the entry has no `event` field")
    try:
        raw: Any = json.loads(fields[EVENT_FIELD])
    except UnicodeDecodeError as exc:
        raise PoisonMessage(f"`event` is not UTF-8 text: {exc}") from None
    except ValueError as exc:
        raise PoisonMessage(f"`event` is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PoisonMessage(f"`event` is not a JSON object but {type(raw).__name__}")
    missing = [name for name in REQUIRED if raw.get(name) is None]
    if missing:
        raise PoisonMessage("; ".join(f"{name}: Field required (the stream carries "
                                      "complete events)" for name in missing))
    context = raw.get("context")
    if isinstance(context, str):  # the row's form: JSON text; the model takes the object
        try:
            raw = {**raw, "context": json.loads(context)}
        except ValueError as exc:
            raise PoisonMessage(f"context: not JSON text: {exc}") from None
    try:
        return Event.model_validate(raw, context={STORED: True})
    except ValidationError as exc:
        raise PoisonMessage(describe(exc)) from None


def events_table(events: list[Event]) -> pa.Table:
    """The events as rows of the `events` table (EVENTS_SCHEMA): `Event.record()`, but
    column by column and with the timestamp as is (record() formats it as text)."""
    return pa.Table.from_pydict(
        {name: [getattr(event, name) for event in events] for name in EVENTS_SCHEMA.names},
        schema=EVENTS_SCHEMA)
