"""The `recstack` CLI as a user runs it: help everywhere, clear errors, nothing dropped silently."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from recstack.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def _all_commands(group, prefix: tuple[str, ...] = ()):
    yield prefix
    if hasattr(group, "commands"):  # typer vendors its own click: duck-type the groups
        for name, command in group.commands.items():
            yield from _all_commands(command, (*prefix, name))


def test_every_command_has_help() -> None:
    root = typer.main.get_command(app)
    paths = list(_all_commands(root))
    assert ("data", "import", "movielens") in paths and ("features", "apply") in paths
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_generate_then_refuse_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "world"
    result = run("data", "generate", "--out", str(out), "--users", "40", "--items", "30",
                 "--days", "5")
    assert result.exit_code == 0, result.output
    assert "simulating users" in result.stderr  # progress is shown
    for name in ("events.parquet", "items.parquet", "users.parquet"):
        assert (out / name).exists()
    again = run("data", "generate", "--out", str(out), "--users", "40", "--items", "30")
    assert again.exit_code == 1
    assert "already exists; pass --overwrite" in again.stderr


def test_generate_rejects_bad_sizes(tmp_path: Path) -> None:
    result = run("data", "generate", "--out", str(tmp_path), "--items", "3")
    assert result.exit_code == 2
    assert "--items must be at least 10, got 3" in result.stderr


BAD_CSV = """customer,sku,kind,when,amount
c1,s1,view,2026-01-01T10:00:00Z,12
c1,s2,fly,2026-01-01T10:01:00Z,
c2,,click,2026-01-01T10:02:00Z,
c2,s1,purchase,2026-01-01T10:03:00Z,19.99
c3,s9,rating,not-a-date,4
"""
MAP = ["--map", "user_id=customer", "--map", "item_id=sku", "--map", "event_type=kind",
       "--map", "timestamp=when", "--map", "value=amount"]


def test_import_events_fails_naming_file_line_and_field(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(BAD_CSV)
    result = run("data", "import", "events", str(src), "--out", str(tmp_path / "d"), *MAP)
    assert result.exit_code == 2, result.output
    assert f"{src}: line 3: field 'event_type': unknown event type 'fly'" in result.stderr
    assert f"{src}: line 4: field 'item_id': missing: a click event needs an item" \
        in result.stderr
    assert f"{src}: line 6: field 'timestamp': unparseable timestamp: 'not-a-date'" \
        in result.stderr
    assert not (tmp_path / "d" / "events.parquet").exists()


def test_import_events_skip_invalid_reports_counts(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(BAD_CSV)
    out = tmp_path / "d"
    result = run("data", "import", "events", str(src), "--out", str(out), *MAP,
                 "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "skipped 3 invalid row(s)" in result.stderr
    assert "1  event_type: unknown event type 'fly'; expected one of" in result.stderr
    events = pd.read_parquet(out / "events.parquet")
    assert list(events["event_type"]) == ["view", "purchase"]
    items = pd.read_parquet(out / "items.parquet")
    assert sorted(items["item_id"]) == ["s1"]  # catalog derived from the accepted events


def test_an_existing_destination_is_refused_before_the_input_is_read(tmp_path: Path) -> None:
    src = tmp_path / "events.csv"
    src.write_text(BAD_CSV)
    out = tmp_path / "d"
    assert run("data", "import", "events", str(src), "--out", str(out), *MAP,
               "--skip-invalid").exit_code == 0
    before = (out / "events.parquet").read_bytes()
    again = run("data", "import", "events", str(src), "--out", str(out), *MAP,
                "--skip-invalid")
    assert again.exit_code == 1
    # One line, the refusal: no report of skipped rows that then come to nothing.
    assert again.stderr.startswith(f"error: {out / 'events.parquet'} already exists; pass "
                                   "--overwrite")
    assert again.stderr.count("\n") == 1 and "skipped" not in again.stderr
    assert (out / "events.parquet").read_bytes() == before
    nothing = run("data", "import", "events", str(src), "--out", str(tmp_path / "new"),
                  *MAP, "--skip-invalid", "--append")
    assert nothing.exit_code == 1 and "nothing to add to" in nothing.stderr
    assert "skipped" not in nothing.stderr
    movielens = run("data", "import", "movielens", str(tmp_path / "no-such-dir"), "--out",
                    str(out))
    assert movielens.exit_code == 1 and "already exists" in movielens.stderr


def test_import_events_with_catalog_and_append(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"event_id": "a", "user_id": "u", "item_id": "x", '
                      '"event_type": "view", "timestamp": 1767225600}\n')
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,category,price\nx,Thing,toys,5\ny,Other,toys,7\n")
    out = tmp_path / "d"
    assert run("data", "import", "events", str(events), "--out", str(out), "--items",
               str(items)).exit_code == 0
    more = tmp_path / "more.jsonl"
    more.write_text('{"event_id": "a", "user_id": "u", "item_id": "x", "event_type": "view",'
                    ' "timestamp": 1767225600}\n{"event_id": "b", "user_id": "v", '
                    '"item_id": "y", "event_type": "click", "timestamp": 1767225700}\n')
    refused = run("data", "import", "events", str(more), "--out", str(out))
    assert refused.exit_code == 1 and "--append" in refused.stderr
    appended = run("data", "import", "events", str(more), "--out", str(out), "--append")
    assert appended.exit_code == 0, appended.output
    stored = pd.read_parquet(out / "events.parquet")
    assert sorted(stored["event_id"]) == ["a", "b"]  # the re-sent event is not duplicated
    catalog = pd.read_parquet(out / "items.parquet").set_index("item_id")
    assert catalog.loc["y", "title"] == "Other" and catalog.loc["x", "price"] == 5.0


def test_event_for_item_missing_from_catalog(tmp_path: Path) -> None:
    events = tmp_path / "e.csv"
    events.write_text("user_id,item_id,event_type,timestamp\nu,zzz,view,2026-01-01\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\nx,Thing\n")
    result = run("data", "import", "events", str(events), "--out", str(tmp_path / "d"),
                 "--items", str(items))
    assert result.exit_code == 2
    assert f"{events}: line 2: field 'item_id': 'zzz' is not in {items}" in result.stderr


@pytest.mark.parametrize("args", [
    ("data", "import", "movielens", "/nonexistent/ml"),
    ("data", "import", "events", "/nonexistent/e.csv"),
])
def test_missing_sources_are_named(args: tuple[str, ...], tmp_path: Path) -> None:
    result = run(*args, "--out", str(tmp_path))
    assert result.exit_code == 2
    assert args[-1] in result.stderr


def test_bad_mapping_and_feature_commands_without_data(tmp_path: Path) -> None:
    bad = run("data", "import", "events", "x.csv", "--out", str(tmp_path), "--map", "user_id")
    assert bad.exit_code == 2 and "--map expects FIELD=COLUMN" in bad.stderr
    build = run("features", "build", "--data", str(tmp_path))
    assert build.exit_code == 1 and "recstack data generate" in build.stderr
    get = run("features", "get", "--data", str(tmp_path))
    assert get.exit_code == 2 and "give --user, --item or both" in get.stderr


def test_schema_lists_every_field() -> None:
    result = run("data", "schema")
    assert result.exit_code == 0
    for field in ("event_id", "request_id", "context", "categories", "available",
                  "attributes"):
        assert f"`{field}`" in result.output
