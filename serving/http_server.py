"""The HTTP server of `recstack serve`: KServe's V1 and V2 route handlers and data
plane, assembled here instead of by `kserve.ModelServer.start`, which listens on
every interface, mounts the model-repository routes (load, unload) for anyone,
answers readiness from a flag set once, and lets a malformed V2 body escape as a
500 after which uvicorn drops the keep-alive connection.

What this assembly adds:
- `host`: 127.0.0.1 unless told otherwise (the chart sets 0.0.0.0 in the pod).
- Access (`Access`): with inference keys set, every route but the probes and
  `/metrics` asks for one (`Authorization: Bearer KEY` or `X-API-Key: KEY`), 401
  otherwise. Model control (`POST /v2/repository/models/{name}/load|unload`) is
  not mounted at all unless admin keys are set, and then takes an admin key.
  Unloading takes a model out of service (503 on its routes, readiness false)
  without forgetting it, so `load` brings it back.
- V2 infer is parsed here (serving/requests.py `decode_v2`): JSON with or without
  a content type, or the binary tensor extension; anything malformed is a 400.
- Health: `/v2/health/ready` is false while a model is unloaded or a graph fails
  its probe, `/v2/health/live` false once a graph has failed past its grace
  (serving/health.py); both are open, for the kubelet.
- Errors: every error answer is `{"error": reason}`; a request validation error is
  a 400, not FastAPI's 422; an exception that escapes a handler never closes the
  client's connection (`_KeepConnection`).

`/metrics` is the Prometheus registry: request counts and latencies by model,
endpoint, variant, version and outcome, cache and impression counters, Ray's and
the Python process's own; model names and version ids, never a user or item id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIRouter
from kserve import errors as kserve_errors
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.model import BaseKServeModel
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import metrics_handler
from kserve.protocol.rest.v1_endpoints import register_v1_endpoints
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api_keys import ApiKeys
from serving.requests import decode_v2

log = logging.getLogger("recstack.serving")

SERVE_KEYS_VAR, SERVE_KEYS_FILE_VAR = "RECSTACK_SERVE_API_KEYS", "RECSTACK_SERVE_API_KEYS_FILE"
ADMIN_KEYS_VAR, ADMIN_KEYS_FILE_VAR = "RECSTACK_ADMIN_KEYS", "RECSTACK_ADMIN_KEYS_FILE"
OPEN_PATHS = frozenset({"/", "/v2/health/live", "/v2/health/ready", "/metrics"})
CONTROL_PREFIX = "/v2/repository/"
# Triton's names for the Open Inference Protocol's tensor types (model configuration).
TRITON_TYPES = {"BYTES": "TYPE_STRING", "INT32": "TYPE_INT32", "FP32": "TYPE_FP32"}


@dataclass(frozen=True)
class Access:
    api_keys: ApiKeys | None = None
    """Keys for inference and metadata routes; None: those routes are open."""
    admin_keys: ApiKeys | None = None
    """Keys for model control; None: the control routes are not mounted."""

    def keys_for(self, path: str) -> list[ApiKeys] | None:
        """The key sets of which one must accept the caller; None: no key asked."""
        if path in OPEN_PATHS:
            return None
        if path.startswith(CONTROL_PREFIX):
            return [self.admin_keys] if self.admin_keys else None  # unmounted: a 404
        if self.api_keys is None:
            return None
        return [self.api_keys, *([self.admin_keys] if self.admin_keys else [])]


@dataclass(frozen=True)
class Health:
    """Why the server is not ready or not live (None: it is)."""

    ready: Callable[[], str | None]
    live: Callable[[], str | None]


def _presented(scope: Scope) -> list[str]:
    keys = []
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.decode("latin-1").strip())
    return keys


async def _send_json(send: Send, status: int, body: bytes,
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class _KeepConnection:
    """The outermost layer: access control by route, and errors that stay errors.
    uvicorn closes a connection whose application raised after answering (Starlette's
    error middleware answers a 500, then re-raises); here the exception ends with the
    answer, and one raised before any answer becomes a JSON 500."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = self.access.keys_for(scope["path"])
        if wanted is not None:
            presented = _presented(scope)
            if not any(keys.accepts(key) for keys in wanted for key in presented):
                reason = ("invalid API key" if presented else "missing API key: send "
                          "Authorization: Bearer <key> or X-API-Key: <key>")
                await _send_json(send, 401, b'{"error":"%s"}' % reason.encode(),
                                 [(b"www-authenticate", b"Bearer")])
                return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:
                return  # answered (a 500 by Starlette, logged there); the connection lives
            log.exception("unhandled error on %s", scope["path"])
            await _send_json(send, 500, b'{"error":"%s: internal error"}'
                             % type(exc).__name__.encode())


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def build_app(models: list[BaseKServeModel], health: Health, access: Access) -> ASGIApp:
    """The ASGI application: our routes first, then KServe's, then error handlers."""
    repository = ModelRepository()
    for model in models:
        repository.update(model)
    dataplane = DataPlane(model_registry=repository)
    app = FastAPI(title="RecStack serving (KServe V1 and V2)", docs_url=None,
                  redoc_url=None)

    def model_named(name: str) -> BaseKServeModel:
        model = repository.get_model(name)
        if model is None:
            raise ModelNotFound(name)
        return model

    live = _health_routes(app, models, health, model_named)
    _v2_routes(app, dataplane, model_named)
    if access.admin_keys is not None:
        _control_routes(app, model_named)
    app.add_api_route("/metrics", metrics_handler, methods=["GET"], include_in_schema=False)
    app.add_api_route("/", live, methods=["GET"], include_in_schema=False)
    _include_kserve(app, dataplane)
    _handle_errors(app)
    return _KeepConnection(app, access)


