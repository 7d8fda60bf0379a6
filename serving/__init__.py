"""Everything online: the request path (the KServe front, the Ray Serve graph,
rules, cache, telemetry) here, and the event path in `serving.events`.

`serving` may import `models`, `stores` and `contracts`; never the other way round.
"""
