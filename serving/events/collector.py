"""The event collector: an HTTP front that appends valid events to the Redis Stream.

Routes (FastAPI; the spec is at `/openapi.json`, browsable at `/docs`):
- `POST /v1/events`: one event object, or `{"events": [...]}` with 1 to 1000.
  Each event is validated on its own (`serving.events.event`): 202 once Redis has
  acknowledged the valid ones, with `{"accepted", "duplicates", "rejected"}`, each
  rejection an index and a reason that names the field (a batch whose events are
  all bad is still a 202, `accepted` 0: its items are checked one by one); 400
  with the same body for a lone event that is not valid, or `{"detail": ...}` for
  a malformed body or a batch over 1000 events; 413
  for a body over 16 MiB; 401 without a valid API key; 503 with `Retry-After` when
  Redis fails, in which case nothing is reported accepted and a retry is safe
  (events are stored once per `event_id`).
- `DELETE /v1/users/{user_id}`: forget a user. Their cached recommendations are
  invalidated at once; a `forget_user` entry in the stream has the consumer delete
  their online features (within about a second) and hide their offline events,
  which the next compaction deletes from disk. 202; 401; 503 with `Retry-After`.
- `GET /healthz`: the process answers. `GET /readyz`: Redis answers a PING.

`create_app(settings)` builds the app from a `CollectorSettings`, which `recstack
collect` builds from the environment (read there, once) and serves with uvicorn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.convertors import StringConvertor, register_url_convertor

from serving.api_keys import ApiKeys
from serving.events.event import ID_PATTERN, MAX_ID_LENGTH, Event, parse_events
from serving.events.stream import DEFAULT_DEDUPE_TTL_S, EventStream
from stores.redis_address import RedisAddress

log = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_BODY_BYTES = 16 * 1024 * 1024  # well above 1000 events at their size limits


class CollectorSettings(BaseModel):
    """What the collector is given by its entry point: `recstack collect` reads the
    environment once (RECSTACK_* through `Settings`, the API keys, the dedupe TTL) and
    builds these; nothing here reads it."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    redis: RedisAddress
    project: str
    api_keys: ApiKeys | None
    """None: no authentication, only with an explicit `--insecure-no-auth`."""
    dedupe_ttl_s: int = Field(default=DEFAULT_DEDUPE_TTL_S, ge=1)
    """How long an event_id is remembered: retries later than this are stored again."""
    redis_timeout_s: float = Field(default=1.0, gt=0)
    retry_after_s: int = Field(default=2, ge=0)
    cache_ttl_s: float = Field(default=3600.0, gt=0)
    """How long a deleted user's cache invalidation mark lives: at least the servers'
    response-cache TTL (as `recstack consume --cache-ttl`)."""


class RejectedEvent(BaseModel):
    index: int
    """Position in `events` (0 for a lone event)."""
    reason: str
    """`events[3].value: Input should be greater than or equal to 0`"""


class EventsResult(BaseModel):
    accepted: int
    """Events newly appended to the stream."""
    duplicates: int
    """Valid events whose event_id was stored before (a retry): not appended again."""
    rejected: list[RejectedEvent]


class Problem(BaseModel):
    detail: str


class UserDeletion(BaseModel):
    user_id: str
    stream_id: str
    """The `forget_user` entry in the events stream."""
    done_now: list[str]
    """What this request did before answering."""
    follows: list[str]
    """What the stream consumer and compaction do next."""


DELETION_FOLLOWS = [
    "online features: deleted by the stream consumer, within about a second",
    "offline events: left out of training reads once the consumer has filed the "
    "deletion (same second), deleted from disk at the next compaction",
    "events of this user received after this request are new data and are kept",
]


def _request_schema() -> dict[str, Any]:
    # The body is read by hand (a bad event must reject only itself), so FastAPI cannot
    # infer its schema; this states it for /openapi.json.
    event = Event.model_json_schema()
    # A batch's events are checked one by one: any item is well-formed, and a bad one is
    # rejected alone in the answer (anyOf keeps Event in the docs).
    item = {"anyOf": [event, {}],
            "description": "An event; each is checked on its own, a bad one rejected alone."}
    batch = {"type": "object", "additionalProperties": False, "required": ["events"],
             "properties": {"events": {"type": "array", "items": item, "minItems": 1,
                                       "maxItems": MAX_BATCH}}}
    return {"required": True,
            "content": {"application/json": {"schema": {"oneOf": [event, batch]}}}}


def create_app(settings: CollectorSettings, stream: EventStream | None = None) -> FastAPI:
    events = stream or EventStream(settings.redis.async_client(settings.redis_timeout_s),
                                   settings.project, settings.dedupe_ttl_s)
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await events.aclose()

    app = FastAPI(title="RecStack event collector", version="1",
                  summary=f"Events into the Redis Stream {events.key}.", lifespan=lifespan)
    guard = [] if settings.api_keys is None else [Depends(_require_key(settings.api_keys))]
    _event_routes(app, events, settings, guard)
    _user_routes(app, events, settings, guard)
    _health_routes(app, events, settings)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        """A bad path parameter is a 400 with a reason, as a bad body is (not FastAPI's
        422 with its own shape)."""
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors()[:5]]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=400)

    return app


def _unavailable(settings: CollectorSettings) -> dict[str, str]:
    return {"Retry-After": str(settings.retry_after_s)}


