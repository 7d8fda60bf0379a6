"""Validation of raw tables into the canonical `events`/`items`/`users` frames.

Each `normalize_*` function takes a raw DataFrame as read from a user's file
(strings, numbers, lists, dicts, in any mix), coerces every column to the
contract in `contracts.schemas`, and returns the valid rows together with one
`Issue` per bad cell. Nothing is dropped without an issue naming the file, the
line or row, and the field. Checks are vectorised so 100k-row files validate in
well under a second.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from contracts.event_types import BY_NAME, EVENT_TYPES, requiring


@dataclass(frozen=True)
class Issue:
    """One problem in one input cell (or a whole file, when `location` says so)."""

    source: str
    location: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.location}: field '{self.field}': {self.reason}"


class DataValidationError(ValueError):
    """Raised when input has bad rows and the caller did not ask to skip them."""

    def __init__(self, issues: list[Issue], shown: int = 20) -> None:
        self.issues = issues
        head = "\n".join(f"  {issue}" for issue in issues[:shown])
        more = f"\n  ... and {len(issues) - shown} more" if len(issues) > shown else ""
        super().__init__(f"{len(issues)} invalid value(s):\n{head}{more}")


@dataclass(frozen=True)
class Locator:
    """Turns a 0-based data-row position into the place a person would look.

    CSV: the header is line 1, so row 0 is line 2. JSON lines name each row's
    own line, since blank or broken lines are skipped. Parquet has no lines, so
    rows are counted from 1.
    """

    source: str
    unit: str = "row"
    first: int = 1
    lines: tuple[int, ...] | None = None  # explicit line per row, when some lines were skipped

    def at(self, position: int) -> str:
        if self.lines is not None:
            return f"{self.unit} {self.lines[position]}"
        return f"{self.unit} {position + self.first}"

    def issue(self, position: int, field_name: str, reason: str) -> Issue:
        return Issue(self.source, self.at(position), field_name, reason)

    def file_issue(self, field_name: str, reason: str) -> Issue:
        return Issue(self.source, "whole file", field_name, reason)


@dataclass
class Validated:
    """Valid rows in canonical dtypes, plus every issue found."""

    frame: pd.DataFrame
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Input position of each row of `frame`, so later checks can still name the line.
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def raise_if_invalid(self) -> None:
        if self.issues:
            raise DataValidationError(self.issues)

    def skipped_summary(self) -> list[tuple[str, str, int]]:
        """(field, reason kind, count) for the --skip-invalid report."""
        kinds = Counter((i.field, i.reason.split(":")[0]) for i in self.issues)
        return [(f, r, n) for (f, r), n in kinds.most_common()]


class _Collector:
    """Accumulates issues for a frame and remembers which rows are bad."""

    def __init__(self, frame: pd.DataFrame, locator: Locator) -> None:
        self.locator = locator
        self.bad = np.zeros(len(frame), dtype=bool)
        self.issues: list[Issue] = []

    def flag(self, mask: np.ndarray, field_name: str,
             reason: Callable[[int], str] | str) -> None:
        for pos in np.flatnonzero(mask & ~self.bad):
            text = reason(int(pos)) if callable(reason) else reason
            self.issues.append(self.locator.issue(int(pos), field_name, text))
        self.bad |= mask

    def result(self, frame: pd.DataFrame, notes: list[str] | None = None) -> Validated:
        self.issues.sort(key=lambda i: _position_key(i.location))
        valid = frame.loc[~self.bad].reset_index(drop=True)
        return Validated(valid, self.issues, notes or [], np.flatnonzero(~self.bad))


def _position_key(location: str) -> int:
    tail = location.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def check_references(validated: Validated, column: str, known: set[str], locator: Locator,
                     catalog: str) -> Validated:
    """Move rows whose `column` names an id missing from `catalog` into issues."""
    values = validated.frame[column]
    bad = (values.notna() & ~values.isin(known)).to_numpy()
    if not bad.any():
        return validated
    new = [locator.issue(int(validated.positions[p]), column,
                         f"{values.iat[p]!r} is not in {catalog}") for p in np.flatnonzero(bad)]
    issues = sorted(validated.issues + new, key=lambda i: _position_key(i.location))
    return Validated(validated.frame.loc[~bad].reset_index(drop=True), issues,
                     validated.notes, validated.positions[~bad])


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _as_id(value: Any) -> str | None:
    """IDs are kept verbatim; a float that is an integer (318.0 from a lossy
    reader) is written as the integer it stands for."""
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def string_column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as strings with blanks as None (missing column -> all None)."""
    if name not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame[name].map(_as_id).astype(object)


