"""A trained version and a materialized online store, shared by the serving tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recstack.cli import app
from stores.feature_store import apply_definitions, materialize_all, open_store
from stores.registry import Registry
from tests.cli.test_train import SMALL
from tests.serving.live_server import server  # noqa: F401  (the session's `recstack serve`)


@pytest.fixture(scope="session")
def served_version(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local directory of a version trained on the small world (small config)."""
    out = tmp_path_factory.mktemp("served")
    config = out / "small.yaml"
    config.write_text(json.dumps(SMALL))
    trained = CliRunner().invoke(app, ["train", "--data", str(small_world), "--registry",
                                       str(out / "reg"), "--config", str(config)],
                                 env={"RECSTACK_ONLINE_STORE": "sqlite"})
    assert trained.exit_code == 0, trained.output
    registry = Registry(str(out / "reg"))
    return Path(registry.fetch(registry.resolve().version))


@pytest.fixture()
def online_store(small_world: Path, redis_settings):  # type: ignore[no-untyped-def]
    """The small world's features materialized into the (flushed) test Redis."""
    store = open_store(small_world, redis_settings)
    materialize_all(store, apply_definitions(store, small_world))
    return store
