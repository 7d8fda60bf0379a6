"""`recstack serve --model-dir`: a version directory alone, as KServe's storage
initializer leaves it at /mnt/models in a predictor pod, is served with no registry
and no data directory: the version carries its Feast registry."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from recstack.feature_store import apply_definitions, materialize_all, open_store
from recstack.registry import FEATURE_REGISTRY_FILE, MANIFEST
from recstack.settings import Settings
from tests.conftest import TEST_REDIS
from tests.serving.live_server import SERVE_YAML, _call, serving

pytestmark = pytest.mark.integration
PROJECT = "recstack"  # the Feast project the session's version was trained in


def _read_only(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture(scope="module")
def model_dir_server(served_version: Path, small_world: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """The session's version copied to `.../mnt/models`, read-only, its manifest naming
    a data directory that does not exist here (it was trained elsewhere)."""
    models = tmp_path_factory.mktemp("mnt") / "models"
    shutil.copytree(served_version, models)
    manifest = json.loads((models / MANIFEST).read_text())
    manifest["data_snapshot"]["data_dir"] = "/nowhere/trained-elsewhere"
    (models / MANIFEST).write_text(json.dumps(manifest))
    _read_only(models)
    store = open_store(small_world, Settings(redis=TEST_REDIS, online_store="redis",
                                             feast_project=PROJECT))
    materialize_all(store, apply_definitions(store, small_world))
    env = {"RECSTACK_REDIS": TEST_REDIS, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": PROJECT}
    workdir = tmp_path_factory.mktemp("model-dir")
    saved = os.environ.pop("RECSTACK_FEAST_REGISTRY", None)  # nothing but the version
    try:
        with serving(SERVE_YAML, workdir, env, "--model-dir", str(models)) as (port, _):
            yield port, workdir / "server.log"
    finally:
        if saved is not None:
            os.environ["RECSTACK_FEAST_REGISTRY"] = saved


def test_a_version_directory_is_served_with_its_own_feature_registry(
        model_dir_server: tuple[int, Path], served_version: Path, small_world: Path) -> None:
    port, log = model_dir_server
    assert (served_version / FEATURE_REGISTRY_FILE).stat().st_size > 0
    assert "features as the version's registry snapshot" in " ".join(log.read_text().split())
    events = pd.read_parquet(small_world / "events.parquet")
    user = str(events["user_id"].value_counts().index[0])
    status, body = _call(port, "/v1/models/recommender:predict",
                         {"instances": [{"user_id": user, "k": 5}]})
    assert status == 200, body
    (answer,) = body["predictions"]
    assert len(answer["items"]) == 5
    # Its online row was read through the snapshot's feature views: not degraded,
    # not the cold-start list.
    assert answer["degraded"] is False and answer.get("fallback") is None, answer
    assert answer["model_version"] == served_version.name
    status, body = _call(port, "/v1/models/recommender")
    assert status == 200 and body["ready"], body


def test_model_dir_refuses_a_directory_that_is_not_a_version(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recstack.cli import app

    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "no manifest.json there" in result.output
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--registry",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "--registry or --model-dir, not both" in result.output
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "--model-dir DIR" in result.output


def test_model_dir_refuses_a_version_of_another_feast_project(served_version: Path) -> None:
    from typer.testing import CliRunner

    from recstack.cli import app

    result = CliRunner().invoke(app, ["serve", "--model-dir", str(served_version)],
                                env={"RECSTACK_FEAST_PROJECT": "shop_b"})
    assert result.exit_code == 2, result.output
    assert "trained in Feast project recstack; RECSTACK_FEAST_PROJECT is 'shop_b'" in (
        " ".join(result.output.split()))