def _event_routes(app: FastAPI, events: EventStream, settings: CollectorSettings,
                  guard: list[Any]) -> None:
    @app.post("/v1/events", status_code=202, response_model=EventsResult,
              dependencies=guard, openapi_extra={"requestBody": _request_schema()},
              responses={400: {"description": "A lone event that is not valid (the result), "
                               "or a malformed body (a problem)", "content": {"application/json": {
                                   "schema": {"anyOf": [
                                       {"$ref": "#/components/schemas/EventsResult"},
                                       {"$ref": "#/components/schemas/Problem"}]}}}},
                         401: {"model": Problem},
                         413: {"model": Problem, "description": "Body over 16 MiB"},
                         503: {"model": Problem, "description": "Redis failed; retry"}})
    async def post_events(request: Request) -> JSONResponse:
        """Append one event or a batch to the stream, each stored once per event_id."""
        raw, path = _split_body(_parse_json(await _read_body(request)))
        valid, rejected = parse_events(raw, path)
        if not valid:  # a lone bad event is a bad request; a batch answers per event
            result = EventsResult(accepted=0, duplicates=0, rejected=[
                RejectedEvent(index=r.index, reason=r.reason) for r in rejected])
            return JSONResponse(result.model_dump(), status_code=202 if path else 400)
        try:
            appended = await events.append(valid)
        except (RedisError, OSError) as exc:
            log.warning("Redis at %s failed, %d event(s) refused: %s", settings.redis,
                        len(valid), exc)
            raise HTTPException(503, f"Redis at {settings.redis} failed ({exc}); nothing "
                                "was accepted, retry later (events are stored once per "
                                "event_id)", headers=_unavailable(settings)) from exc
        result = EventsResult(accepted=appended.accepted, duplicates=appended.duplicates,
                              rejected=[RejectedEvent(index=r.index, reason=r.reason)
                                        for r in rejected])
        return JSONResponse(result.model_dump(), status_code=202)


def _user_routes(app: FastAPI, events: EventStream, settings: CollectorSettings,
                 guard: list[Any]) -> None:
    @app.delete("/v1/users/{user_id:any}", status_code=202, response_model=UserDeletion,
                dependencies=guard,
                responses={400: {"model": Problem, "description": "Bad user id"},
                           401: {"model": Problem},
                           503: {"model": Problem, "description": "Redis failed; retry"}})
    async def delete_user(user_id: str = Path(min_length=1, max_length=MAX_ID_LENGTH,
                                              pattern=ID_PATTERN,
                                              description="As in events; may hold `/`.")
                          ) -> UserDeletion:
        """Forget a user: their cached recommendations now, their online features and
        offline events through the stream (in order with their earlier events)."""
        try:
            stream_id = await events.forget_user(user_id, settings.cache_ttl_s, time.time())
        except (RedisError, OSError) as exc:
            log.warning("Redis at %s failed, deletion of a user refused: %s",
                        settings.redis, exc)
            raise HTTPException(503, f"Redis at {settings.redis} failed ({exc}); nothing "
                                "was done, retry later (a repeated deletion is harmless)",
                                headers=_unavailable(settings)) from exc
        return UserDeletion(user_id=user_id, stream_id=stream_id,
                            done_now=["cached recommendations invalidated"],
                            follows=DELETION_FOLLOWS)


def _health_routes(app: FastAPI, events: EventStream, settings: CollectorSettings) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process answers (Redis is not asked)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Problem}})
    async def readyz() -> dict[str, str]:
        """Ready when Redis answers a PING."""
        try:
            await events.ping()
        except (RedisError, OSError) as exc:
            raise HTTPException(503, f"Redis at {settings.redis}: {exc}",
                                headers=_unavailable(settings)) from exc
        return {"status": "ready"}


class _AnyText(StringConvertor):
    """A path parameter of any characters, newlines too (Starlette's `path` stops at a
    newline, which then answers 404), so that the id's own check answers 400."""

    regex = "[\\s\\S]*"


register_url_convertor("any", _AnyText())

_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


def _require_key(keys: ApiKeys) -> Any:
    async def require_key(
            bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
            header: str | None = Security(_header)) -> None:
        presented = [k for k in (bearer.credentials if bearer else None, header) if k]
        if not presented:
            raise HTTPException(401, "missing API key: send Authorization: Bearer <key> "
                                "or X-API-Key: <key>", headers={"WWW-Authenticate": "Bearer"})
        if not any(keys.accepts(key) for key in presented):
            raise HTTPException(401, "invalid API key",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return require_key


async def _read_body(request: Request) -> bytes:
    too_large = HTTPException(413, f"body over {MAX_BODY_BYTES} bytes: send at most "
                              f"{MAX_BATCH} events per request")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():  # counted as it arrives: the header may lie
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes) -> Any:
    """orjson, strict where Python's parser is lax: no NaN or Infinity, no lone
    surrogate (\\ud800 is not Unicode, and could not be stored), no invalid UTF-8,
    at most 1024 levels deep."""
    if not body.strip():
        raise HTTPException(400, "empty body: send an event object or {\"events\": [...]}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def _split_body(body: Any) -> tuple[list[Any], str]:
    """(raw events, how reasons name them): a batch `{"events": [...]}` or one event."""
    if isinstance(body, dict) and "events" in body:
        others = sorted(set(body) - {"events"})
        if others:
            raise HTTPException(400, f"unexpected field(s) beside events: {', '.join(others)}")
        batch = body["events"]
        if not isinstance(batch, list):
            raise HTTPException(400, f"events: should be an array of event objects, got "
                                f"{_JSON_TYPES.get(type(batch), 'an object')}")
        if not batch:
            raise HTTPException(400, f"events: empty; send 1 to {MAX_BATCH} events")
        if len(batch) > MAX_BATCH:  # the schema's maxItems: a bad request, not a size
            raise HTTPException(400, f"events: {len(batch)} events; at most {MAX_BATCH} per "
                                "request, split the batch")
        return batch, "events"
    if isinstance(body, dict):
        return [body], ""
    raise HTTPException(400, "body should be an event object or {\"events\": [...]}, got "
                        f"{_JSON_TYPES.get(type(body), 'something else')}")
