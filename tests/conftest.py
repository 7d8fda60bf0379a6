"""Shared fixtures. Service-backed tests use a real Redis (RECSTACK_TEST_REDIS,
default db 14 of localhost) and, where marked, the local PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
MOVIELENS_SMALL = Path(os.environ.get("RECSTACK_MOVIELENS_SMALL",
                                      SHARED / "datasets" / "ml-latest-small"))
TEST_REDIS = os.environ.get("RECSTACK_TEST_REDIS", "localhost:6379,db=14")
TEST_POSTGRES = os.environ.get("RECSTACK_TEST_POSTGRES",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data directory, generated once per session."""
    from models.data.synthetic import GenerateConfig, generate

    out = tmp_path_factory.mktemp("world")
    generate(out, GenerateConfig(users=300, items=200, days=30, seed=7))
    return out


@pytest.fixture()
def redis_settings():
    """Settings that point at the test Redis db, flushed before the test."""
    from recstack.feature_store import RedisAddress
    from recstack.settings import Settings

    address = RedisAddress.parse(TEST_REDIS)
    if not address.reachable():
        pytest.fail(f"no Redis at {address}: start one (`.ci/run` does) or set "
                    "RECSTACK_TEST_REDIS")
    address.client().flushdb()
    return Settings(redis=TEST_REDIS, online_store="redis", feast_project="recstack_test")