def _raw(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as read, or all None when the file has no such column."""
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _given(values: pd.Series) -> pd.Series:
    return values.map(lambda v: not _is_blank(v))


def _optional_timestamps(raw: pd.DataFrame, name: str, check: _Collector) -> pd.Series:
    """Parse an optional timestamp column: blanks stay NaT, bad values become issues."""
    values = _raw(raw, name)
    stamps = parse_timestamps(values)
    check.flag((_given(values) & stamps.isna()).to_numpy(), name,
               lambda p: f"unparseable timestamp: {_short(values.iat[p])}")
    return stamps


def _required_unique_ids(raw: pd.DataFrame, name: str, check: _Collector,
                         locator: Locator) -> pd.Series:
    ids = string_column(raw, name)
    check.flag(ids.isna().to_numpy(), name, "missing")
    _unique_ids(ids, name, check, locator)
    return ids


def require_columns(frame: pd.DataFrame, locator: Locator, names: Iterable[str]) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise DataValidationError(
            [locator.file_issue(n, f"required column is missing (columns found: {found})")
             for n in missing])


def parse_timestamps(raw: pd.Series, unit: str = "s") -> pd.Series:
    """Epoch numbers (in `unit`) or date strings -> UTC timestamps; NaT where unparseable.

    Naive date strings are taken as UTC.
    """
    if pd.api.types.is_datetime64_any_dtype(raw):
        stamps = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
        return stamps.astype("datetime64[us, UTC]")
    numeric = pd.to_numeric(raw, errors="coerce")
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    is_num = numeric.notna() & np.isfinite(numeric.astype(float))
    if is_num.any():
        out.loc[is_num] = pd.to_datetime(numeric[is_num], unit=unit, utc=True, errors="coerce")
    text = raw[~is_num & raw.map(lambda v: not _is_blank(v))]
    if len(text):
        # Values that are already datetimes pass through; strings are parsed per element
        # so that one bad cell does not poison the column's format inference.
        parsed = pd.to_datetime(text.astype(str), utc=True, errors="coerce", format="mixed")
        out.loc[text.index] = parsed
    return out


def _parse_context(value: Any) -> tuple[str | None, str | None]:
    """(json text, error) for one context cell."""
    if _is_blank(value):
        return None, None
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str), None
    if isinstance(value, str):
        return _parse_context_text(value)
    return None, f"must be a JSON object, got {_short(value)}"


@functools.lru_cache(maxsize=4096)
def _parse_context_text(value: str) -> tuple[str | None, str | None]:
    # Cached: event files repeat a handful of contexts (device x page) many times.
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at position {exc.pos}"
    if not isinstance(parsed, dict):
        return None, f"must be a JSON object, got {type(parsed).__name__}"
    return json.dumps(parsed, sort_keys=True), None


def derive_event_ids(frame: pd.DataFrame) -> pd.Series:
    """Deterministic ids from each row's content, so re-importing the same file
    yields the same ids. Identical rows are told apart by their occurrence number."""
    key_cols = ["user_id", "item_id", "event_type", "value", "timestamp", "session_id",
                "query"]
    keys = frame[key_cols].astype(str).agg("\x1f".join, axis=1)
    occurrence = keys.groupby(keys).cumcount().astype(str)
    return (keys + "\x1e" + occurrence).map(
        lambda k: hashlib.blake2b(k.encode(), digest_size=12).hexdigest())


def normalize_events(raw: pd.DataFrame, locator: Locator, timestamp_unit: str = "s"
                     ) -> Validated:
    """Validate raw events against the `events` contract."""
    require_columns(raw, locator, ["user_id", "event_type", "timestamp"])
    raw = raw.reset_index(drop=True)
    check = _Collector(raw, locator)
    out = pd.DataFrame(index=raw.index)

    out["user_id"] = string_column(raw, "user_id")
    check.flag(out["user_id"].isna().to_numpy(), "user_id", "missing: every event needs a user")

    out["event_type"] = string_column(raw, "event_type").map(
        lambda v: v.lower() if isinstance(v, str) else v)
    bad_type = ~out["event_type"].isin(EVENT_TYPES).to_numpy()
    check.flag(bad_type, "event_type", lambda p: (
        f"unknown event type {_short(raw.at[p, 'event_type'])}; "
        f"expected one of {', '.join(EVENT_TYPES)}"))

    out["item_id"] = string_column(raw, "item_id")
    needs_item = ~out["event_type"].isin(set(EVENT_TYPES) - requiring("item_id")) & \
        out["item_id"].isna()
    check.flag(needs_item.to_numpy(), "item_id",
               lambda p: f"missing: a {out.at[p, 'event_type']} event needs an item")

    out["value"] = _event_values(raw, out["event_type"], check)

    stamps = parse_timestamps(raw["timestamp"], unit=timestamp_unit)
    check.flag(stamps.isna().to_numpy(), "timestamp",
               lambda p: f"unparseable timestamp: {_short(raw['timestamp'].iat[p])}")
    out["timestamp"] = stamps

    out["session_id"] = string_column(raw, "session_id")
    out["query"] = string_column(raw, "query")
    check.flag((out["event_type"].isin(requiring("query")) & out["query"].isna()).to_numpy(),
               "query", lambda p: _missing(out.at[p, "event_type"], "query"))
    out["request_id"] = string_column(raw, "request_id")

    contexts = _raw(raw, "context").map(_parse_context)
    out["context"] = contexts.map(lambda c: c[0])
    context_error = contexts.map(lambda c: c[1])
    check.flag(context_error.notna().to_numpy(), "context",
               lambda p: str(context_error.iat[p]))

    out["event_id"] = _event_ids(raw, out, check, locator)
    columns = ["event_id", "user_id", "item_id", "event_type", "value", "timestamp",
               "session_id", "query", "request_id", "context"]
    return check.result(out[columns])


def _missing(event_type: str, field: str) -> str:
    return f"missing: a {event_type} event needs {BY_NAME[event_type].requires[field]} " \
        f"in `{field}`"


def _event_values(raw: pd.DataFrame, event_type: pd.Series, check: _Collector) -> pd.Series:
    """The `value` column as floats, its bad cells flagged."""
    raw_value = _raw(raw, "value")
    value = pd.to_numeric(raw_value, errors="coerce").astype(float)
    given = _given(raw_value)
    check.flag((given & value.isna()).to_numpy(), "value",
               lambda p: f"not a number: {_short(raw_value.iat[p])}")
    check.flag((value.notna() & ~np.isfinite(value)).to_numpy(), "value", "not finite")
    check.flag((value < 0).to_numpy(), "value", lambda p: f"negative: {value.iat[p]}")
    check.flag((event_type.isin(requiring("value")) & value.isna() & ~given).to_numpy(), "value",
               lambda p: _missing(event_type.iat[p], "value"))
    return value


def _event_ids(raw: pd.DataFrame, out: pd.DataFrame, check: _Collector, locator: Locator
               ) -> pd.Series:
    """The given event ids, derived ones where none is given (`out`'s other columns
    are complete by now); a repeated id is flagged on every row after its first."""
    given_ids = string_column(raw, "event_id")
    missing_ids = given_ids.isna()
    if missing_ids.any():
        given_ids = given_ids.where(~missing_ids, derive_event_ids(out))
    given_ids = given_ids.rename("event_id")
    dup = given_ids.duplicated(keep="first") & ~pd.Series(check.bad, index=out.index)
    if dup.any():
        first_at = given_ids.reset_index().drop_duplicates("event_id").set_index(
            "event_id")["index"]
        check.flag(dup.to_numpy(), "event_id", lambda p: (
            f"duplicate event_id {given_ids.at[p]!r} "
            f"(first at {locator.at(int(first_at[given_ids.at[p]]))})"))
    return given_ids


def _as_list(value: Any) -> list[str] | None:
    """Lists, arrays or '|'-separated strings -> list of non-empty strings."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v).strip() for v in value if not _is_blank(v)]
    if _is_blank(value):
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    return None


def _list_column(raw: pd.DataFrame, name: str, check: _Collector) -> pd.Series:
    if name not in raw.columns:
        return pd.Series([[] for _ in range(len(raw))], index=raw.index, dtype=object)
    lists = raw[name].map(_as_list)
    check.flag(lists.isna().to_numpy(), name,
               lambda p: ("must be a list or a '|'-separated string, got "
                          f"{_short(raw[name].iat[p])}"))
    return lists.map(lambda v: v if v is not None else [])


def _unique_ids(ids: pd.Series, name: str, check: _Collector, locator: Locator) -> None:
    dup = (ids.duplicated(keep="first") & ids.notna()).to_numpy()
    if dup.any():
        first = {v: i for i, v in reversed(list(enumerate(ids)))}
        check.flag(dup, name, lambda p: (
            f"duplicate {name} {ids.iat[p]!r} (first at {locator.at(first[ids.iat[p]])})"))


def normalize_items(raw: pd.DataFrame, locator: Locator) -> Validated:
    """Validate a raw item catalog against the `items` contract.

    `created_at` may be missing here; `dataset.complete_catalogs` fills it from the
    item's first event.
    """
    require_columns(raw, locator, ["item_id"])
    raw = raw.reset_index(drop=True)
    check = _Collector(raw, locator)
    out = pd.DataFrame(index=raw.index)
    out["item_id"] = _required_unique_ids(raw, "item_id", check, locator)

    title = string_column(raw, "title")
    out["title"] = title.where(title.notna(), out["item_id"])
    out["description"] = string_column(raw, "description")

    categories = _list_column(raw, "categories", check)
    primary = string_column(raw, "category")
    # The primary category leads `categories`; either column may be the one given.
    out["categories"] = [
        ([p] + [c for c in cats if c != p]) if p else cats
        for p, cats in zip(primary, categories, strict=True)]
    out["category"] = [cats[0] if cats else "unknown" for cats in out["categories"]]
    out["tags"] = _list_column(raw, "tags", check)

    raw_price = _raw(raw, "price")
    price = pd.to_numeric(raw_price, errors="coerce").astype(float)
    given = _given(raw_price)
    check.flag((given & price.isna()).to_numpy(), "price",
               lambda p: f"not a number: {_short(raw_price.iat[p])}")
    check.flag(((price < 0) | (price.notna() & ~np.isfinite(price))).to_numpy(), "price",
               lambda p: f"must be finite and >= 0, got {price.iat[p]}")
    out["price"] = price

    raw_year = _raw(raw, "year")
    year = pd.to_numeric(raw_year, errors="coerce")
    bad_year = (_given(raw_year) & year.isna()) | (
        year.notna() & ((year % 1 != 0) | (year < 1000) | (year > 3000)))
    check.flag(bad_year.to_numpy(), "year",
               lambda p: f"not a plausible year: {_short(raw_year.iat[p])}")
    out["year"] = year.where(~bad_year).astype("Int32")

    out["created_at"] = _optional_timestamps(raw, "created_at", check)

    if "available" in raw.columns:
        avail = raw["available"].map(_as_bool)
        check.flag((avail.isna() & _given(raw["available"])).to_numpy(), "available",
            lambda p: f"not a boolean: {_short(raw['available'].iat[p])}")
        out["available"] = avail.fillna(True).astype(bool)
    else:
        out["available"] = True
    return check.result(out)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if _is_blank(value):
        return None
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "y", "t"}:
        return True
    if text in {"false", "0", "no", "n", "f"}:
        return False
    return None


