"""GraphHealth's bookkeeping with a stand-in handle and clock (the real probe over Ray is
in test_serve_hardening.py): unready at the first failed probe, not live after the
grace, ready again at the first answer, retired graphs forgotten."""

from __future__ import annotations

from typing import Any

from serving.health import GraphHealth, HealthConfig


class Handle:
    """A handle whose `ready.remote().result()` answers or raises, as told."""

    def __init__(self) -> None:
        self.fails = False
        self.ready = self

    def remote(self) -> Handle:
        return self

    def result(self, timeout_s: float) -> str:
        if self.fails:
            raise TimeoutError(f"no answer in {timeout_s} s")
        return "v1"


def test_readiness_and_liveness_follow_the_probes() -> None:
    now = [0.0]
    handle = Handle()
    graphs: dict[str, Any] = {"app-v1": handle}
    health = GraphHealth(lambda: graphs.items(), HealthConfig(grace_s=60),
                         clock=lambda: now[0])
    health.probe()
    assert health.ready() is None and health.live() is None
    handle.fails = True
    now[0] = 10.0
    health.probe()
    assert health.ready() == "graph app-v1: TimeoutError: no answer in 2.0 s"
    assert health.live() is None  # within the grace: Ray Serve may restart it
    now[0] = 71.0
    health.probe()  # still failing: counted from the first failure, not the latest
    assert health.live() == ("graph app-v1 failing for 61 s (over 60 s): "
                             "TimeoutError: no answer in 2.0 s")
    handle.fails = False
    health.probe()
    assert health.ready() is None and health.live() is None
    handle.fails = True
    health.probe()
    graphs.clear()  # swapped out while failing: no longer this server's concern
    health.probe()
    assert health.ready() is None


def test_a_probe_thread_that_stopped_turning_fails_liveness() -> None:
    now = [0.0]
    health = GraphHealth(lambda: {}.items(), HealthConfig(grace_s=5), clock=lambda: now[0])
    health.probe()
    now[0] = 6.0
    assert health.live() == "no probe round finished for 6 s"
