"""Opening RecStack's Feast store for a data directory, with the embedded default.

`feature_repo/feature_store.yaml` is read once here: `${VAR}` values are
expanded from the caller's `Settings` (read from the environment at the entry
point, not here), the online store is Redis when one answers (or when asked for
explicitly) and Feast's embedded SQLite otherwise, and the registry lives beside
the data unless a shared one (a file or a SQL database) is configured.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml
from feast import FeatureStore, FeatureView, FileSource, RepoConfig

import feature_repo
from contracts.settings import Settings
from feature_repo.definitions import DAILY_SNAPSHOTS, Definitions, build_definitions
from stores.redis_address import RedisAddress

REPO_DIR = Path(feature_repo.__file__).parent
STORE_DIR = "feature_store"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@contextlib.contextmanager
def _quiet_offline_store() -> Iterator[None]:
    """ibis (under Feast's DuckDB offline store) calls a method duckdb deprecated; the
    warning is theirs, not the user's, so it is kept off the console."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fetch_arrow_table",
                                category=DeprecationWarning)
        yield


class OnlineStoreUnavailable(RuntimeError):
    pass


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace every `${VAR}`; an unknown variable is an error, not a literal."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise KeyError(f"feature_store.yaml uses ${{{name}}}, which is not set")
        return env[name]
    return _VAR.sub(value, text)


def _yaml_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    store_dir = (data_dir / STORE_DIR).resolve()
    registry = settings.feast_registry or str(store_dir / "registry.db")
    is_sql = registry.split(":", 1)[0].startswith(("postgresql", "mysql", "sqlite"))
    return {
        "RECSTACK_FEAST_PROJECT": settings.feast_project,
        "RECSTACK_FEAST_REGISTRY_TYPE": "sql" if is_sql else "file",
        "RECSTACK_FEAST_REGISTRY": registry,
        "RECSTACK_REDIS": settings.redis,
    }


def repo_config(data_dir: Path, settings: Settings,
                announce: Callable[[str], None] = print) -> RepoConfig:
    """The Feast configuration for `data_dir`, choosing the online store."""
    text = (REPO_DIR / "feature_store.yaml").read_text()
    raw = yaml.safe_load(expand(text, _yaml_env(settings, data_dir)))
    store_dir = (data_dir / STORE_DIR).resolve()
    store_dir.mkdir(parents=True, exist_ok=True)
    address = RedisAddress.parse(settings.redis)
    if settings.online_store == "sqlite":
        use_redis = False
    else:
        use_redis = address.reachable()
        if not use_redis and settings.online_store == "redis":
            raise OnlineStoreUnavailable(
                f"RECSTACK_ONLINE_STORE=redis but no Redis answers at {address}")
    if use_redis:
        announce(f"online store: Redis at {address}")
    else:
        sqlite_path = store_dir / "online.db"
        why = ("RECSTACK_ONLINE_STORE=sqlite" if settings.online_store == "sqlite"
               else f"no Redis at {address}")
        announce(f"online store: embedded SQLite at {sqlite_path} ({why})")
        raw["online_store"] = {"type": "sqlite", "path": str(sqlite_path)}
    config = RepoConfig(**raw)
    config.repo_path = REPO_DIR
    return config


def open_store(data_dir: Path, settings: Settings,
               announce: Callable[[str], None] = print) -> FeatureStore:
    return FeatureStore(config=repo_config(data_dir, settings, announce), repo_path=str(REPO_DIR))


def registry_snapshot(store: FeatureStore) -> bytes:
    """The store's Feast registry as one serialized proto, for a version to carry
    (FEATURE_REGISTRY_FILE): Feast's file registry reads exactly this format."""
    return bytes(store.registry.proto().SerializeToString())


def snapshot_projects(path: Path) -> set[str]:
    """The Feast projects whose feature services a registry snapshot holds."""
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    proto = RegistryProto()
    proto.ParseFromString(path.read_bytes())
    return {service.spec.project for service in proto.feature_services}


def apply_definitions(store: FeatureStore, data_dir: Path) -> Definitions:
    """Register RecStack's objects (the `feast apply` step) for this data directory."""
    if not any((data_dir / "features").glob("*.parquet")):
        raise FileNotFoundError(
            f"{data_dir / 'features'} has no feature tables: run "
            f"`recstack features build --data {data_dir}` first")
    definitions = build_definitions(data_dir)
    store.apply(definitions.objects())
    return definitions


MATERIALIZE_ENGINES = ("feast", "direct")


