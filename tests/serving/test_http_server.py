"""The HTTP assembly of `recstack serve` (serving/http_server.py) around a plain KServe
model: access control, model control, health, the V2 parser and the error shape.
The same routes over real Ray graphs are tested in test_serve.py."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from starlette.testclient import TestClient

from serving.api_keys import ApiKeys
from serving.http_server import Access, Health, build_app

V2 = "/v2/models/echo/infer"


class Echo(Model):
    """Answers a V2 request with its user ids reversed, and V1 with its instances."""

    def __init__(self) -> None:
        super().__init__("echo")
        self.ready = True

    async def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "user_id", "datatype": "BYTES", "shape": [-1]}]

    async def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "item_ids", "datatype": "BYTES", "shape": [-1]}]

    async def predict(self, payload: Any, headers: Any = None) -> Any:
        if isinstance(payload, InferRequest):
            ids = [v.decode() if isinstance(v, bytes) else v
                   for v in payload.inputs[0].as_numpy().reshape(-1).tolist()]
            return InferResponse(response_id="r", model_name="echo", infer_outputs=[
                InferOutput("item_ids", [len(ids)], "BYTES", ids[::-1])])
        if payload.get("explode"):
            raise RuntimeError("a bug")
        return {"predictions": payload["instances"]}


class Flags:
    def __init__(self) -> None:
        self.not_ready: str | None = None
        self.not_live: str | None = None


def _client(access: Access = Access(), flags: Flags | None = None) -> tuple[TestClient, Echo]:
    model, flags = Echo(), flags or Flags()
    app = build_app([model], Health(lambda: flags.not_ready, lambda: flags.not_live), access)
    return TestClient(app, raise_server_exceptions=False), model


def _v2(ids: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "user_id", "shape": [len(ids)], "datatype": "BYTES",
                        "data": ids}]}


def _binary(ids: list[bytes], declared: int | None = None) -> tuple[bytes, dict[str, str]]:
    data = b"".join(struct.pack("<I", len(i)) + i for i in ids)
    header = json.dumps({"inputs": [{"name": "user_id", "shape": [len(ids)],
                                     "datatype": "BYTES", "parameters": {
                                         "binary_data_size": declared or len(data)}}]})
    return header.encode() + data, {"inference-header-content-length": str(len(header))}


def test_v2_json_with_or_without_content_type_and_binary() -> None:
    client, _ = _client()
    for headers in ({"content-type": "application/json"}, {}):
        answer = client.post(V2, content=json.dumps(_v2(["a", "b"])), headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == ["b", "a"]
    body, headers = _binary([b"a", b"bc"])
    answer = client.post(V2, content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == ["bc", "a"]


# One BYTES element whose length prefix (9) runs past the 9 bytes declared in all.
_SHORT_ELEMENT = json.dumps({"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES",
                                        "parameters": {"binary_data_size": 9}}]}).encode()


@pytest.mark.parametrize(("body", "headers", "reason"), [
    (b'{"id": "\\ud800", "inputs": []}', {}, "no low surrogate"),
    (b'{"inputs": [{"name": "user_id\\udfff", "shape": [1], "datatype": "BYTES", '
     b'"data": ["x"]}]}', {"content-type": "application/json"}, "surrogate"),
    (b'{"inputs": [{"name": "user_id", "shape": "x", "datatype": "BYTES", "data": []}]}',
     {}, "inputs[0].shape: Input should be a valid list"),
    (b"", {}, "not valid JSON"),
    (b"[1, 2]", {}, "Input should be a valid dictionary"),
    (_binary([b"abc"], declared=50)[0], _binary([b"abc"], declared=50)[1],
     "declare 50 bytes"),
    (_binary([b"abc"], declared=2)[0], _binary([b"abc"], declared=2)[1], "declare 2 bytes"),
    (_SHORT_ELEMENT + b"\x09\x00\x00\x00abcde",
     {"inference-header-content-length": str(len(_SHORT_ELEMENT))}, "tensor data"),
    (b"{}", {"inference-header-content-length": "99"}, "inference-header-content-length"),
    (b"{}", {"inference-header-content-length": "-1"}, "inference-header-content-length"),
])
def test_malformed_v2_bodies_are_400_with_a_reason(body: bytes, headers: dict[str, str],
                                                   reason: str) -> None:
    client, _ = _client()
    answer = client.post(V2, content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["error"]


def test_errors_share_one_shape_and_versions_are_not_addressable() -> None:
    client, _ = _client()
    missing = client.get("/v2/models/nothing")
    assert missing.status_code == 404 and "nothing" in missing.json()["error"]
    assert client.get("/no/such/route").json() == {"error": "Not Found"}
    versioned = client.post("/v2/models/echo/versions/7/infer", json=_v2(["a"]))
    assert versioned.status_code == 404 and "/v2/models/echo/infer" in versioned.json()["error"]
    assert client.get("/v2/models/nothing/versions/7").status_code == 404
    crash = client.post("/v1/models/echo:predict", json={"explode": True})
    assert crash.status_code == 500 and crash.json()["error"]


def test_model_config_and_metadata_follow_the_protocol() -> None:
    client, _ = _client()
    config = client.get("/v2/models/echo/config").json()
    assert config["input"] == [{"name": "user_id", "data_type": "TYPE_STRING", "dims": [-1]}]
    metadata = client.get("/v2/models/echo").json()
    assert metadata["name"] == "echo" and metadata["inputs"][0]["datatype"] == "BYTES"
    assert client.get("/v2").json()["name"]


def test_model_control_is_not_mounted_by_default() -> None:
    client, model = _client()
    for verb in ("unload", "load"):
        assert client.post(f"/v2/repository/models/echo/{verb}").status_code == 404
    assert model.ready
    assert not any("repository" in path for path in client.get("/openapi.json").json()["paths"])


def test_model_control_takes_an_admin_key_and_unload_is_reversible() -> None:
    client, model = _client(Access(admin_keys=ApiKeys(["root"])))
    assert client.post("/v2/repository/models/echo/unload").status_code == 401
    assert client.post("/v2/repository/models/echo/unload",
                       headers={"x-api-key": "wrong"}).status_code == 401
    admin = {"authorization": "Bearer root"}
    assert client.post("/v2/repository/models/echo/unload", headers=admin).status_code == 200
    assert not model.ready
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503 and "unloaded: echo" in ready.json()["error"]
    assert client.post(V2, json=_v2(["a"])).status_code == 503
    assert client.post("/v1/models/echo:predict", json={"instances": [1]}).status_code == 503
    assert client.post("/v2/repository/models/echo/load", headers=admin).status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post(V2, json=_v2(["a"])).status_code == 200


def test_inference_keys_guard_everything_but_the_probes_and_metrics() -> None:
    client, _ = _client(Access(api_keys=ApiKeys(["k1"]), admin_keys=ApiKeys(["root"])))
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert client.get(path).status_code == 200, path
    for path in ("/v2/models/echo", "/v1/models", "/openapi.json", "/v2"):
        assert client.get(path).status_code == 401, path
    assert client.post(V2, json=_v2(["a"])).status_code == 401
    assert client.post(V2, json=_v2(["a"]), headers={"x-api-key": "k1"}).status_code == 200
    assert client.post(V2, json=_v2(["a"]), headers={"authorization": "Bearer root"}
                       ).status_code == 200  # an admin key may do what a client may
    assert client.post("/v2/repository/models/echo/unload",
                       headers={"x-api-key": "k1"}).status_code == 401


def test_readiness_and_liveness_follow_health() -> None:
    flags = Flags()
    client, _ = _client(flags=flags)
    assert client.get("/v2/health/ready").json() == {"ready": True}
    flags.not_ready = "graph g: dead"
    for path in ("/v2/health/ready", "/v2/models/echo/ready"):
        answer = client.get(path)
        assert answer.status_code == 503 and "graph g: dead" in answer.json()["error"]
    assert client.get("/v2/health/live").status_code == 200
    flags.not_live = "failing for 61 s"
    assert client.get("/v2/health/live").status_code == 503
