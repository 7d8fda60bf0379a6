"""`recstack features ...`: build the feature tables, apply them to Feast, read them online."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer

if TYPE_CHECKING:
    from feast import FeatureStore

    from contracts.settings import Settings

from recstack.cli import checks
from recstack.cli.console import console, errors, fail, progress_bar, steps
from recstack.cli.usage import App

app = App(help="The Feast feature store: build, apply and materialize, read.",
          no_args_is_help=True)

Engine = Literal["feast", "direct"]
DATA = typer.Option(..., "--data", help="Data directory (from `recstack data ...`).")


def require_data(data: Path) -> None:
    if not (data / "events.parquet").exists():
        fail(f"{data / 'events.parquet'} not found: create the data directory with "
             "`recstack data generate` or `recstack data import ...` first")


def features_stale(data: Path) -> bool:
    """The feature tables are missing or older than the data they are built from."""
    from models.data.event_log import newest_mtime
    from models.features.build import feature_paths

    paths = feature_paths(data).values()
    if not all(p.exists() for p in paths):
        return True
    newest_input = max((data / name).stat().st_mtime
                       for name in ("events.parquet", "items.parquet", "users.parquet"))
    # Events the stream consumer appended (`recstack consume`) are part of the data too.
    newest_input = max(newest_input, newest_mtime(data) or 0.0)
    return min(p.stat().st_mtime for p in paths) < newest_input


def run_build(data: Path) -> None:
    from models.data.dataset import read_dataset
    from models.features.build import TABLES, compute_features, write_features

    require_data(data)
    with steps("building features", len(TABLES) + 1) as step:
        step("reading data")
        tables = compute_features(read_dataset(data), progress=step)
    paths = write_features(tables, data)
    for name, count in tables.row_counts().items():
        console.print(f"  {name:<16} {count:>9,} rows  {paths[name]}")


def ready_store(data: Path, settings: Settings,
                announce: Callable[[str], None]) -> FeatureStore:
    """The data directory's feature store, its definitions applied; the feature tables
    built first when they are missing or older than the data."""
    from stores.feature_store import apply_definitions, open_store

    if features_stale(data):
        run_build(data)
    store = open_store(data, settings, announce=announce)
    apply_definitions(store, data)
    return store


def run_apply(data: Path, engine: str, materialize: bool,
              settings: Settings) -> FeatureStore:
    from stores.feature_store import (
        OnlineStoreUnavailable,
        apply_definitions,
        materialize_all,
        open_store,
    )

    require_data(data)
    if features_stale(data):
        console.print("feature tables missing or older than the data: building them first")
        run_build(data)
    try:
        store = open_store(data, settings, announce=console.print)
    except (OnlineStoreUnavailable, ValueError, KeyError) as exc:
        fail(str(exc))
    definitions = apply_definitions(store, data)
    console.print(f"applied {len(definitions.views)} feature views and "
                  f"{len(definitions.services)} feature services to project "
                  f"'{store.project}'")
    if not materialize:
        return store
    done: dict[str, tuple[int, float]] = {}
    with progress_bar(f"materializing ({engine})", len(definitions.views)) as advance:
        def on_view(name: str, rows: int, seconds: float) -> None:
            done[name] = (rows, seconds)
            advance(1)

        materialize_all(store, definitions, engine=engine, on_view=on_view)
    for name, (rows, seconds) in done.items():
        count = f"{rows:>9,} entities" if rows >= 0 else ""
        console.print(f"  {name:<16} {count}  {seconds:6.2f} s")
    return store


@app.command()
def build(data: Path = DATA) -> None:
    """Compute the tables the Feast sources read (DATA/features/*.parquet)."""
    run_build(data)


@app.command()
def apply(
    data: Path = DATA,
    engine: Engine = typer.Option("feast", help="Materialization engine: `feast` "
                               "(FeatureStore.materialize) or `direct` (newest row per "
                               "entity through Feast's online write path; about 2x faster)."),
    materialize: bool = typer.Option(True, help="Load the online store after applying."),
) -> None:
    """Register the feature repo with Feast and materialize it online.

    `feast apply`, then the newest row of every entity into the online store. Builds
    the feature tables first when they are missing or older than the data."""
    run_apply(data, engine, materialize, checks.settings())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value


def read_online(store: FeatureStore, user: str | None, item: str | None) -> dict[str, Any]:
    from stores.feature_store import online_features

    result: dict[str, Any] = {}
    if user is not None:
        values = online_features(store, "user_online", [{"user_id": user}])
        result["user"] = {k: _jsonable(v[0]) for k, v in sorted(values.items())}
    if item is not None:
        values = online_features(store, "item_online", [{"item_id": item}])
        result["item"] = {k: _jsonable(v[0]) for k, v in sorted(values.items())}
    return result


@app.command()
def get(
    data: Path = DATA,
    user: str | None = typer.Option(None, help="A user id: print its `user_online` features."),
    item: str | None = typer.Option(None, help="An item id: print its `item_online` features."),
) -> None:
    """Read online features through the Feast SDK, as serving does."""
    if user is None and item is None:
        fail("give --user, --item or both", 2)
    require_data(data)
    settings = checks.settings()
    from stores.feature_store import open_store  # Feast: after the checks

    store = open_store(data, settings, announce=errors.print)
    console.print_json(json.dumps(read_online(store, user, item), default=str))
