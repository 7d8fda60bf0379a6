"""The front's telemetry takes its settings from the entry point: the OTEL_* names
are read by `TelemetrySettings.from_env` (what `recstack serve` calls), and spans go
to the endpoint the settings name, whatever the process's environment says."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from contracts.settings import TelemetrySettings
from serving.telemetry import Telemetry


def test_settings_read_opentelemetry_s_standard_names() -> None:
    assert TelemetrySettings.from_env({}) == TelemetrySettings(
        service_name="recstack-serving", otlp_endpoint=None)
    assert TelemetrySettings.from_env({"OTEL_SERVICE_NAME": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
                                      ).otlp_endpoint is None  # empty: unset
    read = TelemetrySettings.from_env({"OTEL_SERVICE_NAME": "front",
                                       "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                                       "RECSTACK_REDIS": "elsewhere:6379"})
    assert read == TelemetrySettings(service_name="front",
                                     otlp_endpoint="http://collector:4318")


class _Receiver(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, ExportTraceServiceRequest | None]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        request = None
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        _Receiver.posts.append((self.path, request))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_spans_go_to_the_endpoint_of_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(var, raising=False)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        telemetry = Telemetry(TelemetrySettings(
            service_name="recstack-test",
            otlp_endpoint=f"http://127.0.0.1:{receiver.server_port}/"))  # a trailing slash
        start = time.time_ns()
        telemetry.record("recommend", {"variant": "control", "model_version": "v1",
                                       "request_id": "r1", "items": []},
                         {"retrieve": (start + 10, start + 20)}, 5, start, start + 30,
                         cached=False)
        telemetry.shutdown()  # flushes the spans and the metrics
    finally:
        receiver.shutdown()
    assert {path for path, _ in _Receiver.posts} == {"/v1/traces", "/v1/metrics"}
    traces = [request for path, request in _Receiver.posts if request is not None]
    names = {span.name for request in traces for resource in request.resource_spans
             for scope in resource.scope_spans for span in scope.spans}
    assert names == {"recstack.recommend", "retrieve"}
    services = {attribute.value.string_value for request in traces
                for resource in request.resource_spans
                for attribute in resource.resource.attributes
                if attribute.key == "service.name"}
    assert services == {"recstack-test"}


def test_no_endpoint_no_exporter() -> None:
    telemetry = Telemetry(TelemetrySettings())
    try:
        assert telemetry.tracer_provider is None
    finally:
        telemetry.shutdown()
