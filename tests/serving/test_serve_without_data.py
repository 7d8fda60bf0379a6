"""`recstack serve` in a pod, with no data directory: the version carries its Feast
registry. Either a version directory alone (`--model-dir`, as KServe's storage
initializer leaves it at /mnt/models), or a stage followed in a registry on a real
S3-compatible server (`--registry s3://... --stage dev`)."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from contracts.settings import Settings
from stores.feature_store import apply_definitions, materialize_all, open_store
from stores.registry import FEATURE_REGISTRY_FILE, MANIFEST, Manifest, Registry
from tests.conftest import TEST_REDIS
from tests.serving.live_server import SERVE_YAML, _call, serving

pytestmark = pytest.mark.integration
PROJECT = "recstack"  # the Feast project the session's version was trained in


@pytest.fixture(scope="module")
def materialized(small_world: Path) -> None:
    store = open_store(small_world, Settings(redis=TEST_REDIS, online_store="redis",
                                             feast_project=PROJECT))
    materialize_all(store, apply_definitions(store, small_world))


ENV = {"RECSTACK_REDIS": TEST_REDIS, "RECSTACK_ONLINE_STORE": "redis",
       "RECSTACK_FEAST_PROJECT": PROJECT}


@pytest.fixture()
def no_registry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSTACK_FEAST_REGISTRY", raising=False)  # only the version's


def _known_user(small_world: Path) -> str:
    events = pd.read_parquet(small_world / "events.parquet")
    return str(events["user_id"].value_counts().index[0])


def _answers(port: int, user: str, version: str) -> None:
    status, body = _call(port, "/v1/models/recommender:predict",
                         {"instances": [{"user_id": user, "k": 5}]})
    assert status == 200, body
    (answer,) = body["predictions"]
    assert len(answer["items"]) == 5
    # Its online row was read through the snapshot's feature views: not degraded,
    # not the cold-start list.
    assert answer["degraded"] is False and answer.get("fallback") is None, answer
    assert answer["model_version"] == version


def _read_only(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture()
def model_dir_server(served_version: Path, materialized: None, no_registry_env: None,
                     tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The session's version copied to `.../mnt/models`, read-only, its manifest naming
    a data directory that does not exist here (it was trained elsewhere)."""
    models = tmp_path / "mnt" / "models"
    shutil.copytree(served_version, models)
    manifest = json.loads((models / MANIFEST).read_text())
    manifest["data_snapshot"]["data_dir"] = "/nowhere/trained-elsewhere"
    (models / MANIFEST).write_text(json.dumps(manifest))
    _read_only(models)
    with serving(SERVE_YAML, tmp_path, ENV, "--model-dir", str(models)) as (port, _):
        yield port, tmp_path / "server.log"


def test_a_version_directory_is_served_with_its_own_feature_registry(
        model_dir_server: tuple[int, Path], served_version: Path, small_world: Path) -> None:
    port, log = model_dir_server
    assert (served_version / FEATURE_REGISTRY_FILE).stat().st_size > 0
    assert "features as the version's registry snapshot" in " ".join(log.read_text().split())
    _answers(port, _known_user(small_world), served_version.name)
    status, body = _call(port, "/v1/models/recommender")
    assert status == 200 and body["ready"], body


def test_a_stage_is_followed_in_a_registry_on_s3(
        s3_bucket: str, served_version: Path, materialized: None, no_registry_env: None,
        small_world: Path, tmp_path: Path) -> None:
    registry = Registry(f"{s3_bucket}/registry")
    manifest = Manifest.model_validate_json((served_version / MANIFEST).read_bytes())
    registry.publish(manifest.model_copy(update={"data_snapshot": {"data_dir": "/nowhere"}}),
                     served_version)
    registry.promote(manifest.version, "dev")
    with serving(SERVE_YAML, tmp_path, ENV, "--registry", registry.uri, "--stage", "dev"
                 ) as (port, _):
        _answers(port, _known_user(small_world), manifest.version)
    assert f"serving stage dev ({manifest.version})" in " ".join(
        (tmp_path / "server.log").read_text().split())


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
    said = " ".join(result.output.split())
    assert "holds Feast project(s) recstack" in said, said
    assert "not RECSTACK_FEAST_PROJECT='shop_b'" in said, said
