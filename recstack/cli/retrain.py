"""`recstack retrain`: create a training RayJob from the chart's template (the retrain CronJob).

Only the standard library talks to the API server (urllib, ssl, json), so the pod
needs no Kubernetes client: the in-cluster token, CA and namespace come from the
ServiceAccount mount, and the Role allows create/get/list on rayjobs.ray.io only.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer
import yaml

from recstack.cli.console import EXIT_INVALID_INPUT, console, fail

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _template(path: Path) -> dict[str, Any]:
    try:
        body = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"--rayjob-template {path}: {exc}", EXIT_INVALID_INPUT)
    if not isinstance(body, dict) or body.get("kind") != "RayJob":
        fail(f"--rayjob-template {path}: not a RayJob manifest", EXIT_INVALID_INPUT)
    meta = body.get("metadata") or {}
    if not meta.get("generateName") or meta.get("name"):
        fail(f"--rayjob-template {path}: metadata needs generateName and no name, so each "
             "run creates a new RayJob", EXIT_INVALID_INPUT)
    return body


def _read(option: str, path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        fail(f"{option} {path}: {exc} (is this a pod with a ServiceAccount token?)")


def retrain(
    rayjob_template: Path = typer.Option(..., "--rayjob-template", help="RayJob manifest "
                                         "with metadata.generateName (the chart's ConfigMap)."),
    api_server: str | None = typer.Option(None, help="API server URL (default: https://"
                                          "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)."),
    token_file: Path = typer.Option(ACCOUNT / "token", help="Bearer token file."),
    ca_file: Path | None = typer.Option(None, help="CA bundle for https (default: the "
                                        "ServiceAccount's ca.crt)."),
    namespace: str | None = typer.Option(None, help="Namespace (default: the pod's own)."),
) -> None:
    """Create a RayJob from the chart's template, print its name."""
    body = _template(rayjob_template)
    if api_server is None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
            "KUBERNETES_SERVICE_PORT", "443")
        if not host:
            fail("no --api-server and no KUBERNETES_SERVICE_HOST: not in a pod", EXIT_INVALID_INPUT)
        api_server = f"https://{host}:{port}"
    namespace = namespace or _read("namespace file", ACCOUNT / "namespace")
    token = _read("--token-file", token_file)
    url = f"{api_server.rstrip('/')}/apis/ray.io/v1/namespaces/{namespace}/rayjobs"
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=str(ca_file or ACCOUNT / "ca.crt"))
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json",
                                              "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:
            created = json.load(answer)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            message = text
        fail(f"creating a RayJob in {namespace}: HTTP {exc.code}: {message.strip()}")
    except (urllib.error.URLError, OSError) as exc:
        fail(f"creating a RayJob at {url}: {getattr(exc, 'reason', exc)}")
    name = created.get("metadata", {}).get("name", "?")
    console.print(f"created RayJob {name} in namespace {namespace}", highlight=False)
