"""One incoming event, checked against the on-disk contract before it is accepted.

`Event` is what the collector takes over HTTP; `Event.record()` is the row the
`events` table (`contracts.schemas.EVENT_FIELDS`) holds, so that what lands in the
stream can be written to parquet as is. `parse_events` validates a list of raw
JSON objects one by one, so that a bad event rejects only itself, and names the
bad field the way a client wrote it: `events[3].value: Input should be greater
than or equal to 0`.

IDs are strings kept verbatim; a JSON integer is read as its decimal string
(clients holding MovieLens-style numeric ids send numbers), as the serving
requests do, except `request_id`, which only ever comes from a recommendation
answer. Timestamps must be ISO 8601 with a timezone: a naive time or a bare
epoch number is ambiguous, and guessing would file events at the wrong hour.

What is accepted must be readable by everything downstream, so the checks are
those of the strictest reader: a timestamp from 1970 to a day after now (pandas
holds 1677 to 2262 only, and an event from the future would sit in every recency
feature as the user's latest), text without lone surrogates (not Unicode: no
UTF-8 encoder, so no Redis, parquet or Feast write, takes it).

An event without an `event_id` gets one derived from its content (every other
field, the timestamp included), so a retry of the same content is stored once.
An event that has neither an id nor a timestamp is stamped on arrival, so its
retries differ: clients that retry should send `event_id` (or at least a
timestamp). Ids derived here differ from those `recstack data import` derives
for files; the two paths do not share content-derived ids.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.event_types import BY_NAME, EVENT_TYPES
from contracts.schemas import EVENT_FIELDS

MAX_ID_LENGTH = 256
MAX_QUERY_LENGTH = 1000
MAX_CONTEXT_CHARS = 4096  # the context as canonical JSON text
SHOWN_ERRORS = 5  # a reason lists at most this many problems of one event
MAX_INT_ID = 2**53
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)  # clock skew of a client allowed into the future

EventType = Literal["view", "click", "add_to_cart", "purchase", "rating", "search",
                    "impression"]
assert get_args(EventType) == EVENT_TYPES, "EventType must list contracts.event_types.TYPES"

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _integer_as_id(value: Any) -> Any:
    """A JSON integer as its decimal text, within +-2**53 (what a JavaScript client
    holds exactly; the bound is exact in floating point too, so every JSON Schema
    validator agrees on it). JSON Schema counts 5.0 and 1e3 as integers, so integral
    numbers are read alike."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if (isinstance(value, int) or value.is_integer()) and abs(value) <= MAX_INT_ID:
        return str(int(value))
    return value


def _iso_string(value: Any) -> Any:
    """Only ISO 8601 text (or a datetime from Python callers) reaches the parser:
    pydantic would also read `1714564800` as epoch seconds."""
    if value is None:
        return datetime.now(UTC)  # null means not given
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise PydanticCustomError(
        "iso_timestamp",
        "Input should be an ISO 8601 date and time with a timezone, e.g. 2024-05-01T12:00:00Z")


def _as_utc(value: datetime) -> datetime:
    latest = datetime.now(UTC) + MAX_AHEAD
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # an offset that pushes year 1 or 9999 out of range
        utc = None
    if utc is None or not EARLIEST <= utc <= latest:
        raise PydanticCustomError(
            "timestamp_range", "Input should be between {earliest} and a day from now "
            "({latest}), got {value}", {"earliest": EARLIEST.isoformat(),
                                        "latest": latest.isoformat(timespec="seconds"),
                                        "value": value.isoformat()})
    return utc


def _unicode(text: str) -> None:
    """Text that UTF-8 can encode: a lone surrogate (JSON's \\ud800) is not."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise PydanticCustomError(
            "unicode", "Input should be valid Unicode text; {char} at {at} is a lone "
            "surrogate", {"char": repr(text[exc.start]), "at": exc.start}) from None


def _context_json(value: Any) -> Any:
    """A JSON object -> its canonical text, the form the `events` table stores."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PydanticCustomError("context_object", "Input should be a JSON object")
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PydanticCustomError("context_json", "Input should be plain JSON: {error}",
                                  {"error": str(exc)}) from None
    _unicode(text)
    if len(text) > MAX_CONTEXT_CHARS:
        raise PydanticCustomError("context_size",
                                  "Input should be at most {max} characters as JSON, got {n}",
                                  {"max": MAX_CONTEXT_CHARS, "n": len(text)})
    return text


# No control characters in ids: a newline or NUL in an id breaks logs, CSV exports and
# URL paths (a user must stay deletable by DELETE /v1/users/{id}).
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
              "pattern": ID_PATTERN}
_INT_ID_SCHEMA = {"type": "integer", "minimum": -MAX_INT_ID, "maximum": MAX_INT_ID}
# The constraint first, so that the integer-to-string step runs before it.
# (Strict text refuses lone surrogates itself; `context` is checked in `_context_json`.)
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strict=True,
                                     pattern=ID_PATTERN),
               BeforeValidator(_integer_as_id),
               WithJsonSchema({"anyOf": [_ID_SCHEMA, _INT_ID_SCHEMA]})]
StrictId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH,
                                            strict=True, pattern=ID_PATTERN)]
Query = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_LENGTH,
                                         strict=True)]
