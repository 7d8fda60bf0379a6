"""`recstack collect`: the event collector (FastAPI on uvicorn) in front of the Redis Stream."""

from __future__ import annotations

import typer

from recstack.cli.console import EXIT_INVALID_INPUT, console, errors, fail


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
    # Imported here: the CLI's --help stays fast.
    import uvicorn

    from serving.events.collector import CollectorConfigError, CollectorSettings, create_app

    try:
        settings = CollectorSettings.from_env(insecure_no_auth=insecure_no_auth)
    except CollectorConfigError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    if settings.api_keys is None:
        errors.print("[bold yellow]warning:[/] --insecure-no-auth: anyone who reaches this "
                     "port can write events", highlight=False)
    console.print(f"collecting events on http://{host}:{port} into "
                  f"recstack:{settings.project}:events (Redis {settings.redis}); "
                  f"API spec at /docs", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
