"""The event path: the collector takes events over HTTP (`event`, `collector`)
into a Redis stream (`stream`, `stream_entries`); the consumer (`consumer`)
reads the stream into the event log and the online real-time features
(`realtime_sink`); `impressions` is how the request path writes what it showed.

Beside the request path, never on top of it: nothing here imports the front,
the graph or the recommender (a lint-imports contract).
"""
