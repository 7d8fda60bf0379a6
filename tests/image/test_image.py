"""The RecStack image (docker/Dockerfile), built for real with docker/build.sh and run
the way the chart and KubeRay run it: as uid 10001, on a read-only root filesystem with
/tmp writable, `recstack serve --model-dir /mnt/models` over a version trained outside
the image, the collector, and a Ray head answering KubeRay's exec probes.

`make test-image` (pytest -m image); minutes: the first build installs the whole stack.
Skipped only where no Docker engine can be started. The machine's Redis is used through
db RECSTACK_IMAGE_TEST_REDIS (default 127.0.0.1:6379,db=12), which is flushed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from contracts.settings import Settings
from recstack.processes import Service, free_port
from stores.feature_store import RedisAddress, apply_definitions, materialize_all, open_store
from stores.registry import FEATURE_REGISTRY_FILE, MANIFEST
from tests.serving.conftest import served_version  # noqa: F401  (a trained version)

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT.parent / "shared" / "tools" / "container-engine.sh"
IMAGE = os.environ.get("RECSTACK_TEST_IMAGE", "recstack:dev")
IMAGE_REDIS = os.environ.get("RECSTACK_IMAGE_TEST_REDIS", "127.0.0.1:6379,db=12")
PROJECT = "recstack"  # the Feast project the session's version was trained in
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
MAX_IMAGE_BYTES = 2_500_000_000
# Ray Serve's own HTTP proxy, which `recstack serve` starts (KServe's front is the server
# the tests call): fixed at 8000, on the machine's loopback under --network host.
RAY_SERVE_PORT = 8000
RAY_SERVE_CONFLICT = "Failed to bind to address '127.0.0.1:8000'"
COLD_STARTS = max(1, int(os.environ.get("RECSTACK_IMAGE_COLD_STARTS", "1")))
# What the chart gives a pod: a read-only root filesystem, an emptyDir at /tmp (exec
# allowed, as on an emptyDir), a shared-memory volume for Ray's object store, uid 10001.
LOCKED_DOWN = ["--read-only", "--tmpfs", "/tmp:rw,exec,nosuid,size=4g", "--shm-size", "2g",
               "--user", "10001:10001"]


_progress: list[Any] = []  # pytest's capture manager, once the image fixture ran


def _say(message: str) -> None:
    """A progress line on the terminal, past pytest's output capture (`make test-image`
    runs without -s; builds and starts take minutes)."""
    line = f"[image] {message}"
    if _progress:
        with _progress[0].global_and_fixture_disabled():
            print(line, flush=True)
    else:
        print(line, flush=True)


def _docker(*args: str, timeout: float = 120, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _in_image(script: str, *options: str, timeout: float = 120) -> str:
    """`sh -c script` in a throwaway container without network; its stdout."""
    return _docker("run", "--rm", "--network", "none", *options, IMAGE, "sh", "-c", script,
                   timeout=timeout).stdout


def _engine_up() -> str | None:
    """None once `docker info` answers (starting the engine if need be), else why not."""
    if shutil.which("docker") is not None and subprocess.run(
            ["docker", "info"], capture_output=True, check=False).returncode == 0:
        return None
    if not ENGINE.is_file():
        return f"no Docker engine is running and there is no {ENGINE} to start one"
    _say(f"starting the engine: {ENGINE}")
    started = subprocess.run([str(ENGINE)], capture_output=True, text=True, check=False)
    if started.returncode != 0 or subprocess.run(
            ["docker", "info"], capture_output=True, check=False).returncode != 0:
        return (f"the Docker engine could not be started ({ENGINE} exited "
                f"{started.returncode}): {(started.stdout + started.stderr)[-500:]}")
    return None


@pytest.fixture(scope="session")
def image(pytestconfig: pytest.Config) -> str:
    """The image, built now by docker/build.sh: its steps shown as they start, its whole
    output in the test's captured stdout."""
    manager = pytestconfig.pluginmanager.getplugin("capturemanager")
    if manager is not None:
        _progress.append(manager)
    why = _engine_up()
    if why is not None:
        pytest.skip(why)
    _say(f"docker/build.sh -> {IMAGE} (minutes without a layer cache)")
    start = time.monotonic()
    build = subprocess.Popen([str(ROOT / "docker" / "build.sh")], cwd=ROOT,
                             env={**os.environ, "IMAGE": IMAGE}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    assert build.stdout is not None
    tail: list[str] = []
    for line in build.stdout:
        sys.stdout.write(line)
        if line.startswith(("Step ", "build.sh:")):
            _say(line.rstrip()[:150])
        tail = [*tail[-40:], line]
    assert build.wait() == 0, "docker/build.sh failed:\n" + "".join(tail)
    _say(f"built in {time.monotonic() - start:.0f} s")
    return IMAGE


def _get(port: int, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data,
                                     {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _wait_ready(container: str, port: int, path: str, limit_s: float) -> float:
    """Seconds until GET path answers 200; fails with the container's log if it exits or
    the limit passes."""
    start = time.monotonic()
    while True:
        try:
            if _get(port, path, timeout=5)[0] == 200:
                return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        state = _docker("inspect", "--format", "{{.State.Running}}", container,
                        check=False).stdout.strip()
        if state != "true":
            raise AssertionError(f"{container} stopped before {path} answered 200:\n"
                                 + _logs(container))
        if time.monotonic() - start > limit_s:
            raise AssertionError(f"{path} not 200 within {limit_s:.0f} s:\n" + _logs(container))
        time.sleep(0.5)


def _logs(container: str) -> str:
    done = _docker("logs", "--tail", "80", container, check=False)
    return (done.stdout + done.stderr)[-6000:]


@contextmanager
def _container(name: str, options: Sequence[str], command: Sequence[str]) -> Iterator[str]:
    """`docker run -d` of the image as `name`, removed after (its log in the report of a
    test that fails)."""
    _docker("rm", "-f", name, check=False)
    _docker("run", "-d", "--name", name, *options, IMAGE, *command)
    try:
        yield name
    except BaseException:
        print(f"{name}'s last lines:\n{_logs(name)}")  # in the failed test's report
        raise
    finally:
        _docker("rm", "-f", name, check=False, timeout=60)


def _redis() -> RedisAddress:
    address = RedisAddress.parse(IMAGE_REDIS)
    if not address.reachable():
        pytest.fail(f"no Redis at {address}: start one (`.ci/run` does) or set "
                    "RECSTACK_IMAGE_TEST_REDIS")
    return address


@pytest.mark.timeout(3600)
def test_help_runs_without_network(image: str) -> None:
    done = _docker("run", "--rm", "--network", "none", image, "recstack", "--help")
    assert done.returncode == 0
    for command in ("serve", "collect", "consume", "train", "features", "data"):
        assert command in done.stdout, done.stdout


def test_user_tools_and_what_is_left_out(image: str) -> None:
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    _say(f"image size {size} bytes ({size / 1e9:.2f} GB uncompressed)")
    assert size < MAX_IMAGE_BYTES
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}",
                                image).stdout)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["User"] == "10001:10001"
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"

    facts = _in_image(
        "id -u; id -g; "
        "for tool in gcc cc g++ c++ cpp make; do command -v $tool; done; echo --; "
        "ls -d /root/.cache/pip /tmp/.cache/pip /tmp/ctx 2>/dev/null; "
        "find / -xdev -type d -path '*/.cache/pip' 2>/dev/null; echo --; "
        "ls -A /var/lib/apt/lists 2>/dev/null; echo --; "
        "for tool in bash wget tini; do command -v $tool; done; "
        "bash -lc 'command -v ray recstack python'; echo --; "
        "find / -xdev -type f \\( -name '*.crt' -o -name '*.pem' \\) "
        "-exec sha256sum {} + 2>/dev/null; exit 0")
    uid, gid, tools, pip_caches, apt_lists, on_path, certificates = _split(facts)
    assert uid == "10001" and gid == "10001"
    assert tools == "", f"compilers in the image: {tools}"
    assert pip_caches == "", f"pip caches or the builder's inputs: {pip_caches}"
    assert apt_lists == "", f"apt lists: {apt_lists}"
    assert on_path.split() == ["/usr/bin/bash", "/usr/bin/wget", "/usr/bin/tini",
                               "/opt/venv/bin/ray", "/opt/venv/bin/recstack",
                               "/opt/venv/bin/python"], on_path
    if HOST_CA.is_file():  # this machine's bundle (with its proxy's CA) is nowhere inside
        ours = hashlib.sha256(HOST_CA.read_bytes()).hexdigest()
        assert ours not in certificates, certificates

    stack = _in_image(
        "python -c '"
        "import importlib.metadata as m, sys, ray, torch; "
        "names = sorted(d.metadata[\"Name\"].lower() for d in m.distributions()); "
        "print(sys.version.split()[0], ray.__version__, torch.__version__, torch.version.cuda); "
        "print(\" \".join(names))'", timeout=180)
    versions, names = stack.strip().splitlines()
    python, ray_version, torch_version, cuda = versions.split()
    _say(f"python {python}, ray {ray_version}, torch {torch_version}")
    assert python.startswith("3.11.") and cuda == "None"
    assert torch_version == "2.13.0+cpu"
    installed = set(names.split())
    assert not [n for n in installed if n.startswith("nvidia")], installed
    assert not installed & {"pytest", "mypy", "ruff", "hypothesis", "schemathesis", "moto"}
    assert {"recstack", "ray", "torch", "kserve", "feast", "xgboost"} <= installed


