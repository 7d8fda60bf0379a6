"""What `recstack train` reads besides its data: the pipeline config file and the
number of Ray Train workers, each checked before anything heavy is imported where
that can be done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recstack.cli import checks
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

    most = max_workers(checks.ray_address())
    if most is not None and workers > most:
        fail(f"--workers must be from 0 to {most} on this machine (one CPU per Ray Train "
             f"worker; set RAY_ADDRESS to train on a cluster), got {workers}",
             EXIT_INVALID_INPUT)


def load_config(path: Path | None, workers: int, epochs: int | None,
                shards: int | None = None) -> Any:
    """PipelineConfig from an optional YAML/JSON file; a bad or unknown key is named.
    The workers and the Ray cluster they run on (RAY_ADDRESS) come from this command."""
    from pydantic import ValidationError

    from contracts.yaml_file import problems
    from models.pipeline import PipelineConfig

    raw = read_config(path)
    if epochs is not None:
        tower = raw.get("two_tower") or {}
        raw["two_tower"] = {**tower, "epochs": epochs} if isinstance(tower, dict) else tower
    if shards is not None:
        raw["shards"] = shards
    try:
        return PipelineConfig.model_validate({**raw, "workers": workers,
                                              "ray_address": checks.ray_address()})
    except ValidationError as exc:
        fail(f"{path}: {problems(exc)}", EXIT_INVALID_INPUT)
