"""Shared fixtures. Service-backed tests use a real Redis (RECSTACK_TEST_REDIS,
default db 14 of localhost), where marked the local PostgreSQL, and where the design
has an object store a real S3-compatible HTTP server (moto's, `s3_bucket`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from recstack.processes import free_port

if TYPE_CHECKING:
    from contracts.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
MOVIELENS_SMALL = Path(os.environ.get("RECSTACK_MOVIELENS_SMALL",
                                      SHARED / "datasets" / "ml-latest-small"))
TEST_REDIS = os.environ.get("RECSTACK_TEST_REDIS", "localhost:6379,db=14")
TEST_POSTGRES = os.environ.get("RECSTACK_TEST_POSTGRES",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """`s3://<bucket>` on a local moto server, with the AWS_* variables s3fs (through
    botocore) reads pointing at it, as a pod's environment would."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    bucket = f"recstack-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        boto3.client("s3").create_bucket(Bucket=bucket)
        try:
            yield f"s3://{bucket}"
        finally:
            server.stop()


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data directory, generated once per session."""
    from models.data.synthetic import GenerateConfig, generate

    out = tmp_path_factory.mktemp("world")
    generate(out, GenerateConfig(users=300, items=200, days=30, seed=7))
    return out


def applied_copy(world: Path, into: Path, settings: Settings) -> Path:
    """A copy of `world` at `into` (its streamed events left behind), its features
    built, applied and materialized for `settings`."""
    import shutil

    from models.features.build import build_features
    from stores.feature_store import apply_definitions, materialize_all, open_store

    shutil.copytree(world, into, ignore=shutil.ignore_patterns(
        "feature_store", "features", "events_stream"))
    build_features(into)
    store = open_store(into, settings, announce=lambda _: None)
    materialize_all(store, apply_definitions(store, into), engine="direct")
    return into


@pytest.fixture()
def redis_settings():
    """Settings that point at the test Redis db, flushed before the test."""
    from contracts.settings import Settings
    from stores.feature_store import RedisAddress

    address = RedisAddress.parse(TEST_REDIS)
    if not address.reachable():
        pytest.fail(f"no Redis at {address}: start one (`.ci/run` does) or set "
                    "RECSTACK_TEST_REDIS")
    address.client().flushdb()
    return Settings(redis=TEST_REDIS, online_store="redis", feast_project="recstack_test")
