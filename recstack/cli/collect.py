"""`recstack collect`: the event collector (FastAPI on uvicorn) in front of the Redis Stream."""

from __future__ import annotations

import os

import typer

from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, errors, fail

DEDUPE_TTL_VAR = "RECSTACK_EVENTS_DEDUPE_TTL_S"


def collect(
    port: int = typer.Option(8090, min=1, max=65535, help="HTTP port."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: all)."),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth",
        help="Accept events without an API key when neither RECSTACK_API_KEYS nor "
        "RECSTACK_API_KEYS_FILE is set (local trials only)."),
) -> None:
    """Take events over HTTP (POST /v1/events, one or up to 1000 at once) and append the
    valid ones to the Redis Stream recstack:PROJECT:events, once per event_id. Redis is
    RECSTACK_REDIS; API keys come from RECSTACK_API_KEYS or RECSTACK_API_KEYS_FILE.
    The OpenAPI spec is served at /docs."""
    # The environment, read once here and handed to the collector.
    environment = checks.settings()
    # Imported here: the CLI's --help stays fast.
    import uvicorn

    from serving.api_keys import ApiKeyError, ApiKeys
    from serving.events.collector import CollectorSettings, create_app
    from serving.events.stream import DEFAULT_DEDUPE_TTL_S
    from stores.redis_address import RedisAddress

    try:
        address = RedisAddress.parse(environment.redis)
        api_keys = ApiKeys.from_env()
    except (ApiKeyError, ValueError) as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    if api_keys is None and not insecure_no_auth:
        fail("no API keys: set RECSTACK_API_KEYS (comma-separated) or "
             "RECSTACK_API_KEYS_FILE (one key per line), or start with "
             "--insecure-no-auth to accept events from anyone", EXIT_INVALID_INPUT)
    settings = checks.validated(
        CollectorSettings, {"dedupe_ttl_s": DEDUPE_TTL_VAR}, redis=address,
        project=environment.feast_project, api_keys=api_keys,
        dedupe_ttl_s=os.environ.get(DEDUPE_TTL_VAR) or DEFAULT_DEDUPE_TTL_S)
    if api_keys is not None and insecure_no_auth:
        errors.print("[bold yellow]warning:[/] --insecure-no-auth ignored: API keys are "
                     "configured, and required", highlight=False)
    if settings.api_keys is None:
        errors.print("[bold yellow]warning:[/] --insecure-no-auth: anyone who reaches this "
                     "port can write events", highlight=False)
    console.print(f"collecting events on http://{host}:{port} into "
                  f"recstack:{settings.project}:events (Redis {settings.redis}); "
                  f"API spec at /docs", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
