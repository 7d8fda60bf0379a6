"""Checks of what a user typed that Typer's types and ranges cannot express, run
before a command imports or computes anything, so that a typo costs no wait."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from recstack.cli.console import EXIT_INVALID_INPUT, fail

if TYPE_CHECKING:  # pandas is imported where a check needs it: --help stays fast
    import pandas as pd
    from pydantic import BaseModel

    from contracts.settings import Settings

Model = TypeVar("Model", bound="BaseModel")


def output_file(option: str, path: Path, suffixes: tuple[str, ...] = ()) -> None:
    """A file the command will write: its directory must exist (found out only at
    the end otherwise), and it must not be a directory itself."""
    if suffixes and path.suffix not in suffixes:
        fail(f"{option} must end in {' or '.join(suffixes)}, got {path.name!r}",
             EXIT_INVALID_INPUT)
    if path.is_dir():
        fail(f"{option} {path}: is a directory; name the file to write",
             EXIT_INVALID_INPUT)
    if not path.parent.is_dir():
        fail(f"{option} {path}: no directory {path.parent}", EXIT_INVALID_INPUT)


def not_both(first: str, first_value: Any, second: str, second_value: Any) -> None:
    if first_value is not None and second_value is not None:
        fail(f"give {first} or {second}, not both", EXIT_INVALID_INPUT)


def data_dir(option: str, path: Path, hint: str = "") -> None:
    """`hint`: what to do, e.g. when the path was a default the user did not type."""
    if not (path / "events.parquet").exists():
        fail(f"{option} {path}: not a data directory (no events.parquet)"
             + (f"; {hint}" if hint else ""), EXIT_INVALID_INPUT)


def settings() -> Settings:
    """The RECSTACK_* environment, read once by the command and handed down: the
    library below never reads it. A bad value is the user's input, not a crash."""
    from pydantic import ValidationError

    from contracts.settings import Settings
    from contracts.yaml_file import problems

    try:
        return Settings.from_env()
    except ValidationError as exc:  # one line, as every other bad input
        fail(f"the RECSTACK_* environment: {problems(exc)}", EXIT_INVALID_INPUT)


def ray_address() -> str | None:
    """RAY_ADDRESS, Ray's own variable: the cluster to join (a KubeRay cluster, `ray
    start` on this machine, `auto`); None: a local Ray, started on first use."""
    return os.environ.get("RAY_ADDRESS") or None


def validated(built: type[Model], named: Mapping[str, str], **values: Any) -> Model:
    """`built` from what the user gave, checked by the model's own constraints; a value
    it refuses is the user's input: one line naming where it came from (`named`: field
    -> option or variable), as for a bad option: `--group: must not be empty`."""
    from pydantic import ValidationError

    from contracts.yaml_file import problems

    try:
        return built(**values)
    except ValidationError as exc:
        fail(problems(exc, names=named), EXIT_INVALID_INPUT)


def cutoffs(option: str, text: str) -> list[int]:
    """Comma-separated cut-offs such as `10,20,50`, each at least 1."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(f"{option} must be comma-separated integers, got {text!r}", EXIT_INVALID_INPUT)
    if not values or min(values) < 1:
        fail(f"{option} must be integers of at least 1, got {text!r}", EXIT_INVALID_INPUT)
    return values


def instant(option: str, text: str) -> pd.Timestamp:
    """An ISO 8601 time that pandas can hold, in UTC (naive = UTC)."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, OverflowError) as exc:
        fail(f"{option} must be an ISO 8601 time such as 2026-01-01T00:00:00Z, got "
             f"{text!r} ({exc})", EXIT_INVALID_INPUT)
    return as_utc(stamp)


def as_utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """The same instant in UTC; a naive time is read as UTC, as the data contract does."""
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