def _split(text: str) -> list[str]:
    """`id -u` and `id -g` (the first two lines), then the `--`-separated sections, each
    with its whitespace collapsed."""
    head, *rest = text.split("--\n")
    uid, gid, *first = head.splitlines()
    return [uid.strip(), gid.strip(), " ".join(first).strip(),
            *(" ".join(part.split()) for part in rest)]


@pytest.fixture(scope="module")
def model_dir(served_version: Path, small_world: Path,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's version (trained by the host's venv, tests/serving/conftest.py)
    copied to `.../mnt/models` where uid 10001 may read it, its manifest naming a data
    directory that exists nowhere, its features materialized into the test Redis db."""
    address = _redis()
    address.client().flushdb()
    store = open_store(small_world, Settings(redis=IMAGE_REDIS, online_store="redis",
                                             feast_project=PROJECT))
    materialize_all(store, apply_definitions(store, small_world))
    out = tmp_path_factory.mktemp("mnt") / "models"
    shutil.copytree(served_version, out)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["data_snapshot"]["data_dir"] = "/nowhere/trained-elsewhere"
    (out / MANIFEST).write_text(json.dumps(manifest))
    for path in [out, *out.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    out.parent.chmod(0o755)
    return out


@pytest.mark.timeout(1800)
def test_serve_a_model_dir_read_only(image: str, model_dir: Path, small_world: Path,
                                     tmp_path: Path) -> None:
    """`recstack serve --model-dir /mnt/models` as the KServe predictor runs it: the
    version mounted read-only, no data directory, features from Redis through the
    version's own Feast registry. Cold start: `docker run` to /v2/health/ready 200,
    RECSTACK_IMAGE_COLD_STARTS times (default 1); with more than one, the same command
    from the host's venv as many times, for the floor."""
    assert (model_dir / FEATURE_REGISTRY_FILE).is_file()
    env = {"RECSTACK_REDIS": IMAGE_REDIS, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": PROJECT}
    options = ["--network", "host", *LOCKED_DOWN, "-v", f"{model_dir}:/mnt/models:ro",
               *(arg for name, value in env.items() for arg in ("-e", f"{name}={value}"))]
    colds: list[float] = []
    conflicts = 0
    while len(colds) < COLD_STARTS:
        _wait_port_free(RAY_SERVE_PORT, 300)
        port = free_port()
        command = ["recstack", "serve", "--model-dir", "/mnt/models", "--host", "127.0.0.1",
                   "--port", str(port)]
        _say(f"recstack serve --model-dir /mnt/models in the image on port {port}")
        start = time.monotonic()
        with _container(f"recstack-image-serve-{port}", options, command) as name:
            try:
                _wait_ready(name, port, "/v2/health/ready", 900)
            except AssertionError:
                # With --network host the container shares the machine's ports: another
                # session's Ray Serve proxy on 127.0.0.1:8000 fails this start, not the image.
                if RAY_SERVE_CONFLICT in _logs(name) and conflicts < 2:
                    conflicts += 1
                    _say(f"port {RAY_SERVE_PORT} was taken on the host meanwhile: again")
                    continue
                raise
            colds.append(time.monotonic() - start)
            _say(f"serve cold start (docker run to /v2/health/ready 200): {colds[-1]:.1f} s")
            if len(colds) == 1:
                _check_answer(port, model_dir, small_world)
                assert "features as the version's registry snapshot" in " ".join(
                    _logs(name).split())
    summary = f"image: median {statistics.median(colds):.1f} s of {_seconds(colds)}"
    if COLD_STARTS > 1:
        floors = [_host_cold_start(model_dir, env, tmp_path / f"host-{i}.log")
                  for i in range(COLD_STARTS)]
        summary += (f"; host venv: median {statistics.median(floors):.1f} s of "
                    f"{_seconds(floors)}; ratio "
                    f"{statistics.median(colds) / statistics.median(floors):.2f}")
    _say(f"serve cold start, {summary}")


def _wait_port_free(port: int, limit_s: float) -> None:
    """Until nothing listens on 127.0.0.1:port (Ray Serve's proxy of another server on
    this machine), at most limit_s."""
    deadline = time.monotonic() + limit_s
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"127.0.0.1:{port} stayed taken for {limit_s:.0f} s: Ray "
                                "Serve's proxy in the container needs it (--network host)")
        time.sleep(2)


