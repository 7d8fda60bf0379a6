"""`recstack data ...`: generate a synthetic world, import MovieLens or your own events."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.table import Table

from contracts.schemas import EVENT_FIELDS, ITEM_FIELDS, USER_FIELDS, describe
from models.data.dataset import (
    Dataset,
    DatasetExistsError,
    check_destination,
    complete_catalogs,
    read_dataset,
    write_dataset,
)
from models.data.validate import DataValidationError, Validated
from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, errors, fail, progress_bar
from recstack.cli.usage import App

app = App(help="Bring data in: synthetic, MovieLens, or your own events.",
          no_args_is_help=True)
import_app = App(help="Import an existing data set into a RecStack data directory.",
                 no_args_is_help=True)
app.add_typer(import_app, name="import")

OUT = typer.Option(..., "--out", help="Data directory to write (created if missing).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace files already in --out.")
SKIP_INVALID = typer.Option(
    False, "--skip-invalid",
    help="Skip invalid rows and report how many were skipped and why, instead of failing.")


class TimestampUnit(StrEnum):
    s = "s"
    ms = "ms"
    us = "us"
    ns = "ns"


def _print_summary(out: Path, summary: dict[str, Any]) -> None:
    table = Table(title=f"Data written to {out}", show_header=False)
    for key in ("events", "users", "items", "first_event", "last_event"):
        table.add_row(key, str(summary[key]))
    table.add_row("by type", ", ".join(f"{k} {v}" for k, v in
                                      summary["event_types"].items()))
    console.print(table)


def _accept(validated: list[Validated], skip_invalid: bool) -> None:
    """Fail on any issue, or report what --skip-invalid skipped. Nothing is dropped silently."""
    issues = [issue for v in validated for issue in v.issues]
    if not issues:
        return
    if not skip_invalid:
        errors.print(str(DataValidationError(issues)), highlight=False, soft_wrap=True)
        fail("input has invalid rows; fix them or pass --skip-invalid to skip them",
             EXIT_INVALID_INPUT)
    errors.print(f"[yellow]skipped {len(issues)} invalid row(s):[/]")
    for v in validated:
        for field, reason, count in v.skipped_summary():
            errors.print(f"  {count:>7}  {field}: {reason}", highlight=False)
    for issue in issues[:5]:
        errors.print(f"  e.g. {issue}", highlight=False)


def _check_out(out: Path, overwrite: bool, append: bool = False) -> None:
    """Before any input is read: --out takes the new tables (or holds the ones to add to)."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file; a data directory goes there", EXIT_INVALID_INPUT)
    if append:
        if not (out / "events.parquet").exists():
            fail(f"--append: {out / 'events.parquet'} not found; there is nothing to add to "
                 "(leave out --append to create the directory)")
        return
    try:
        check_destination(out, overwrite)
    except DatasetExistsError as exc:
        fail(str(exc))


def _write(out: Path, events: pd.DataFrame, items: pd.DataFrame | None,
           users: pd.DataFrame | None, overwrite: bool) -> Dataset:
    items_full, users_full = complete_catalogs(events, items, users)
    try:
        return write_dataset(out, events, items_full, users_full, overwrite=overwrite)
    except DatasetExistsError as exc:
        fail(str(exc))


