"""A real S3-compatible HTTP server (moto's) for the object-store tests: the registry,
KServe-style storage URIs, anything the design puts on S3. One per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from recstack.processes import free_port


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
