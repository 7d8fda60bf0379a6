"""k8s/smoke.py, the kind smoke test's client, against a local stand-in for the predictor
and the collector (http.server): its request bodies, the API key, picking a known user,
and waiting for the answer to change. The stand-in answers the way serving/ does: the
bodies it checks are the ones tests/serving/test_serve.py sends to `recstack serve`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.http_checks import send_json
from tests.serving.conftest import served_version  # noqa: F401  (a fixture, for the slow test)

SCRIPT = Path(__file__).resolve().parents[2] / "k8s" / "smoke.py"
KEY = "test-collector-key"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("kind_smoke", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["kind_smoke"] = module
    spec.loader.exec_module(module)
    return module


smoke = _load()


@dataclass
class World:
    """What the stand-in knows: users with a ranked list each; an event of a user about
    an item removes it from their list after `lag` more answers (the consumer's delay)."""
    known: dict[str, list[str]] = field(default_factory=lambda: {
        "u000": ["i003", "i001", "i007", "i002", "i009", "i004"]})
    lag: int = 2
    react: bool = True  # False: events never reach the answers (no consumer)
    ready_after: int = 0  # readiness probes answered 503 before the first 200
    pending: dict[str, int] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    probes: int = 0
    answers: int = 0

    def answer(self, user: str, k: int) -> dict[str, Any]:
        self.answers += 1
        if user in self.pending:
            self.pending[user] -= 1
            if self.pending[user] <= 0:
                del self.pending[user]
                self.seen.setdefault(user, set()).update(
                    e["item_id"] for e in self.events if e["user_id"] == user)
        if user not in self.known:
            items, fallback = ["i100", "i101", "i102"][:k], "trending"
        else:
            gone = self.seen.get(user, set())
            items, fallback = [i for i in self.known[user] if i not in gone][:k], None
        return {"items": [{"item_id": i, "score": 1.0 / (n + 1), "sources": ["two_tower"],
                           "reasons": ["x"]} for n, i in enumerate(items)],
                "request_id": f"r{self.answers}", "model_version": "v1", "variant": "control",
                "degraded": False, "fallback": fallback}


def _handler(world: World) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in ("/v2/health/ready", "/readyz"):
                world.probes += 1
                if world.probes <= world.ready_after:
                    return send_json(self, 503, {"error": "not yet"})
                return send_json(self, 200, {"status": "ok"})
            send_json(self, 404, {"error": self.path})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            body = json.loads(raw)
            world.requests.append((self.path, body))
            assert self.headers["content-type"] == "application/json"
            if self.path == "/v1/models/recommender:predict":
                # serving/requests.py parse_v1: only "instances", each {user_id, k}
                assert set(body) == {"instances"}
                (instance,) = body["instances"]
                assert set(instance) <= {"user_id", "k"} and isinstance(instance["k"], int)
                return send_json(self, 200, {"predictions": [
                    world.answer(instance["user_id"], instance["k"])]})
            if self.path == "/v2/models/recommender/infer":
                # serving/requests.py parse_v2_recommend: user_id BYTES [n], k INT32
                inputs = {i["name"]: i for i in body["inputs"]}
                assert set(inputs) == {"user_id", "k"}
                assert inputs["user_id"]["datatype"] == "BYTES"
                assert inputs["user_id"]["shape"] == [1]
                assert inputs["k"]["datatype"] == "INT32"
                answer = world.answer(inputs["user_id"]["data"][0], inputs["k"]["data"][0])
                ids = [i["item_id"] for i in answer["items"]]
                return send_json(self, 200, {"model_name": "recommender", "outputs": [
                    {"name": "item_ids", "datatype": "BYTES", "shape": [1, len(ids)],
                     "data": ids},
                    {"name": "scores", "datatype": "FP32", "shape": [1, len(ids)],
                     "data": [i["score"] for i in answer["items"]]}]})
            if self.path == "/v1/events":
                if self.headers.get("authorization") != f"Bearer {KEY}":
                    return send_json(self, 401, {"detail": "missing API key"})
                events = body["events"]
                for event in events:  # the fields serving/events/event.py Event accepts
                    assert set(event) <= {"event_id", "user_id", "item_id", "event_type",
                                          "value", "timestamp", "session_id", "request_id"}
                    assert event["event_type"] in {"click", "purchase"}
                    assert event["request_id"].startswith("r")
                world.events.extend(events)
                if world.react:
                    world.pending[events[0]["user_id"]] = world.lag
                return send_json(self, 202, {"accepted": len(events), "duplicates": 0,
                                        "rejected": []})
            send_json(self, 404, {"error": self.path})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture()
def world() -> World:
    return World()


@pytest.fixture()
def url(world: World) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(world))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _args(url: str, *more: str) -> list[str]:
    return ["--serve", url, "--collect", url, "--api-key", KEY, "--timeout", "10",
            "--ready-timeout", "10", *more]


