"""`recstack serve` as a user starts it: a real KServe ModelServer in front of a real
Ray Serve graph, a real online store, HTTP from outside."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recstack.settings import Settings
from tests.conftest import TEST_REDIS

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(port: int, path: str, body: Any = None, raw: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data,
                                     {"content-type": "application/json"}
                                     if headers is None else headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_v1_v2_metadata_and_bad_input(
        served_version: Path, online_store, small_world: Path,
        redis_settings: Settings) -> None:
    port = _free_port()
    env = {**os.environ, "RECSTACK_REDIS": TEST_REDIS, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": redis_settings.feast_project}
    server = subprocess.Popen(
        [sys.executable, "-m", "recstack", "serve", "--registry",
         str(served_version.parent.parent), "--version", served_version.name, "--port",
         str(port), "--data", str(small_world)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _call(port, "/v2/health/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "server not ready in 180 s"
            time.sleep(1)
        user = pd.read_parquet(small_world / "events.parquet")["user_id"].value_counts().index[0]

        status, body = _call(port, "/v1/models/recommender:predict",
                             {"instances": [{"user_id": user, "k": 4},
                                            {"user_id": "someone-new", "k": 2}]})
        assert status == 200
        known, new = body["predictions"]
        assert len(known["items"]) == 4 and known["model_version"] == served_version.name
        assert all(i["sources"] and i["reasons"] for i in known["items"])
        # (the default rules may give one slot to exploration, marked as such)
        assert len(new["items"]) == 2 and all(i["sources"][0] == "trending"
                                              for i in new["items"])

        status, body = _call(port, "/v2/models/recommender/infer", {"inputs": [
            {"name": "user_id", "shape": [1], "datatype": "BYTES", "data": [user]},
            {"name": "k", "shape": [1], "datatype": "INT32", "data": [4]}]})
        assert status == 200
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["item_ids"]["datatype"] == "BYTES" and outputs["item_ids"]["shape"] == [1, 4]
        # The same ranking; only the 4th place may differ, where exploration can land.
        assert outputs["item_ids"]["data"][:3] == [i["item_id"] for i in known["items"]][:3]
        assert outputs["scores"]["datatype"] == "FP32"

        assert _call(port, "/v2/models/recommender")[1]["inputs"][0]["name"] == "user_id"
        status, body = _call(port, "/v1/models/recommender:predict",
                             {"instances": [{"user_id": user, "k": 0}]})
        assert status == 400 and body["error"].startswith("instances[0].k:")
        # Broken JSON: KServe's parser rejects it when labelled JSON, ours when not.
        status, body = _call(port, "/v1/models/recommender:predict", raw=b"{not json")
        assert status == 400 and "expected a string key" in body["error"]
        status, body = _call(port, "/v1/models/recommender:predict", raw=b"{not json",
                             headers={})
        assert status == 400 and "not valid JSON" in body["error"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