def _seconds(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in values) + "] s"


def _check_answer(port: int, model_dir: Path, small_world: Path) -> None:
    events = pd.read_parquet(small_world / "events.parquet")
    user = str(events["user_id"].value_counts().index[0])
    status, body = _get(port, "/v1/models/recommender:predict",
                        {"instances": [{"user_id": user, "k": 5}]}, timeout=60)
    assert status == 200, body
    (answer,) = body["predictions"]
    assert len(answer["items"]) == 5, answer
    # Its online row was read from Redis: not degraded, not the cold-start list.
    assert answer["degraded"] is False and answer.get("fallback") is None, answer
    assert answer["model_version"] == manifest_version(model_dir)


def _host_cold_start(model_dir: Path, env: dict[str, str], log: Path) -> float:
    """The same `recstack serve --model-dir` from the host's venv: process start to
    /v2/health/ready 200 (the floor of the image's cold start)."""
    _wait_port_free(RAY_SERVE_PORT, 300)
    port = free_port()
    saved = os.environ.pop("RECSTACK_FEAST_REGISTRY", None)
    start = time.monotonic()
    service = Service("recstack serve (host)", [
        sys.executable, "-m", "recstack", "serve", "--model-dir", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port)], log, env)
    try:
        while True:
            try:
                if _get(port, "/v2/health/ready", timeout=5)[0] == 200:
                    took = time.monotonic() - start
                    _say(f"host serve cold start: {took:.1f} s")
                    return took
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert service.process.poll() is None, service.log_tail()
            assert time.monotonic() - start < 900, "host serve not ready in 900 s"
            time.sleep(0.5)
    finally:
        service.stop(30)
        if saved is not None:
            os.environ["RECSTACK_FEAST_REGISTRY"] = saved


