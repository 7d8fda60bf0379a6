"""`recstack models ...` with real version ids (vYYYYMMDD-HHMMSS-suffix) in a real
registry: ids are shown whole at any width and a unique prefix names a version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recstack.cli import app
from stores.registry import Manifest, Registry, new_version_id

runner = CliRunner()
SUFFIXES = ("a1b2c3", "d4e5f6", "0719aa")


@pytest.fixture()
def registry(tmp_path: Path) -> tuple[Path, list[str]]:
    reg = Registry(tmp_path / "reg")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "recommendations.parquet").write_bytes(b"PAR1")
    ids = []
    for n, suffix in enumerate(SUFFIXES):
        at = datetime(2026, 12, 6, 21, 48, tzinfo=UTC) + timedelta(minutes=n)
        version = new_version_id(at, suffix)
        reg.publish(Manifest(version=version, created_at=at, code_revision="abc",
                             data_snapshot={}, feature_service="ranker",
                             metrics={"test": {"ndcg@10": 0.0312, "recall@20": 0.05431,
                                               "coverage@10": 0.2711}}), artifacts)
        ids.append(version)
    for stage in ("dev", "staging", "prod"):
        reg.promote(ids[-1], stage)
    return tmp_path / "reg", ids


def run(width: int, *args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": str(width)})


@pytest.mark.parametrize("width", [60, 80, 120])
def test_list_never_cuts_a_version_id(registry: tuple[Path, list[str]], width: int) -> None:
    path, ids = registry
    listed = run(width, "models", "list", "--registry", str(path))
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert max(len(line) for line in lines) <= width
    for version in ids:
        assert any(version in line for line in lines), (version, listed.output)
    assert "…" not in listed.output  # nothing cut, the headers neither
    assert "dev, staging, prod" in listed.output and "0.0312" in listed.output
    if width == 120:
        assert "not shown" not in listed.output and "2026-12-06 21:48" in listed.output
    else:  # what did not fit is left out whole, and said so
        assert f"not shown at {width} columns: created" in listed.output


def test_show_and_promote_take_a_unique_prefix(registry: tuple[Path, list[str]]) -> None:
    path, ids = registry
    shown = run(80, "models", "show", "v20261206-2149", "--registry", str(path))
    assert shown.exit_code == 0, shown.output
    assert f'"version": "{ids[1]}"' in shown.output
    promoted = run(80, "models", "promote", "v20261206-2148", "--registry", str(path),
                   "--to", "dev")
    assert promoted.exit_code == 0 and promoted.output == f"dev -> {ids[0]}\n"
    assert Registry(path).stage("dev") == ids[0]
    ambiguous = run(80, "models", "promote", "v20261206", "--registry", str(path),
                    "--stage", "dev")
    assert ambiguous.exit_code == 1
    assert ambiguous.stderr.startswith("error: 'v20261206' is the start of 3 versions")
    assert all(version in ambiguous.stderr for version in ids)
    assert Registry(path).stage("dev") == ids[0]  # unchanged


def test_list_of_an_empty_registry_says_so(tmp_path: Path) -> None:
    listed = run(80, "models", "list", "--registry", str(tmp_path / "none"))
    assert listed.exit_code == 0
    assert "no versions in" in listed.output and "recstack train" in listed.output