ModelNamed = Callable[[str], BaseKServeModel]  # the model of a name; ModelNotFound else


def _health_routes(app: FastAPI, models: list[BaseKServeModel], health: Health,
                   model_named: ModelNamed) -> Callable[[], Awaitable[JSONResponse]]:
    """The V2 health routes; returns the liveness handler (also served at /)."""
    @app.get("/v2/health/live")
    async def live() -> JSONResponse:
        reason = health.live()
        return _error(503, reason) if reason else JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        unloaded = sorted(m.name for m in models if not m.ready)
        reason = health.ready() or (unloaded and f"unloaded: {', '.join(unloaded)}")
        return _error(503, str(reason)) if reason else JSONResponse({"ready": True})

    @app.get("/v2/models/{model_name}/ready")
    async def model_ready(model_name: str) -> JSONResponse:
        reason = health.ready() or (not model_named(model_name).ready and "unloaded")
        if reason:
            return _error(503, f"{model_name} is not ready: {reason}")
        return JSONResponse({"name": model_name, "ready": True})

    return live


def _v2_routes(app: FastAPI, dataplane: DataPlane, model_named: ModelNamed) -> None:
    """V2 inference with binary tensors, Triton's model config, and a clear 404 for
    version-addressed routes."""
    @app.post("/v2/models/{model_name}/infer")
    async def infer(model_name: str, request: Request) -> Response:
        model = model_named(model_name)
        if not model.ready:
            raise ModelNotReady(model_name)
        headers = dict(request.headers)
        decoded = decode_v2(await request.body(), headers, model_name)
        answer, answer_headers = await dataplane.infer(model_name, decoded, headers)
        body, encoded_headers = dataplane.encode(model_name, answer, headers, {})
        answer_headers.update(encoded_headers)
        for name in ("content-length", "content-type"):
            answer_headers.pop(name, None)
        if isinstance(body, bytes):  # binary tensor outputs were asked for
            return Response(body, headers=answer_headers,
                            media_type="application/octet-stream")
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                        headers=answer_headers,
                        media_type="application/json")

    @app.get("/v2/models/{model_name}/config")
    async def model_config(model_name: str) -> dict[str, Any]:
        """Triton's model configuration extension, which tritonclient asks for."""
        model = model_named(model_name)
        def tensors(types: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"name": t["name"], "data_type": TRITON_TYPES[t["datatype"]],
                     "dims": t["shape"]} for t in types]
        return {"name": model_name, "platform": "recstack", "backend": "recstack",
                "max_batch_size": 0, "input": tensors(await model.get_input_types()),
                "output": tensors(await model.get_output_types())}

    @app.api_route("/v2/models/{model_name}/versions/{model_version}{rest:path}",
                   methods=["GET", "POST"], include_in_schema=False)
    async def versioned(model_name: str, model_version: str, rest: str) -> JSONResponse:
        model_named(model_name)
        return _error(404, f"{model_name} has no version {model_version!r} to address: a "
                      "request is served by the version of its variant (serve.yaml); "
                      f"call /v2/models/{model_name}{rest}")


