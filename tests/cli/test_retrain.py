"""`recstack retrain` against a real HTTP server standing in for the API server: the
path, the bearer token and the body it posts, the name it prints, and clear failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from recstack.cli import app
from tests.http_checks import send_json

runner = CliRunner()
TEMPLATE = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"generateName": "recstack-train-", "labels": {"app": "recstack"}},
    "spec": {"entrypoint": "recstack train --data /data --registry /data/registry"},
}


class FakeApiServer(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    answer: ClassVar[tuple[int, dict[str, Any]]] = (201, {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "auth": self.headers["Authorization"],
                              "type": self.headers["Content-Type"],
                              "body": json.loads(body)})
        status, payload = self.answer
        if status == 201:
            payload = {**json.loads(body), "metadata": {"name": "recstack-train-x7k2p"}}
        send_json(self, status, payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    FakeApiServer.received = []
    FakeApiServer.answer = (201, {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def invoke(tmp_path: Path, api_server: str, template: Any = TEMPLATE):
    (tmp_path / "rayjob.yaml").write_text(yaml.safe_dump(template))
    (tmp_path / "token").write_text("s3cret-token\n")
    return runner.invoke(app, ["retrain", "--rayjob-template", str(tmp_path / "rayjob.yaml"),
                               "--api-server", api_server, "--token-file",
                               str(tmp_path / "token"), "--namespace", "recstack"],
                         env={"COLUMNS": "200"})


def test_posts_the_template_and_prints_the_created_name(tmp_path: Path, api_server: str):
    result = invoke(tmp_path, api_server)
    assert result.exit_code == 0, result.output
    assert "created RayJob recstack-train-x7k2p in namespace recstack" in result.output
    (request,) = FakeApiServer.received
    assert request["path"] == "/apis/ray.io/v1/namespaces/recstack/rayjobs"
    assert request["auth"] == "Bearer s3cret-token"
    assert request["type"] == "application/json"
    assert request["body"] == TEMPLATE


def test_an_api_error_gives_its_status_and_message(tmp_path: Path, api_server: str):
    FakeApiServer.answer = (403, {"kind": "Status", "message": 'rayjobs.ray.io is forbidden: '
                                  'User "system:serviceaccount:recstack:x" cannot create'})
    result = invoke(tmp_path, api_server)
    assert result.exit_code == 1
    assert "HTTP 403" in result.output
    assert "rayjobs.ray.io is forbidden" in result.output


def test_an_unreachable_server_fails_clearly(tmp_path: Path):
    result = invoke(tmp_path, "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "creating a RayJob at http://127.0.0.1:9/apis/ray.io/v1/" in result.output


@pytest.mark.parametrize(("template", "message"), [
    ({**TEMPLATE, "metadata": {"name": "fixed"}}, "needs generateName and no name"),
    ({**TEMPLATE, "kind": "RayCluster"}, "not a RayJob manifest"),
], ids=["a-fixed-name", "another-kind"])
def test_a_bad_template_is_refused_before_any_request(
        tmp_path: Path, api_server: str, template: dict[str, Any], message: str):
    result = invoke(tmp_path, api_server, template)
    assert result.exit_code == 2
    assert message in result.output
    assert FakeApiServer.received == []

