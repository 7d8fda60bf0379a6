"""Settings read once from the environment, at the edge, and passed down.

Every variable has a default that works on one machine with no services, so
`make demo` runs anywhere; on a cluster the Helm chart sets them. `Settings` holds
RecStack's own RECSTACK_* variables; `TelemetrySettings` the OpenTelemetry ones
that RecStack's code uses, under their standard OTEL_* names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    redis: str = Field(default="localhost:6379")
    """RECSTACK_REDIS: Redis for the online store, in Feast's connection-string
    format `host:port[,db=N][,password=...][,ssl=true]`."""

    online_store: Literal["auto", "redis", "sqlite"] = "auto"
    """RECSTACK_ONLINE_STORE: `redis` (fail if unreachable), `sqlite` (Feast's
    embedded store in the data directory), or `auto` (Redis when it answers,
    otherwise SQLite, announced in one line)."""

    feast_project: str = "recstack"
    """RECSTACK_FEAST_PROJECT: Feast project name; it prefixes every online key."""

    feast_registry: str | None = None
    """RECSTACK_FEAST_REGISTRY: a registry file path, or a SQLAlchemy URL such as
    `postgresql+psycopg://user@host:5432/db` for a shared SQL registry. Default:
    `DATA_DIR/feature_store/registry.db`."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        names = {"redis": "RECSTACK_REDIS", "online_store": "RECSTACK_ONLINE_STORE",
                 "feast_project": "RECSTACK_FEAST_PROJECT",
                 "feast_registry": "RECSTACK_FEAST_REGISTRY"}
        values = {field: env[var] for field, var in names.items() if env.get(var)}
        return cls.model_validate(values)


class TelemetrySettings(BaseModel):
    """The serving front's OpenTelemetry setup (serving/telemetry.py), read once where
    it starts (`recstack serve`) from OpenTelemetry's standard variables. The SDK reads
    the others itself (OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_SCHEDULE_DELAY, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_name: str = "recstack-serving"
    """OTEL_SERVICE_NAME: the `service.name` of every metric and span."""

    otlp_endpoint: str | None = None
    """OTEL_EXPORTER_OTLP_ENDPOINT: an OTLP/HTTP endpoint (`http://collector:4318`)
    that metrics and traces also go to (`/v1/metrics`, `/v1/traces` under it); None:
    Prometheus on `/metrics` only, no exporter."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if env is None else env
        names = {"service_name": "OTEL_SERVICE_NAME",
                 "otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT"}
        return cls.model_validate({field: env[var] for field, var in names.items()
                                   if env.get(var)})
