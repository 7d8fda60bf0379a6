"""One YAML file read into one pydantic model, a mistake named with the file and the
key (`serve.yaml: variants[1].weight: Input should be greater than 0`): serve.yaml and
promotion.yaml both read this way."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def load_model(path: Path, model: type[Model], error: type[Exception]) -> Model:
    """`model` from the mapping in `path`; `error` (with every problem) otherwise."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{path}: {problems(exc)}") from None


def problems(exc: ValidationError, prefix: str = "",
             names: Mapping[str, str] | None = None) -> str:
    """Every problem of a validation, each as `key.path: message` under `prefix`;
    `names`: what to call a top-level field instead (the CLI option or environment
    variable it came from, `--group: must not be empty`)."""
    out = []
    for found in exc.errors():
        path = list(found["loc"])
        if names and path and str(path[0]) in names:
            path[0] = names[str(path[0])]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        out.append(f"{(prefix + loc).lstrip('.') or 'top level'}: "
                   f"{found['msg'].removeprefix('Value error, ')}")
    return "; ".join(out)