def latest_rows(view: FeatureView, keys: list[str], end: datetime) -> pd.DataFrame:
    """The newest row per entity in a view's batch source, as of `end`."""
    source = view.batch_source
    assert isinstance(source, FileSource), "RecStack's batch sources are parquet files"
    frame = pq.read_table(source.path).to_pandas()
    frame = frame[frame[source.timestamp_field] <= pd.Timestamp(end)]
    ordered = frame.sort_values([source.timestamp_field, source.created_timestamp_column],
                                kind="stable")
    return ordered.drop_duplicates(keys, keep="last").reset_index(drop=True)


def materialize_all(store: FeatureStore, definitions: Definitions, engine: str = "feast",
                    on_view: Callable[[str, int, float], None] | None = None,
                    end: datetime | None = None) -> dict[str, float]:
    """Load the newest row of every entity into the online store, view by view.

    `feast` (default) runs `FeatureStore.materialize`, which also records the
    materialized interval in the registry. `direct` picks each entity's newest
    row with pyarrow and writes it through Feast's `write_to_online_store`, the
    write path `materialize` ends in: about 2x faster at 10k users (BENCHMARKS.md),
    for when the registry's interval bookkeeping is not needed. Returns seconds
    per view; `on_view(name, rows, seconds)` with rows -1 where Feast does not say.
    """
    if engine not in MATERIALIZE_ENGINES:
        raise ValueError(f"engine must be one of {MATERIALIZE_ENGINES}, got {engine!r}")
    end = end or datetime.now(UTC) + timedelta(days=1)
    start = datetime(1970, 1, 2, tzinfo=UTC)
    timings: dict[str, float] = {}
    for name, view in definitions.views.items():
        began = time.perf_counter()
        if engine == "direct":
            rows = latest_rows(view, definitions.join_keys(view), end)
            store.write_to_online_store(name, rows)
            count = len(rows)
        else:
            with _quiet_offline_store(), contextlib.redirect_stdout(io.StringIO()):
                # (stdout: Feast prints a banner per view)
                store.materialize(start_date=start, end_date=end, feature_views=[name])
            count = -1
        timings[name] = time.perf_counter() - began
        if on_view is not None:
            on_view(name, count, timings[name])
    return timings


def online_features(store: FeatureStore, service: str, rows: list[dict[str, str]]
                    ) -> dict[str, list[Any]]:
    """Online features of a feature service for the given entity rows."""
    return store.get_online_features(features=store.get_feature_service(service),
                                     entity_rows=rows).to_dict()


JOIN_ENGINES = ("asof", "feast")


def training_frame(store: FeatureStore, entity_df: pd.DataFrame, service: str,
                   engine: str = "asof") -> pd.DataFrame:
    """Point-in-time-correct features for (entity keys, event_timestamp) rows: one row
    out per row in, in order, with `entity_df`'s columns kept.

    Columns are named `view__feature`, since user and item views share stems such as
    `views_7d`. `engine="asof"` is stores.point_in_time's ASOF join over the same
    sources; `"feast"` is `get_historical_features`. Feast's join costs (rows x
    snapshots per key), so there each entity's views are joined once per distinct
    (key, time) and merged back; a view tagged as daily snapshots sees times floored
    to the day, which picks the very same snapshot (every row is stamped at a
    midnight) and lets many examples share one lookup.
    """
    if engine == "asof":
        from stores.point_in_time import asof_features

        return asof_features(store, entity_df, service)
    if engine != "feast":
        raise ValueError(f"unknown join engine {engine!r}; known: {', '.join(JOIN_ENGINES)}")
    out = entity_df.reset_index(drop=True)
    at = pd.to_datetime(out["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    groups: dict[tuple[tuple[str, ...], bool], list[str]] = {}
    for projection in store.get_feature_service(service).feature_view_projections:
        view = store.get_feature_view(projection.name)
        daily = DAILY_SNAPSHOTS.items() <= view.tags.items()
        groups.setdefault((tuple(view.join_keys), daily), []).extend(
            f"{projection.name_to_use()}:{feature.name}" for feature in projection.features)
    for (keys, daily), refs in groups.items():
        when = at.dt.floor("D") if daily else at
        lookups = out[list(keys)].assign(event_timestamp=when).drop_duplicates()
        with _quiet_offline_store():
            joined = store.get_historical_features(entity_df=lookups, features=refs,
                                                   full_feature_names=True).to_df()
        joined["_at"] = pd.to_datetime(joined.pop("event_timestamp"), utc=True).astype(
            "datetime64[ns, UTC]")
        out = out.assign(_at=when).merge(joined, on=[*keys, "_at"], how="left",
                                         validate="many_to_one").drop(columns="_at")
    return out
