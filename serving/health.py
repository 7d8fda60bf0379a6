"""Whether `recstack serve` can answer: readiness for the load balancer, liveness for
the orchestrator.

KServe's own readiness is a flag set once at load (REFERENCE.md: it does not notice
a dead replica), so a probe thread here calls every served graph's `ready` (the
ingress asks its Retriever and Ranker in turn) every `interval_s`, each call
bounded by `timeout_s`:

- ready: every model is loaded (not unloaded through model control) and every
  graph's latest probe succeeded. A graph that fails turns readiness false within
  interval + timeout (3 s by default); meanwhile its requests are answered from the
  front's trending fallback (serving/front.py), marked degraded.
- live: no graph has kept failing for longer than `grace_s`, and the probe thread
  itself still turns. Ray Serve restarts a dead replica by itself within that time;
  a graph still failing after it will not come back in this process, and the
  orchestrator restarting the pod is the remedy.

Should the local Ray's raylet or GCS die, the replicas may still answer for a
while (actor calls go from worker to worker), but nothing can restart them, and
Ray ends this process (a driver cannot outlive its raylet) about 12 s later; each
round checks those processes too, and a dead one makes the server unready and
not live at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # serve.yaml is read (serving/config.py) before Ray is imported
    from ray.serve.handle import DeploymentHandle

log = logging.getLogger("recstack.serving")


class HealthConfig(BaseModel):
    """`health:` in serve.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    interval_s: float = Field(default=1.0, gt=0)
    """How often every graph is probed."""
    timeout_s: float = Field(default=2.0, gt=0)
    """How long one probe may take before the graph counts as failing."""
    grace_s: float = Field(default=60.0, gt=0)
    """How long a graph may keep failing before liveness fails (the pod is restarted)."""


@dataclass
class _Graph:
    """A graph's probes: failing since when (None: it answers; deployed graphs start
    so, as serve.run returned once they ran), and why."""

    failing_since: float | None = None
    reason: str = ""


class GraphHealth:
    def __init__(self, graphs: Callable[[], Iterable[tuple[str, DeploymentHandle]]],
                 config: HealthConfig, clock: Callable[[], float] = time.monotonic) -> None:
        """`graphs`: the (application name, ingress handle) of every graph now served."""
        self.graphs, self.config, self.clock = graphs, config, clock
        self._state: dict[str, _Graph] = {}
        self._last_round = clock()
        self._ray_dead: str | None = None
        self._lock = threading.Lock()

    def probe(self) -> None:
        """One round: every served graph's `ready`, each within timeout_s."""
        self._ray_dead = dead_ray_processes()
        served = dict(self.graphs())
        for app, handle in served.items():
            try:
                handle.ready.remote().result(timeout_s=self.config.timeout_s)
                self._note(app, None)
            except Exception as exc:  # a timeout, a dead actor, Ray gone: all failures
                self._note(app, f"{type(exc).__name__}: {exc}"[:300])
        with self._lock:
            for app in set(self._state) - set(served):
                del self._state[app]  # retired by a swap
            self._last_round = self.clock()

    def _note(self, app: str, error: str | None) -> None:
        with self._lock:
            state = self._state.setdefault(app, _Graph())
            if error is None:
                if state.failing_since is not None:
                    log.info("graph %s answers its probe again", app)
                self._state[app] = _Graph()
                return
            if state.failing_since is None:
                log.warning("graph %s failed its probe: %s", app, error)
                state.failing_since = self.clock()
            state.reason = error

    def ready(self) -> str | None:
        """None when every graph answered its latest probe; else why not."""
        with self._lock:
            failing = [f"graph {app}: {s.reason}" for app, s in self._state.items()
                       if s.failing_since is not None]
        if self._ray_dead:
            failing.insert(0, self._ray_dead)
        return "; ".join(failing) or None

    def live(self) -> str | None:
        """None while no graph has failed for longer than grace_s; else why not."""
        if self._ray_dead:
            return self._ray_dead
        now = self.clock()
        with self._lock:
            if now - self._last_round > self.config.grace_s:
                return f"no probe round finished for {now - self._last_round:.0f} s"
            for app, state in self._state.items():
                if state.failing_since is not None and \
                        now - state.failing_since > self.config.grace_s:
                    return (f"graph {app} failing for {now - state.failing_since:.0f} s "
                            f"(over {self.config.grace_s:.0f} s): {state.reason}")
        return None

    def watch(self, stop: threading.Event) -> threading.Thread:
        """A daemon thread probing every interval_s until `stop` is set."""
        def loop() -> None:
            while not stop.wait(self.config.interval_s):
                try:
                    self.probe()
                except Exception:  # the list of graphs itself failed: try next round
                    log.exception("probing the graphs failed")
        thread = threading.Thread(target=loop, name="recstack-health", daemon=True)
        thread.start()
        return thread


def dead_ray_processes() -> str | None:
    """Which of the local Ray's essential processes died, when this process started
    that Ray (`ray.init` without an address); None otherwise. Through Ray's private
    node object: no public API tells, and a dead raylet is the one failure that
    every replica call can miss."""
    try:
        from ray._private import worker

        node = worker._global_node
        dead: list[str] = [] if node is None else [kind for kind, _ in node.dead_processes()]
    except Exception:  # the private API moved: the graph probes still run
        return None
    essential = sorted(set(dead) & {"raylet", "gcs_server"})
    return f"Ray's {' and '.join(essential)} died" if essential else None
