"""`recstack collect` as the chart runs it in a pod: bound to 0.0.0.0 (reached on every
interface of the machine, not only loopback), its API keys in a file mounted the way
the kubelet mounts a Secret, rotated in place without a restart."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from recstack.processes import Service, free_port
from tests.conftest import TEST_REDIS
from tests.http_checks import wait_ok

pytestmark = pytest.mark.integration


def kubelet_secret(mount: Path, keys: str, generation: int) -> Path:
    """Write `keys` as the kubelet's AtomicWriter does: a timestamped directory, the
    `..data` symlink swapped to it by a rename, and `api-keys` -> `..data/api-keys`."""
    mount.mkdir(exist_ok=True)
    payload = mount / f"..2026_12_07_00_00_0{generation}"
    payload.mkdir()
    (payload / "api-keys").write_text(keys)
    staged = mount / "..data_tmp"
    staged.symlink_to(payload.name)
    staged.rename(mount / "..data")
    if not (mount / "api-keys").is_symlink():
        (mount / "api-keys").symlink_to("..data/api-keys")
    return mount / "api-keys"


def machine_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback."""
    return [a.address for addresses in psutil.net_if_addrs().values() for a in addresses
            if a.family.name == "AF_INET" and not a.address.startswith("127.")]


def call(url: str, body: object = None, key: str | None = None) -> int:
    headers = {"content-type": "application/json"} | (
        {"authorization": f"Bearer {key}"} if key else {})
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10
                                    ) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture()
def collector(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    keys = kubelet_secret(tmp_path / "secret", "first-key\n", 1)
    port = free_port()
    service = Service("recstack collect", [
        sys.executable, "-m", "recstack", "collect", "--host", "0.0.0.0", "--port", str(port)],
        tmp_path / "collector.log", {"RECSTACK_REDIS": TEST_REDIS,
                                     "RECSTACK_FEAST_PROJECT": "recstack_test_pod",
                                     "RECSTACK_API_KEYS": "", "RECSTACK_API_KEYS_FILE": str(keys)})
    try:
        wait_ok(service, f"http://127.0.0.1:{port}/readyz", 60, every=0.5)
        yield port, tmp_path / "secret"
    finally:
        service.stop(10)


def test_the_pod_collector_listens_everywhere_and_takes_rotated_keys(
        collector: tuple[int, Path]) -> None:
    port, mount = collector
    for address in ["127.0.0.1", *machine_addresses()]:
        assert call(f"http://{address}:{port}/readyz") == 200, address
    event = {"user_id": "u1", "item_id": "i1", "event_type": "click",
             "timestamp": "2026-12-01T00:00:00Z"}
    url = f"http://127.0.0.1:{port}/v1/events"
    assert call(url, event, "first-key") == 202
    assert call(url, event, "second-key") == 401
    kubelet_secret(mount, "second-key\n", 2)  # the Secret rotated: a new ..data
    assert call(url, event | {"item_id": "i2"}, "second-key") == 202
    assert call(url, event | {"item_id": "i3"}, "first-key") == 401
    assert os.readlink(mount / "..data").endswith("_02")
