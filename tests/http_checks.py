"""HTTP pieces the tests share: waiting for a started service's probe route, and a
stand-in server's JSON answer."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any

from recstack.processes import Service


def wait_ok(service: Service, url: str, timeout: float, every: float = 1.0) -> None:
    """Until GET `url` answers 200; fails at once (with its log) if `service` exits,
    and after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):  # not listening, or 503
            pass
        assert service.process.poll() is None, service.log_tail()
        assert time.monotonic() < deadline, f"{service.name}: {url} not 200 in {timeout:.0f} s"
        time.sleep(every)


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    raw = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)
