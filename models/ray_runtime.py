"""One Ray instance per process, started on first use: a local one sized explicitly
(a 2-core machine must not be told it has more), or, when `RAY_ADDRESS` is set, the
running cluster it names (a KubeRay cluster, or `ray start` on this machine)."""

from __future__ import annotations

import logging
import os


def max_workers() -> int | None:
    """How many Ray Train workers can start: one per CPU of the local Ray that
    `ensure_ray` starts, or None when RAY_ADDRESS names a cluster (its size is its own)."""
    if os.environ.get("RAY_ADDRESS"):
        return None
    return os.cpu_count() or 1


def ensure_ray(num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if os.environ.get("RAY_ADDRESS"):
        # A cluster's size is its own: Ray refuses num_cpus when joining one. Its
        # workers take the environment of the node that started them, not this
        # process's, so RECSTACK_* settings must be set on the cluster too.
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False,
                 logging_level=logging.ERROR)
        return
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
             log_to_driver=False, logging_level=logging.ERROR)