def normalize_users(raw: pd.DataFrame, locator: Locator) -> Validated:
    """Validate raw users; columns outside the contract are folded into `attributes`."""
    require_columns(raw, locator, ["user_id"])
    raw = raw.reset_index(drop=True)
    check = _Collector(raw, locator)
    out = pd.DataFrame(index=raw.index)
    out["user_id"] = _required_unique_ids(raw, "user_id", check, locator)
    out["created_at"] = _optional_timestamps(raw, "created_at", check)
    out["segment"] = string_column(raw, "segment")

    extra = [c for c in raw.columns if c not in {"user_id", "created_at", "segment",
                                                 "attributes"}]
    given_attrs = _raw(raw, "attributes").map(_parse_context)
    attr_error = given_attrs.map(lambda c: c[1])
    check.flag(attr_error.notna().to_numpy(), "attributes", lambda p: str(attr_error.iat[p]))

    def merged(pos: int) -> str | None:
        attrs: dict[str, Any] = json.loads(given_attrs.iat[pos][0] or "{}")
        for col in extra:
            value = raw[col].iat[pos]
            if not _is_blank(value):
                attrs[str(col)] = value.item() if isinstance(value, np.generic) else value
        return json.dumps(attrs, sort_keys=True, default=str) if attrs else None

    out["attributes"] = [merged(p) for p in range(len(raw))]
    return check.result(out)