Value = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_string), AfterValidator(_as_utc),
                      WithJsonSchema({"anyOf": [
                          {"type": "string", "format": "date-time",
                           "pattern": r"^(19[7-9][0-9]|20[0-9][0-9])-"}, {"type": "null"}],
                          "description": "ISO 8601 with a timezone, from 1970 to a day "
                                         "from now (absent or null: the time of arrival)"})]
Context = Annotated[str | None, BeforeValidator(_context_json),
                    WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "null"}],
                                    "description": "Free-form JSON object (device, page, ...)."})]


def _rule(field: str, message: str) -> PydanticCustomError:
    # A model-level error has no location of its own; `field` gives it one (see `_where`).
    return PydanticCustomError("event_rule", message, {"field": field})


# Validation context of an event read back from the stream (the consumer): it has its
# id, and nothing will write it there again, so `to_json` is not prepared (a third of
# the consumer's parsing time).
STORED = "stored"


def _required_by_type() -> list[dict[str, Any]]:
    """The OpenAPI schema's share of contracts/event_types.py: per type, its required
    fields, with the type each must then have (not null)."""
    schemas: dict[str, dict[str, Any]] = {
        "item_id": {"anyOf": [_ID_SCHEMA, _INT_ID_SCHEMA]}, "value": {"type": "number"},
        "query": {"type": "string"}}
    return [{"if": {"properties": {"event_type": {"const": t.name}}},
             "then": {"required": list(t.requires),
                      "properties": {name: schemas[name] for name in t.requires}}}
            for t in BY_NAME.values()]


class Event(BaseModel):
    """One event as a client sends it. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda schema: schema.update(
        allOf=_required_by_type()))
    _json: str = PrivateAttr(default="")

    event_id: Id | None = None
    """Unique id; a re-sent event with the same id is stored once. Derived from the
    content when absent."""
    user_id: Id
    item_id: Id | None = None
    """Null only for `search`."""
    event_type: EventType
    value: Value | None = None
    """Rating (required for `rating`), dwell seconds (`view`), amount (`purchase`)."""
    timestamp: Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    """ISO 8601 with a timezone, from 1970 to a day from now; absent or null: when the
    collector received it."""
    session_id: Id | None = None
    query: Query | None = None
    """Search text; required for `search`."""
    request_id: StrictId | None = None
    """The recommendation response that caused this event (its `request_id`)."""
    context: Context = None

    @model_validator(mode="after")
    def _check_rules(self, info: ValidationInfo) -> Event:
        for name, why in BY_NAME[self.event_type].requires.items():
            if getattr(self, name) is None:
                raise _rule(name, f"Field required for a {self.event_type} event ({why})")
        if info.context and info.context.get(STORED) and self.event_id is not None:
            return self  # read back from the stream: its row is what was read
        # One serialisation serves the derived id and the stored row: the row is the id
        # followed by the content, whose key order the contract fixes.
        content = json.dumps(self._content(), separators=(",", ":"), ensure_ascii=False)
        if self.event_id is None:
            self.event_id = derive_event_id(content)
        self._json = f'{{"event_id":{json.dumps(self.event_id, ensure_ascii=False)},{content[1:]}'
        return self

    def _content(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type,
            "value": self.value,
            "timestamp": self.timestamp.isoformat(timespec="microseconds"),
            "session_id": self.session_id,
            "query": self.query,
            "request_id": self.request_id,
            "context": self.context,
        }

    def record(self) -> dict[str, Any]:
        """The `events` row, fields in the contract's order; timestamp as ISO 8601 UTC
        with microseconds, context as JSON text."""
        return {"event_id": self.event_id, **self._content()}

    def to_json(self) -> str:
        """`record()` as JSON, as validated (serialised once, at validation; not for
        an event validated with the STORED context)."""
        assert self._json, "validated as STORED: not for writing"
        return self._json


assert tuple(Event.model_fields) == tuple(f.name for f in EVENT_FIELDS), \
    "Event must list contracts.schemas.EVENT_FIELDS, in order"


def derive_event_id(content_json: str) -> str:
    """A stable id from the content (every field but the id, as JSON): equal content,
    equal id."""
    return hashlib.blake2b(content_json.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str


def parse_events(raw: Sequence[Any], path: str = "events") -> tuple[list[Event], list[Rejected]]:
    """Validate each raw event on its own: (valid events in order, rejections by index).
    `path` names the list in reasons (`events[3].value: ...`); empty for a lone event
    (`value: ...`)."""
    accepted: list[Event] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(raw):
        try:
            accepted.append(Event.model_validate(item))
        except ValidationError as exc:
            rejected.append(Rejected(index, describe(exc, f"{path}[{index}]" if path else "")))
    return accepted, rejected


def describe(exc: ValidationError, where: str = "") -> str:
    """`where.field: message` for each problem (at most SHOWN_ERRORS), joined by `; `."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{_where(where, error)}: {error['msg']}" for error in errors[:SHOWN_ERRORS]]
    if len(errors) > SHOWN_ERRORS:
        parts.append(f"and {len(errors) - SHOWN_ERRORS} more")
    return "; ".join(parts)


def _where(prefix: str, error: Any) -> str:
    loc = tuple(error["loc"]) or ((error.get("ctx") or {}).get("field"),)
    text = prefix
    for part in loc:
        if part is None:
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "event"