@app.command()
def generate(
    out: Path = OUT,
    users: int = typer.Option(2000, min=1, help="Number of users."),
    items: int = typer.Option(1000, min=10, help="Number of items in the final catalog."),
    days: int = typer.Option(60, min=1, help="Length of the simulated period in days."),
    seed: int = typer.Option(0, min=0, help="Random seed; the same seed gives byte-identical "
                             "files."),
    start: str = typer.Option("2026-01-01T00:00:00Z", help="First instant of the period (UTC)."),
    workers: int = typer.Option(0, min=0, help="Processes that simulate users side by side "
                                "(0: one per CPU core); the files do not depend on it."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Generate a synthetic shop and its ground truth.

    Its catalog, users and sessions, and the true preference model behind them."""
    from models.data.synthetic import GenerateConfig
    from models.data.synthetic import generate as run

    checks.instant("--start", start)
    config = GenerateConfig(users=users, items=items, days=days, seed=seed, start=start)
    try:
        config.validate()
    except ValueError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    _check_out(out, overwrite)
    with progress_bar("simulating users", users) as advance:
        summary = run(out, config, overwrite=overwrite, progress=advance,
                      workers=workers or os.cpu_count() or 1)
    _print_summary(out, summary)
    console.print(f"ground truth: {out / 'ground_truth'}")


@import_app.command("movielens")
def import_movielens(
    src: Path = typer.Argument(..., help="A MovieLens directory: ml-latest-small "
                               "(ratings.csv, movies.csv, tags.csv) or ml-100k (u.data, ...)."),
    out: Path = OUT,
    overwrite: bool = OVERWRITE,
    skip_invalid: bool = SKIP_INVALID,
) -> None:
    """Import MovieLens (ml-latest-small or ml-100k).

    Each rating becomes a `rating` event; genres, year, tags become item attributes.
    IDs are kept verbatim."""
    from models.data.movielens import detect_layout, read_movielens

    _check_out(out, overwrite)
    try:
        console.print(f"reading {src} ({detect_layout(src)} layout)")
        events, items, users = read_movielens(src)
    except DataValidationError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    _accept([events, items, users], skip_invalid)
    _print_summary(out, _write(out, events.frame, items.frame, users.frame, overwrite).summary())


@import_app.command("events")
def import_events(
    file: Path = typer.Argument(..., help="Events as CSV, TSV, parquet or JSON lines."),
    out: Path = OUT,
    mapping: list[str] = typer.Option(
        [], "--map", help="FIELD=COLUMN: read contract field FIELD from your column COLUMN; "
        "repeat for each renamed field (e.g. --map user_id=customer --map item_id=sku)."),
    items_file: Path | None = typer.Option(
        None, "--items", help="Optional item catalog (same formats, contract column names)."),
    users_file: Path | None = typer.Option(
        None, "--users", help="Optional user table (same formats; extra columns become "
        "attributes)."),
    timestamp_unit: TimestampUnit = typer.Option(
        TimestampUnit.s, help="Unit of numeric (epoch) timestamps."),
    skip_invalid: bool = SKIP_INVALID,
    overwrite: bool = OVERWRITE,
    append: bool = typer.Option(
        False, "--append", help="Add to the events already in --out (duplicates by event_id "
        "are kept once)."),
) -> None:
    """Import your own events (CSV, TSV, parquet or JSON lines).

    Required fields: user_id, event_type, timestamp (and item_id except for searches);
    see `recstack data schema`."""
    from models.data.event_import import merge, read_import
    from models.data.readers import parse_mapping

    if overwrite and append:
        fail("--overwrite and --append exclude each other", EXIT_INVALID_INPUT)
    _check_out(out, overwrite, append)
    try:
        columns = parse_mapping(mapping)
    except ValueError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    try:
        imported = read_import(file, columns, timestamp_unit.value, items_file, users_file)
    except DataValidationError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    _accept(imported.validated, skip_invalid)

    frame, item_frame, user_frame = imported.frames()
    if append:
        try:
            existing = read_dataset(out)
        except FileNotFoundError as exc:
            fail(f"--append: {exc}")
        frame, item_frame, user_frame = merge(existing, frame, item_frame, user_frame)
        overwrite = True
    _print_summary(out, _write(out, frame, item_frame, user_frame, overwrite).summary())


@app.command()
def schema() -> None:
    """Print the data contract: the fields of events, items and users."""
    for title, fields in (("events.parquet", EVENT_FIELDS), ("items.parquet", ITEM_FIELDS),
                          ("users.parquet", USER_FIELDS)):
        console.print(f"\n[bold]{title}[/]")
        console.print(describe(fields), highlight=False, markup=False)


@app.command()
def info(data: Path = typer.Option(..., "--data", help="Data directory.")) -> None:
    """Summarise a data directory."""
    try:
        dataset = read_dataset(data)
    except FileNotFoundError as exc:
        fail(str(exc))
    console.print_json(json.dumps(dataset.summary()))


@app.command("slice")
def slice_data(
    data: Path = typer.Option(..., "--data", help="The data directory to cut from."),
    out: Path = OUT,
    until: str | None = typer.Option(None, "--until", help="Keep events before this "
                                     "instant (ISO 8601): train on these, evaluate on the "
                                     "rest with `recstack evaluate --since`."),
    users_fraction: float = typer.Option(1.0, "--users-fraction", min=0.0, max=1.0,
                                         help="Keep this share of the users (drawn with "
                                         "--seed), e.g. to train a weaker version."),
    seed: int = typer.Option(0, min=0, help="Which users --users-fraction keeps."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Part of a data directory: earlier events, fewer users.

    The catalog and the users table are kept whole (items that appear later exist,
    with no events yet), and so is the generator's ground truth."""
    import shutil

    import numpy as np

    checks.data_dir("--data", data)
    cut = checks.instant("--until", until) if until is not None else None
    if users_fraction <= 0:
        fail("--users-fraction must be more than 0", EXIT_INVALID_INPUT)
    _check_out(out, overwrite)
    dataset = read_dataset(data)
    events = dataset.events
    if cut is not None:
        events = events[pd.to_datetime(events["timestamp"], utc=True) < cut]
    if users_fraction < 1:
        ids = np.array(sorted(events["user_id"].astype(str).unique()), dtype=object)
        keep = np.random.default_rng(seed).random(len(ids)) < users_fraction
        events = events[events["user_id"].astype(str).isin(set(ids[keep]))]
    if events.empty:
        fail(f"nothing left of {data}: no events before --until {until} "
             f"(the data starts {dataset.events['timestamp'].min()})", EXIT_INVALID_INPUT)
    written = _write(out, events.reset_index(drop=True), dataset.items, dataset.users,
                     overwrite)
    truth = data / "ground_truth"
    if truth.is_dir():
        shutil.copytree(truth, out / "ground_truth", dirs_exist_ok=True)
    _print_summary(out, written.summary())
