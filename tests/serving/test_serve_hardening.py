"""`recstack serve` against a hostile or careless client (issue 17): malformed V2
bodies, a stock Open Inference Protocol client, model control, fuzzed bodies on one
keep-alive connection, and a replica killed under it. The tests run in file order;
the replica kill goes last."""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import struct
import subprocess
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.live_server import ADMIN_KEY, FUZZ_EXAMPLES, Server, _call

pytestmark = pytest.mark.integration
V2 = "/v2/models/recommender/infer"


class Connection:
    """One keep-alive connection: a reset or a dropped answer raises, as a client
    would see it; a server that says `connection: close` is counted and reconnected."""

    def __init__(self, port: int) -> None:
        self.port, self.closes, self.sent = port, 0, 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        self.http.request("POST", path, body=body, headers=headers)
        response = self.http.getresponse()
        data = response.read()
        self.sent += 1
        self.statuses[response.status] += 1
        if response.will_close:
            self.closes += 1
            self.http.close()
            self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return response.status, json.loads(data) if data else None


def _user(server: Server) -> str:
    return str(pd.read_parquet(server.data / "events.parquet")["user_id"].value_counts()
               .index[0])


def _binary_body(values: list[bytes], declared: int) -> tuple[bytes, dict[str, str]]:
    data = b"".join(struct.pack("<I", len(v)) + v for v in values)
    header = json.dumps({"inputs": [{"name": "user_id", "shape": [len(values)],
                                     "datatype": "BYTES",
                                     "parameters": {"binary_data_size": declared}}]}).encode()
    return header + data, {"inference-header-content-length": str(len(header))}


def test_malformed_v2_bodies_are_400_and_the_connection_lives(server: Server) -> None:
    connection = Connection(server.port)
    json_type = {"content-type": "application/json"}
    bad = [
        (b'{"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", '
         b'"data": ["\\ud800"]}]}', json_type),
        (b'{"id": "\\ud800", "inputs": [{"name": "user_id", "shape": [1], '
         b'"datatype": "BYTES", "data": ["a"]}]}', json_type),
        (b'{"inputs": [{"name": "user_id\\udc00", "shape": [1], "datatype": "BYTES", '
         b'"data": ["a"]}]}', json_type),
        _binary_body([b"abc"], 50), _binary_body([b"abc"], 2),
        (b'{"inputs": [{"name": "user_id", "shape": "one", "datatype": "BYTES", '
         b'"data": ["a"]}]}', json_type),
    ]
    for body, headers in bad:
        status, answer = connection.post(V2, body, headers)
        assert status == 400 and answer["error"], (body, answer)
    good = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES",
                        "data": [_user(server)]}]}
    status, answer = connection.post(V2, json.dumps(good).encode(), {})  # no content type
    assert status == 200 and answer["outputs"][0]["shape"] == [1, 10]
    assert connection.closes == 0  # one connection throughout


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_stock_triton_client_works_in_both_modes(server: Server, binary: bool) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("recommender")
    metadata = client.get_model_metadata("recommender")
    assert [i["name"] for i in metadata["inputs"]] == ["user_id", "k"]
    config = client.get_model_config("recommender")
    assert {o["name"] for o in config["output"]} == {"item_ids", "scores"}
    users = triton.InferInput("user_id", [2], "BYTES")
    users.set_data_from_numpy(np.array([_user(server), "someone-new"], dtype=object),
                              binary_data=binary)
    k = triton.InferInput("k", [1], "INT32")
    k.set_data_from_numpy(np.array([4], dtype=np.int32), binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary)
               for name in ("item_ids", "scores")]
    result = client.infer("recommender", [users, k], outputs=outputs)
    ids, scores = result.as_numpy("item_ids"), result.as_numpy("scores")
    assert ids.shape == (2, 4) and scores.shape == (2, 4) and scores.dtype == np.float32
    assert all(isinstance(i, bytes | str) and i for i in ids.reshape(-1))
    with pytest.raises(triton.InferenceServerException, match="400"):
        bad = triton.InferInput("k", [1], "INT32")
        bad.set_data_from_numpy(np.array([0], dtype=np.int32), binary_data=binary)
        client.infer("recommender", [users, bad])


