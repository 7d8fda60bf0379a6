"""One Ray instance per process, started on first use: a local one sized explicitly
(a 2-core machine must not be told it has more), or, given an `address`, the running
cluster it names (a KubeRay cluster, or `ray start` on this machine). The address is
the entry point's to read (RAY_ADDRESS, in recstack/cli/checks.py) and pass down."""

from __future__ import annotations

import logging
import os


def max_workers(address: str | None) -> int | None:
    """How many Ray Train workers can start: one per CPU of the local Ray that
    `ensure_ray` starts, or None when `address` names a cluster (its size is its own)."""
    if address:
        return None
    return os.cpu_count() or 1


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address`, or with None start a local Ray of `num_cpus`
    (default: this machine's), unless this process has one already."""
    import ray

    if ray.is_initialized():
        return
    # Configures Ray, which reads it only from the environment: repeated log lines
    # are shown, not folded into "[repeated Nx across cluster]".
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        # A cluster's size is its own: Ray refuses num_cpus when joining one. Its
        # workers take the environment of the node that started them, not this
        # process's, so RECSTACK_* settings must be set on the cluster too.
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        return
    # "local": a new instance, whatever RAY_ADDRESS or a `ray start` here says (Ray
    # would join those, and refuse num_cpus).
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
             include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
