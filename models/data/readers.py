"""Reading a user's tabular file (CSV, parquet, JSON lines) into a raw frame.

Values are read as the file has them (CSV as strings) so that validation, not
the reader, decides what is acceptable and can name the line of each bad cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from models.data.validate import DataValidationError, Issue, Locator

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataValidationError([Issue(str(path), "whole file", "-", (
            f"cannot tell the format from the extension {path.suffix!r}; "
            f"expected one of {', '.join(sorted(FORMATS))}"))])
    return fmt


def read_table(path: Path, mapping: dict[str, str] | None = None
               ) -> tuple[pd.DataFrame, Locator, list[Issue]]:
    """Read `path`, rename columns by `mapping` (contract name -> file column).

    Returns the raw frame, a locator that turns row positions into lines, and the
    issues of lines that could not be read at all (bad JSON).
    """
    if not path.exists():
        raise DataValidationError([Issue(str(path), "whole file", "-", "file not found")])
    fmt = detect_format(path)
    issues: list[Issue] = []
    if fmt in ("csv", "tsv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False,
                            sep="\t" if fmt == "tsv" else ",")
        # Header is line 1; this assumes no quoted newlines, which event files rarely have.
        locator = Locator(str(path), "line", 2)
    elif fmt == "parquet":
        frame = pq.read_table(path).to_pandas()
        locator = Locator(str(path), "row", 1)
    else:
        frame, locator, issues = _read_jsonl(path)
    if mapping:
        frame = apply_mapping(frame, mapping, locator)
    return frame, locator, issues


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, Locator, list[Issue]]:
    records: list[dict[str, object]] = []
    lines: list[int] = []
    issues: list[Issue] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                issues.append(Issue(str(path), f"line {number}", "-",
                                    f"not valid JSON: {exc.msg} at column {exc.colno}"))
                continue
            if not isinstance(record, dict):
                issues.append(Issue(str(path), f"line {number}", "-",
                                    f"each line must be a JSON object, got "
                                    f"{type(record).__name__}"))
                continue
            records.append(record)
            lines.append(number)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    return frame, Locator(str(path), "line", 1, tuple(lines)), issues


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`["user_id=customer", "item_id=sku"]` -> {"user_id": "customer", ...}."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, source = pair.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise ValueError(f"--map expects FIELD=COLUMN, got {pair!r}")
        mapping[target.strip()] = source.strip()
    return mapping


def apply_mapping(frame: pd.DataFrame, mapping: dict[str, str], locator: Locator
                  ) -> pd.DataFrame:
    missing = [src for src in mapping.values() if src not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise DataValidationError([locator.file_issue(
            src, f"column named in the mapping is not in the file (columns found: {found})")
            for src in missing])
    # Drop columns that would collide with a mapped name, then rename.
    clashing = [t for t, s in mapping.items() if t in frame.columns and t != s]
    return frame.drop(columns=clashing).rename(columns={s: t for t, s in mapping.items()})