def _control_routes(app: FastAPI, model_named: ModelNamed) -> None:
    """Model control, mounted only when admin keys are configured (`Access` then asks
    for one on these paths)."""
    @app.post(CONTROL_PREFIX + "models/{model_name}/unload")
    async def unload(model_name: str) -> dict[str, Any]:
        """Take a model out of service (admin key): 503 on its routes, readiness
        false, until `load`."""
        model_named(model_name).ready = False
        log.warning("model %s unloaded through model control", model_name)
        return {"name": model_name, "unload": True}

    @app.post(CONTROL_PREFIX + "models/{model_name}/load")
    async def load(model_name: str) -> dict[str, Any]:
        """Put an unloaded model back in service (admin key)."""
        model_named(model_name).ready = True
        log.warning("model %s loaded through model control", model_name)
        return {"name": model_name, "load": True}


def _include_kserve(app: FastAPI, dataplane: DataPlane) -> None:
    """KServe's V1 and V2 routes, less those this app answers itself, its model
    control and its version-addressed routes."""
    ours = {(route.path, method) for route in app.router.routes
            if isinstance(route, APIRoute) for method in route.methods or ()}
    for router in _kserve_routers(dataplane):
        router.routes[:] = [
            route for route in router.routes if isinstance(route, APIRoute)
            and not route.path.startswith(CONTROL_PREFIX) and "/versions/" not in route.path
            and not {(route.path, m) for m in route.methods or ()} & ours]
        app.include_router(router)


class _Routers:
    """Stands in for the app that KServe's register_v1/v2_endpoints include their
    routers into, so that their routes can be sifted before the app gets them."""

    def __init__(self) -> None:
        self.routers: list[APIRouter] = []

    def include_router(self, router: APIRouter) -> None:
        self.routers.append(router)


def _kserve_routers(dataplane: DataPlane) -> list[APIRouter]:
    collected = _Routers()
    register_v1_endpoints(collected, dataplane, None)
    register_v2_endpoints(collected, dataplane, None)
    return collected.routers


def _handle_errors(app: FastAPI) -> None:
    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        log.warning("bad request (400): %s", exc)  # a client's mistake: one line, no trace
        return _error(400, str(exc))

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors()[:5]]
        return _error(400, "; ".join(problems))

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc))

    async def not_ready(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc))

    app.add_exception_handler(InvalidInput, invalid)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(ModelNotFound, not_found)
    app.add_exception_handler(ModelNotReady, not_ready)
    app.add_exception_handler(Exception, kserve_errors.generic_exception_handler)


def configure_logging() -> None:
    """KServe's log format, as its ModelServer sets it, and RecStack's serving lines
    (swaps, probes, start-up) at INFO in the same form."""
    from kserve.logging import configure_logging as kserve_logging

    kserve_logging()
    recstack = logging.getLogger("recstack")
    if not recstack.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s.%(msecs)03d %(process)s %(name)s %(levelname)s %(message)s",
            "%Y-%m-%d %H:%M:%S"))
        recstack.addHandler(handler)
        recstack.setLevel(logging.INFO)
        recstack.propagate = False


def run(app: ASGIApp, host: str, port: int) -> None:
    """uvicorn on host:port until SIGTERM or SIGINT (in-flight requests finish first)."""
    configure_logging()
    config = uvicorn.Config(app, host=host, port=port, log_config=None,
                            timeout_graceful_shutdown=30, timeout_keep_alive=65)
    uvicorn.Server(config).run()

