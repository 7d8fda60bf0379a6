"""Everything online: Ray Serve deployments, the KServe front, collector, cache, telemetry.

`serving` may import `models` and `recstack`; never the other way round.
"""