def manifest_version(model_dir: Path) -> str:
    return str(json.loads((model_dir / MANIFEST).read_text())["version"])


@pytest.mark.timeout(600)
def test_collect_with_a_key_file(image: str, tmp_path: Path) -> None:
    _redis()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "api-keys").write_text("image-test-key\n")
    keys.chmod(0o755)
    (keys / "api-keys").chmod(0o644)
    port = free_port()
    options = ["--network", "host", *LOCKED_DOWN, "-v", f"{keys}:/etc/recstack:ro",
               "-e", f"RECSTACK_REDIS={IMAGE_REDIS}",
               "-e", "RECSTACK_API_KEYS_FILE=/etc/recstack/api-keys"]
    command = ["recstack", "collect", "--host", "127.0.0.1", "--port", str(port)]
    start = time.monotonic()
    with _container(f"recstack-image-collect-{port}", options, command) as name:
        _wait_ready(name, port, "/readyz", 120)
        _say(f"collector cold start (docker run to /readyz 200): "
             f"{time.monotonic() - start:.1f} s")
        assert _get(port, "/healthz")[0] == 200
        status, _ = _get(port, "/v1/events", {"events": []})
        assert status == 401  # the key file is read: no key, no events


@pytest.mark.timeout(600)
def test_ray_head_answers_kuberay_probes(image: str) -> None:
    """What KubeRay runs in a head pod: `/bin/bash -lc 'ulimit -n 65536; ray start --head
    ...'`, then its exec probes, `wget ... | grep success` on the raylet and GCS health
    routes. Without network (its own loopback), so Ray's ports clash with nothing."""
    probe = ("wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz "
             "| grep success && wget --tries 1 -T 2 -q -O- "
             "http://localhost:8265/api/gcs_healthz | grep success")
    script = ("ulimit -n 65536; ray start --head --num-cpus 1 --disable-usage-stats "
              "--dashboard-host 127.0.0.1 >/tmp/ray-start.log 2>&1 "
              "|| { cat /tmp/ray-start.log; exit 1; }; "
              f"for i in $(seq 90); do if {probe}; then echo PROBES-OK; exit 0; fi; sleep 1; "
              "done; cat /tmp/ray-start.log; exit 1")
    done = _docker("run", "--rm", "--network", "none", *LOCKED_DOWN, image,
                   "/bin/bash", "-lc", script, timeout=300, check=False)
    assert done.returncode == 0 and "PROBES-OK" in done.stdout, done.stdout + done.stderr
