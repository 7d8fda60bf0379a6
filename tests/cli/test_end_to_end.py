"""The README's path as a newcomer runs it, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recstack.cli import app
from tests.conftest import MOVIELENS_SMALL, TEST_REDIS

RECSTACK = [sys.executable, "-m", "recstack"]
pytestmark = pytest.mark.integration


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RECSTACK, *args], env={**os.environ, **env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=300, check=False)


def test_demo_runs_without_redis_on_the_embedded_default(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = _run(["demo", "--out", str(out), "--users", "120", "--items", "60", "--days",
                   "10"], {"RECSTACK_REDIS": "127.0.0.1:1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("online store: embedded SQLite") >= 1
    assert "no Redis at 127.0.0.1:1" in result.stdout
    assert '"recent_items"' in result.stdout and "demo done." in result.stdout
    assert (out / "feature_store" / "online.db").exists()
    # Trained, recommended (the new user gets the cold-start list) and reported.
    assert "two_stage" in result.stdout and "dev -> v" in result.stdout
    # It says which path trained and why; the printed lists say which is which.
    assert "training in this process (--workers 0), not on Ray Train" in result.stdout
    assert "trending (cold start)" in result.stdout and "compare ranks" in result.stdout
    recs = (out / "demo-recs.csv").read_text().splitlines()
    assert recs[0] == "user_id,item_id,rank,score" and len(recs) == 1 + 3 * 5
    assert sum(line.startswith("someone-new,") for line in recs) == 5
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 5


@pytest.mark.skipif(not (MOVIELENS_SMALL / "ratings.csv").exists(),
                    reason="ml-latest-small is not on this machine")
def test_movielens_import_apply_and_read_online_from_redis(tmp_path: Path, redis_settings
                                                           ) -> None:
    runner = CliRunner()
    env = {"RECSTACK_REDIS": TEST_REDIS, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": "recstack_cli_test", "COLUMNS": "200"}
    data = tmp_path / "ml"
    imported = runner.invoke(app, ["data", "import", "movielens", str(MOVIELENS_SMALL),
                                   "--out", str(data)], env=env)
    assert imported.exit_code == 0, imported.output
    applied = runner.invoke(app, ["features", "apply", "--data", str(data)], env=env)
    assert applied.exit_code == 0, applied.output
    assert "online store: Redis at localhost:6379 db 14" in applied.output
    assert "applied 5 feature views" in applied.output
    got = runner.invoke(app, ["features", "get", "--data", str(data), "--user", "414",
                              "--item", "318"], env=env)
    assert got.exit_code == 0, got.output
    payload = json.loads(got.stdout)
    # User 414 rated 2,698 films; 318 (Shawshank) has 317 ratings, as in the raw files.
    assert payload["user"]["ratings_30d"] is not None
    assert payload["item"]["rating_count"] == 317
    assert payload["item"]["title"] == "Shawshank Redemption, The"
    assert payload["item"]["categories"] == ["Crime", "Drama"]
