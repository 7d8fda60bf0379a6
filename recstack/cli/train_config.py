"""What `recstack train` reads besides its data: the pipeline config file and the
number of Ray Train workers, each checked before anything heavy is imported where
that can be done."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from recstack.cli.console import EXIT_INVALID_INPUT, fail


def read_config(path: Path | None) -> dict[str, Any]:
    """The config file as a mapping (empty without one); cheap, so checked first."""
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        fail(f"--config {path}: cannot read it: {exc}", EXIT_INVALID_INPUT)
    if not isinstance(raw, dict):
        fail(f"--config {path}: must be a mapping", EXIT_INVALID_INPUT)
    return raw


def check_workers(workers: int) -> None:
    """Ray Train waits forever for workers a local Ray has no CPU for."""
    from models.ray_runtime import max_workers

    most = max_workers()
    if most is not None and workers > most:
        fail(f"--workers must be from 0 to {most} on this machine (one CPU per Ray Train "
             f"worker; set RAY_ADDRESS to train on a cluster), got {workers}",
             EXIT_INVALID_INPUT)


def load_config(path: Path | None, workers: int, epochs: int | None) -> Any:
    """PipelineConfig from an optional YAML/JSON file; unknown keys are errors."""
    from models.pipeline import PipelineConfig
    from models.two_tower.train import TwoTowerConfig

    raw = read_config(path)
    known = {f.name for f in fields(PipelineConfig)}
    tower_known = {f.name for f in fields(TwoTowerConfig)}
    for key in raw:
        if key not in known:
            fail(f"{path}: unknown field {key!r}; known: {', '.join(sorted(known))}",
                 EXIT_INVALID_INPUT)
    tower = raw.pop("two_tower", {}) or {}
    for key in tower:
        if key not in tower_known:
            fail(f"{path}: unknown field 'two_tower.{key}'; known: "
                 f"{', '.join(sorted(tower_known))}", EXIT_INVALID_INPUT)
    if epochs is not None:
        tower["epochs"] = epochs
    from models.evaluation.split import SPLITS
    from recstack.feature_store import JOIN_ENGINES

    for name, choices in (("join_engine", JOIN_ENGINES), ("split", tuple(SPLITS))):
        if name in raw and raw[name] not in choices:
            fail(f"{path}: {name} must be one of {', '.join(choices)}, got {raw[name]!r}",
                 EXIT_INVALID_INPUT)
    try:
        return PipelineConfig(**raw, two_tower=TwoTowerConfig(**tower), workers=workers)
    except TypeError as exc:
        fail(f"{path}: {exc}", EXIT_INVALID_INPUT)
