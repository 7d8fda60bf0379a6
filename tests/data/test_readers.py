"""Reading CSV, JSON lines and parquet with line numbers, and column mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models.data.readers import parse_mapping, read_table
from models.data.validate import DataValidationError, normalize_events


def test_csv_line_numbers_count_the_header(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event_type,timestamp\n"
                    "u1,i1,view,2026-01-01\n"
                    "u2,i2,teleport,2026-01-01\n")
    raw, locator, issues = read_table(path)
    result = normalize_events(raw, locator)
    assert issues == []
    assert [str(i) for i in result.issues] == [
        f"{path}: line 3: field 'event_type': unknown event type 'teleport'; expected one of "
        "view, click, add_to_cart, purchase, rating, search, impression"]


def test_jsonl_reports_broken_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"user_id": "u1", "item_id": "i1", "event_type": "click",
                         "timestamp": 1767225600}),
             "{broken",
             "",
             json.dumps([1, 2]),
             json.dumps({"user_id": "u2", "item_id": "i2", "event_type": "click",
                         "timestamp": "not a time"})]
    path.write_text("\n".join(lines) + "\n")
    raw, locator, issues = read_table(path)
    assert [(i.location, i.reason.split(":")[0]) for i in issues] == [
        ("line 2", "not valid JSON"), ("line 4", "each line must be a JSON object, got list")]
    result = normalize_events(raw, locator)
    assert [(i.location, i.field) for i in result.issues] == [("line 5", "timestamp")]


def test_parquet_rows_and_mapping(tmp_path: Path) -> None:
    path = tmp_path / "clicks.parquet"
    pd.DataFrame({"customer": ["c1", "c2"], "sku": ["s1", "s2"], "kind": ["click", "view"],
                  "ts": pd.to_datetime(["2026-01-01", "2026-01-02"])}).to_parquet(path)
    mapping = parse_mapping(["user_id=customer", "item_id=sku", "event_type=kind",
                             "timestamp=ts"])
    raw, locator, _ = read_table(path, mapping)
    result = normalize_events(raw, locator)
    assert result.issues == []
    assert list(result.frame["user_id"]) == ["c1", "c2"]
    assert result.frame["timestamp"].dt.tz is not None


def test_mapping_to_a_missing_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataValidationError, match=r"'customer'.*not in the file"):
        read_table(path, {"user_id": "customer"})
    with pytest.raises(ValueError, match="FIELD=COLUMN"):
        parse_mapping(["user_id"])


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="cannot tell the format"):
        (tmp_path / "e.xlsx").write_text("x")
        read_table(tmp_path / "e.xlsx")
    with pytest.raises(DataValidationError, match="file not found"):
        read_table(tmp_path / "nope.csv")
