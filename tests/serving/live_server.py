"""`recstack serve` as a user starts it, shared by the serving tests that need one: a
real KServe front over real Ray Serve graphs, a real online store and response cache
in Redis (through a proxy the tests can cut), a real OTLP receiver, HTTP from
outside. One server per test session, started with a serve.yaml of two variants,
following stage `dev`, with model control on (admin key `ADMIN_KEY`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from contracts.settings import Settings
from recstack.processes import Service, free_port
from stores.feature_store import RedisAddress, apply_definitions, materialize_all, open_store
from stores.registry import Registry
from tests.conftest import TEST_REDIS
from tests.http_checks import wait_ok
from tests.redis_proxy import RedisProxy

PROJECT = "recstack_test"
ADMIN_KEY = "test-admin-key"
# Generated requests per fuzz test (V1 and V2 each); BENCHMARKS.md quotes a 2 x 2500 run.
FUZZ_EXAMPLES = int(os.environ.get("RECSTACK_FUZZ_EXAMPLES", "150"))
SERVE_YAML = """
rules: {exploration_rate: 0.0}
cache: {ttl_s: 60}
experiment: test
variants:
  - {name: control, weight: 1}
  - {name: diverse, weight: 1, rules: {diversity_weight: 0.6}}
watch_interval_s: 1
# Through the test's Python proxy on a starved 2-core box (a new version's replicas
# loading beside the old), healthy reads have stalled past 1 s.
store_timeout_s: 3.0
"""


def _call(port: int, path: str, body: Any = None, raw: bytes | None = None,
          headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data,
                                     {"content-type": "application/json"}
                                     if headers is None else headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
            return response.status, (json.loads(text) if path != "/metrics" else text.decode())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class _OtlpReceiver(BaseHTTPRequestHandler):
    spans: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    _OtlpReceiver.spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Server:
    port: int
    proxy: RedisProxy
    registry: Registry
    version: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def log_problems(self) -> list[str]:
        """The server's warnings and errors: why an answer was degraded or failed."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if ("WARNING" in line or "ERROR" in line)
                and "bad request (400)" not in line][-20:]

    def recommend(self, *instances: dict[str, Any]) -> tuple[int, Any]:
        return _call(self.port, "/v1/models/recommender:predict",
                     {"instances": list(instances)})


@contextmanager
def serving(serve_yaml: str, workdir: Path, env: dict[str, str], *args: str
            ) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`recstack serve` with this serve.yaml, these environment variables (over
    os.environ) and arguments (what to serve: `following_dev`, `--model-dir`), once
    ready: its port and process; stopped after. Its log is `workdir / "server.log"`."""
    config = workdir / "serve.yaml"
    config.write_text(serve_yaml)
    port = free_port()
    service = Service("recstack serve", [
        sys.executable, "-m", "recstack", "serve", "--port", str(port), "--config",
        str(config), *args], workdir / "server.log", env)
    try:
        wait_ok(service, f"http://127.0.0.1:{port}/v2/health/ready", 240)
        yield port, service.process
    finally:
        service.stop(30)


def following_dev(registry: Registry, data: Path) -> tuple[str, ...]:
    """`recstack serve` arguments: follow stage `dev`, features of `data`."""
    return "--registry", registry.uri, "--stage", "dev", "--data", str(data)


@pytest.fixture(scope="session")
def server(served_version: Path, small_world: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    address = RedisAddress.parse(TEST_REDIS)
    address.client().flushdb()
    store = open_store(small_world, Settings(redis=TEST_REDIS, online_store="redis",
                                             feast_project=PROJECT))
    materialize_all(store, apply_definitions(store, small_world))
    proxy = RedisProxy((address.host, address.port))
    proxy.start()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _OtlpReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    registry = Registry(str(served_version.parent.parent))
    registry.promote(served_version.name, "dev")
    workdir = tmp_path_factory.mktemp("serve")
    env = {"RECSTACK_REDIS": proxy.address(address.db), "RECSTACK_ADMIN_KEYS": ADMIN_KEY,
           "RECSTACK_ONLINE_STORE": "redis", "RECSTACK_FEAST_PROJECT": PROJECT,
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
           "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
    try:
        with serving(SERVE_YAML, workdir, env, *following_dev(registry, small_world),
                     "--model-control") as (port, process):
            yield Server(port, proxy, registry, served_version.name, small_world, process,
                         workdir / "server.log")
    finally:
        proxy.stop()
        receiver.shutdown()