def test_model_control_asks_for_the_admin_key(server: Server) -> None:
    unload = "/v2/repository/models/similar-items/unload"
    assert _call(server.port, unload, raw=b"")[0] == 401
    assert _call(server.port, unload, raw=b"", headers={"x-api-key": "guess"})[0] == 401
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    assert _call(server.port, unload, raw=b"", headers=admin)[0] == 200
    try:
        status, answer = _call(server.port, "/v2/health/ready")
        assert status == 503 and "similar-items" in answer["error"]
        status, _ = _call(server.port, "/v1/models/similar-items:predict",
                          {"instances": [{"item_id": "x"}]})
        assert status == 503
        assert server.recommend({"user_id": _user(server), "k": 2})[0] == 200  # the others
    finally:
        load = "/v2/repository/models/similar-items/load"
        assert _call(server.port, load, raw=b"", headers=admin)[0] == 200
    assert _call(server.port, "/v2/health/ready")[0] == 200
    paths = _call(server.port, "/openapi.json")[1]["paths"]
    assert "/v2/repository/models/{model_name}/unload" in paths  # on: it says so


_text = st.text(max_size=12) | st.sampled_from(["user_id", "k", "\ud800", "x\udfff", ""])
_scalar = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | _text
_junk = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=10)
_tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["user_id", "k"]) | _text,
     "shape": st.lists(st.integers(-2, 70), max_size=3) | _junk,
     "datatype": st.sampled_from(["BYTES", "INT32", "INT64", "FP32", "BOOL", "FP16"]) | _text,
     "data": st.lists(_scalar, max_size=5) | _junk},
    optional={"parameters": st.dictionaries(_text, _scalar, max_size=2)})
_v2_body = st.fixed_dictionaries({"inputs": st.lists(_tensor, max_size=3) | _junk},
                                  optional={"id": _text | _junk, "outputs": _junk,
                                            "parameters": _junk})


def _encode(body: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\ud800 escapes, as a hostile client sends them
    return json.dumps(body, ensure_ascii=True).encode()


@st.composite
def _requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["valid", "json", "json-untyped", "binary", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64)), {}
    if kind == "valid":  # well formed, any ids and counts: answered or refused, never 5xx
        ids = draw(st.lists(st.text(max_size=20) | st.sampled_from(["u0001", "i001"]),
                            min_size=1, max_size=4))
        inputs = [{"name": "user_id", "shape": [len(ids)], "datatype": "BYTES", "data": ids}]
        if draw(st.booleans()):
            inputs.append({"name": "k", "shape": [1], "datatype": "INT32",
                           "data": [draw(st.integers(-1, 120))]})
        return _encode({"inputs": inputs}), {}
    body = _encode(draw(_v2_body | _junk))
    if kind == "json":
        return body, {"content-type": "application/json"}
    if kind == "json-untyped":
        return body, {}
    tail = draw(st.binary(max_size=32))
    declared = draw(st.integers(-3, len(body) + len(tail) + 3))
    return body + tail, {"inference-header-content-length": str(declared)}


@pytest.fixture(scope="module")
def connection(server: Server) -> Connection:
    return Connection(server.port)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=_requests())
def test_fuzzed_v2_bodies_get_200_or_400_on_one_connection(
        connection: Connection, request: tuple[bytes, dict[str, str]]) -> None:
    status, answer = connection.post(V2, *request)
    assert status in (200, 400), (status, answer, request)
    if status == 400:
        assert isinstance(answer["error"], str) and answer["error"]
    else:
        outputs = {o["name"]: o for o in answer["outputs"]}
        rows, width = outputs["item_ids"]["shape"]
        assert outputs["scores"]["shape"] == [rows, width]
        assert len(outputs["item_ids"]["data"]) == rows * width


def test_the_fuzzer_kept_one_connection(connection: Connection) -> None:
    assert connection.sent >= FUZZ_EXAMPLES and connection.closes == 0
    assert connection.statuses[200] and connection.statuses[400], connection.statuses
    print(f"fuzzed V2: {connection.sent} requests, {dict(connection.statuses)}, "
          f"{connection.closes} connections closed")


def _replica_pids(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"ServeReplica:recstack-.*:{name}"],
                         capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def test_readiness_turns_false_when_a_replica_dies_and_comes_back(server: Server) -> None:
    (pid,) = _replica_pids("Ranker")[:1]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while _call(server.port, "/v2/health/ready")[0] == 200:
        assert time.monotonic() - killed < 5, "still ready 5 s after the Ranker died"
        time.sleep(0.2)
    noticed = time.monotonic() - killed
    status, body = server.recommend({"user_id": _user(server), "k": 3})
    assert status == 200, body  # answered (the front's fallback) while unready
    assert _call(server.port, "/v2/health/live")[0] == 200  # Serve restarts it: live
    while _call(server.port, "/v2/health/ready")[0] != 200:
        assert time.monotonic() - killed < 120, server.log_tail()
        time.sleep(0.5)
    status, body = server.recommend({"user_id": _user(server), "k": 3, "exclude_ids": ["z"]})
    assert status == 200 and not body["predictions"][0]["degraded"], body
    print(f"unready {noticed:.1f} s after the kill, ready again after "
          f"{time.monotonic() - killed:.1f} s")
