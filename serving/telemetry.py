"""Traces and metrics of the serving front, with OpenTelemetry.

Metrics always go to KServe's `/metrics` (Prometheus, through OpenTelemetry's
Prometheus reader on the default registry); with an OTLP endpoint
(`TelemetrySettings.otlp_endpoint`, which `recstack serve` reads from
`OTEL_EXPORTER_OTLP_ENDPOINT`), metrics and traces also go to that OTLP/HTTP
endpoint (the SDK's other `OTEL_*` variables apply: headers, timeouts,
intervals). Without it there is no exporter and nothing is printed. The
settings come from the entry point, through `setup_telemetry`; nothing here
reads the environment.

A request's trace is one span per endpoint call (`recstack.recommend`, ...) with
a child per stage: `features.user`, `retrieve`, `features.items`, `rank`,
`rules` (and `similar`). Stages that ran in a Ray worker report their wall-clock
start and end (models/timing.py) and their spans are placed from those, so that
the front is the only process that exports. The parent is the caller's
`traceparent` header when there is one.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagate import extract
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from contracts.settings import TelemetrySettings
from models.timing import Timings

SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
COUNTS = [0, 1, 10, 25, 50, 100, 200, 400, 800]
_instance: Telemetry | None = None


def setup_telemetry(settings: TelemetrySettings) -> Telemetry:
    """The process's telemetry, set up once where the front starts (`serve_forever`,
    with the settings `recstack serve` read): the Prometheus reader registers globally."""
    global _instance
    if _instance is None:
        _instance = Telemetry(settings)
    elif _instance.settings != settings:
        raise RuntimeError("telemetry is set up once per process, and was already "
                           f"with {_instance.settings}")
    return _instance


def telemetry() -> Telemetry:
    """The process's telemetry, as `setup_telemetry` set it up; where nothing did (a
    test, the front used as a library), the defaults: Prometheus only, no exporter."""
    return _instance if _instance is not None else setup_telemetry(TelemetrySettings())


def _signal_endpoint(base: str, path: str) -> str:
    """`base/v1/traces`, as the SDK builds it from OTEL_EXPORTER_OTLP_ENDPOINT."""
    return f"{base.removesuffix('/')}/{path}"


class Telemetry:
    def __init__(self, settings: TelemetrySettings) -> None:
        self.settings = settings
        resource = Resource.create({"service.name": settings.service_name})
        otlp = settings.otlp_endpoint
        readers: list[MetricReader] = [PrometheusMetricReader()]
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.tracer_provider: TracerProvider | None = None
        if otlp:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(
                endpoint=_signal_endpoint(otlp, "v1/metrics"))))
            self.tracer_provider = TracerProvider(resource=resource)
            self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
                endpoint=_signal_endpoint(otlp, "v1/traces"))))
            self.tracer = self.tracer_provider.get_tracer("recstack.serving")
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        meter = self.meter_provider.get_meter("recstack.serving")
        self.requests = meter.create_counter(
            "recstack.requests", description="Answered requests by endpoint, variant, "
            "version and outcome (ok, degraded, fallback, cached)")
        self.duration = meter.create_histogram(
            "recstack.request.duration", unit="s", description="Front-to-answer latency",
            explicit_bucket_boundaries_advisory=SECONDS)
        self.stages = meter.create_histogram(
            "recstack.stage.duration", unit="s", description="Latency per stage",
            explicit_bucket_boundaries_advisory=SECONDS)
        self.candidates = meter.create_histogram(
            "recstack.candidates", description="Candidates ranked per request",
            explicit_bucket_boundaries_advisory=COUNTS)
        self.fallbacks = meter.create_counter(
            "recstack.fallbacks", description="Answers from a fallback (trending for "
            "unknown users or items; degraded when a store failed)")
        self.impression_events = meter.create_counter(
            "recstack.impressions", description="Impression events of recommender answers "
            "by result (logged to the events stream, or failed)")
        self.cache_lookups = meter.create_counter(
            "recstack.cache.lookups", description="Response cache lookups by result "
            "(hit, miss, error)")
        self._cache_counts = {"hit": 0, "miss": 0}
        meter.create_observable_gauge(
            "recstack.cache.hit_rate", callbacks=[self._hit_rate],
            description="Response cache hits / (hits + misses) since start")

    def parent(self, headers: dict[str, str] | None) -> Context:
        return extract(headers or {})

    def impressions(self, count: int, result: str) -> None:
        self.impression_events.add(count, {"result": result})

    def cache_lookup(self, result: str) -> None:
        self.cache_lookups.add(1, {"result": result})
        if result in self._cache_counts:
            self._cache_counts[result] += 1

    def record(self, endpoint: str, answer: dict[str, Any], timings: Timings,
               candidates: int, start_ns: int, end_ns: int, cached: bool,
               parent: Context | None = None) -> None:
        """One answered request: its span tree and its metrics."""
        outcome = ("cached" if cached else "degraded" if answer.get("degraded")
                   else "fallback" if answer.get("fallback") else "ok")
        labels = {"endpoint": endpoint, "variant": str(answer.get("variant")),
                  "version": str(answer.get("model_version")), "outcome": outcome}
        self.requests.add(1, labels)
        # Per arm too: `rollout check` compares the canary's p99 with control's.
        self.duration.record((end_ns - start_ns) / 1e9, {
            "endpoint": endpoint, "variant": labels["variant"], "version": labels["version"]})
        if not cached:
            self.candidates.record(candidates, {"endpoint": endpoint})
        if answer.get("degraded") and not cached:
            self.fallbacks.add(1, {"endpoint": endpoint, "kind": "degraded"})
        if answer.get("fallback") and not cached:
            self.fallbacks.add(1, {"endpoint": endpoint, "kind": str(answer["fallback"])})
        for name, (start, end) in timings.items():
            self.stages.record((end - start) / 1e9, {"endpoint": endpoint, "stage": name})
        if self.tracer_provider is None:
            return
        root = self.tracer.start_span(
            f"recstack.{endpoint}", context=parent, start_time=start_ns,
            kind=trace.SpanKind.SERVER, attributes={
                "recstack.request_id": str(answer.get("request_id")),
                "recstack.variant": labels["variant"],
                "recstack.model_version": labels["version"],
                "recstack.outcome": outcome, "recstack.cache_hit": cached,
                "recstack.candidates": candidates,
                "recstack.items": len(answer.get("items", []))})
        inside = trace.set_span_in_context(root)
        for name, (start, end) in sorted(timings.items(), key=lambda t: t[1][0]):
            self.tracer.start_span(name, context=inside, start_time=start).end(end_time=end)
        root.end(end_time=end_ns)

    def _hit_rate(self, options: CallbackOptions) -> list[Observation]:
        total = self._cache_counts["hit"] + self._cache_counts["miss"]
        return [Observation(self._cache_counts["hit"] / total if total else 0.0)]

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