def test_passes_when_the_next_answer_changes(url: str, world: World,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(_args(url)) == 0
    out = capsys.readouterr().out
    # u0 ... u4 and u00 ... u04 are unknown (cold start), u000 is the first known one
    probed = [b["instances"][0]["user_id"] for p, b in world.requests
              if p == "/v1/models/recommender:predict"][:11]
    assert probed == [*(f"u{n}" for n in range(5)), *(f"u0{n}" for n in range(5)), "u000"]
    assert [e["event_type"] for e in world.events] == ["click", "purchase"]
    assert {e["item_id"] for e in world.events} == {"i003"}
    assert {e["user_id"] for e in world.events} == {"u000"}
    assert "V1 /v1/models/recommender:predict: u000 gets 5 items" in out
    assert "V2 /v2/models/recommender/infer: u000 gets item_ids" in out
    assert "accepted (202)" in out
    summary = json.loads(out.rsplit("smoke: passed ", 1)[1])
    assert summary["item"] == "i003" and "i003" not in summary["after"]
    assert summary["polls"] == world.lag


def test_waits_for_readiness(url: str, world: World) -> None:
    world.ready_after = 3
    assert smoke.run(smoke.Http(url), smoke.Http(url, smoke.bearer(KEY)), timeout=5,
                     ready_timeout=10, interval=0.01, sleep=lambda _: None)["user"] == "u000"
    assert world.probes > 3


def test_fails_when_the_answer_never_changes(url: str, world: World,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    world.react = False
    assert smoke.main([*_args(url), "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "FAILED: i003 still recommended to u000" in err and "consumer" in err


def test_fails_on_a_wrong_api_key(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main([*_args(url), "--api-key", "wrong"]) == 1
    assert "collector /v1/events answered 401" in capsys.readouterr().err


def test_a_given_user_must_be_known(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main([*_args(url), "--user", "someone-new"]) == 1
    assert "someone-new got the cold-start list" in capsys.readouterr().err


def test_fails_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    rc = smoke.main(["--serve", url, "--collect", url, "--ready-timeout", "0.2"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "not ready in 0 s" in err and "predictor" in err and "collector" in err


def test_request_bodies_are_the_serving_contract() -> None:
    from serving.events.event import Event
    from serving.requests import RecommendRequest, parse_v1

    (parsed,) = parse_v1(smoke.v1_body("u1", 3), RecommendRequest)
    assert parsed.user_id == "u1" and parsed.k == 3
    body = smoke.events_body("u1", "i9", "req-1")
    events = [Event.model_validate(e) for e in body["events"]]
    assert [e.event_type for e in events] == ["click", "purchase"]
    assert all(e.request_id == "req-1" and e.item_id == "i9" for e in events)
    v2 = {i["name"]: i for i in smoke.v2_body("u1", 3)["inputs"]}
    assert v2["user_id"] == {"name": "user_id", "shape": [1], "datatype": "BYTES",
                             "data": ["u1"]}
    assert v2["k"]["datatype"] == "INT32" and v2["k"]["data"] == [3]


def test_v2_request_parses_as_serve_parses_it() -> None:
    from kserve.protocol.infer_type import InferRequest
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    from serving.requests import parse_v2_recommend

    request = InferRequest.from_inference_request(
        InferenceRequest.model_validate(smoke.v2_body("u7", 4)), "recommender")
    (parsed,) = parse_v2_recommend(request)
    assert parsed.user_id == "u7" and parsed.k == 4


def test_changed_is_the_item_gone() -> None:
    def answer(*ids: str) -> dict[str, Any]:
        return {"items": [{"item_id": i} for i in ids]}

    assert smoke.changed(answer("a", "b"), answer("b", "c"), "a")
    assert not smoke.changed(answer("a", "b"), answer("b", "a"), "a")  # reordered only
    assert not smoke.changed(answer("a", "b"), answer("a", "b"), "a")


def test_runs_as_a_script_with_python3_alone(url: str) -> None:
    """What a bare runner does: no venv, no imports from the repository."""
    result = subprocess.run([sys.executable, "-I", str(SCRIPT), *_args(url)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke: passed" in result.stdout


# -- against the real services -----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow  # about 100 s, plus about 70 s to train the served version when run alone
def test_against_real_serve_collect_and_consume(small_world: Path, served_version: Path,  # noqa: F811
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`recstack serve`, `recstack collect` and `recstack consume` as `recstack demo`
    starts them (recstack/demo/services.py), on a copy of the small world with its
    features in the test Redis under a project of its own: the smoke test passes."""
    import shutil
    import uuid

    import httpx

    from contracts.settings import Settings
    from recstack.demo.services import running, wait_ready
    from stores.feature_store import RedisAddress
    from stores.registry import Registry
    from tests.conftest import TEST_REDIS, applied_copy

    address = RedisAddress.parse(TEST_REDIS)
    if not address.reachable():
        pytest.fail(f"no Redis at {address}: start one (`.ci/run` does)")
    project = f"recstack_smoke_{uuid.uuid4().hex[:8]}"
    for name, value in (("RECSTACK_REDIS", TEST_REDIS), ("RECSTACK_ONLINE_STORE", "redis"),
                        ("RECSTACK_FEAST_PROJECT", project)):
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    try:
        data = applied_copy(small_world, tmp_path / "world", settings)
        registry = tmp_path / "registry"
        shutil.copytree(served_version.parent.parent, registry)
        Registry(str(registry)).promote(served_version.name, "dev")
        with httpx.Client() as client, running(data, registry, settings) as services:
            wait_ready(services, client)
            result = subprocess.run(
                [sys.executable, "-I", str(SCRIPT), "--serve", services.serve_url,
                 "--collect", services.collect_url, "--api-key", services.api_key,
                 "--timeout", "60"], capture_output=True, text=True, timeout=300,
                check=False)
        print(result.stdout)  # pytest -rP shows what the smoke test saw
        assert result.returncode == 0, result.stdout + result.stderr
        assert "next recommendation for" in result.stdout
    finally:
        client_ = address.client()
        for key in client_.scan_iter(match=f"*{project}*".encode(), count=1000):
            client_.delete(key)
