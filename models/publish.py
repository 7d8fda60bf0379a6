"""A trained version into the registry: its files (the serving bundle, the stored
lists, the cold-start list, the metrics and the Feast registry snapshot serving reads
its feature views from) and its manifest (what it was trained on, the parameters and
every figure training measured), published as one new version."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from stores.registry import (
    FALLBACK_FILE,
    FEATURE_REGISTRY_FILE,
    RECS_FILE,
    Manifest,
    Registry,
    code_revision,
    new_version_id,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from models.pipeline import PipelineResult


def data_snapshot(data: Path, events: pd.DataFrame) -> dict[str, Any]:
    """What a version was trained on: the data directory, its events' count, users,
    time range and digest (`events_sha256`, what ties a version to its data)."""
    from models.data.dataset import events_sha256

    digest = events_sha256(data)
    return {"data_dir": str(data.resolve()), "events": len(events),
            "users": int(events["user_id"].nunique()),
            "first_event": str(events["timestamp"].min()),
            "last_event": str(events["timestamp"].max()), "events_sha256": digest}


def against_truth(data: Path, result: PipelineResult, events: pd.DataFrame
                  ) -> dict[str, dict[str, float]] | None:
    """On generated data: the served lists, popularity and the truth's own lists, scored
    against the world's true next-choice probabilities; None on data without a ground
    truth."""
    from models.data.synthetic import GroundTruth
    from models.evaluation.ground_truth import serving_against_truth

    try:
        truth = GroundTruth.load(data)
    except FileNotFoundError:
        return None
    return serving_against_truth(truth, result.serving_lists, result.fallback, events)


def new_version(result: PipelineResult) -> str:
    """A new version id, its suffix from the run's timings."""
    return new_version_id(suffix=hashlib.blake2b(str(result.timings).encode(),
                                                 digest_size=3).hexdigest())


def write_files(result: PipelineResult, feature_registry: bytes, out: Path) -> None:
    """The version's files into the directory `out`."""
    from models.bundle import save_bundle

    save_bundle(result.bundle, out)  # generators, ranker: on-demand scoring
    result.serving_lists.to_parquet(out / RECS_FILE, index=False)
    result.fallback.to_parquet(out / FALLBACK_FILE, index=False)
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=1))
    # Serving reads its feature views from here: no data directory in a pod.
    (out / FEATURE_REGISTRY_FILE).write_bytes(feature_registry)


def manifest(version: str, result: PipelineResult, snapshot: dict[str, Any], protocol: str,
             truth: dict[str, dict[str, float]] | None) -> Manifest:
    """The version's manifest: the held-out figures (`protocol` says how they were held
    out) beside the baselines', the stages, timings, segments, the ground-truth scores
    when there are any, the exposure calibration and the ranker's importances."""
    return Manifest(
        version=version, created_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
        code_revision=code_revision(), data_snapshot=snapshot,
        feature_service="ranker",
        params={**result.config, "two_tower_training": result.two_tower},
        metrics={"protocol": protocol, "test": result.metrics["two_stage"],
                 "baselines": {k: v for k, v in result.metrics.items()
                               if k != "two_stage"},
                 "stages": result.stages, "timings": result.timings,
                 "segments": result.segments,
                 **({"ground_truth": truth} if truth else {}),
                 "exposure": result.exposure.to_dict(orient="list"),
                 "ranker_importance": result.bundle.ranker.importance()})


def publish(registry: Registry, result: PipelineResult, store: FeatureStore, data: Path,
            events: pd.DataFrame, protocol: str,
            truth: dict[str, dict[str, float]] | None = None) -> str:
    """Write the trained `result` (on the data directory `data`, whose `events` it was
    trained on, with the feature store `store`) into `registry` as a new version;
    returns its id."""
    from stores.feature_store import registry_snapshot

    version = new_version(result)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_files(result, registry_snapshot(store), out)
        registry.publish(manifest(version, result, data_snapshot(data, events), protocol,
                                  truth), out)
    return version
