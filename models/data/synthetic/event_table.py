"""The simulated events as the Arrow events table: sorted by timestamp then event_id,
built slice by slice so that tens of millions of events never exist as Python strings.

Event ids number the events in the order the simulation made them (user by user,
session by session), `e` and nine digits; session ids are `USER-sNUMBER`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.schemas import EVENTS_SCHEMA, TIMESTAMP
from models.data.synthetic.funnel import KINDS, PAGES, EventColumns
from models.data.synthetic.sessions import query_words
from models.data.synthetic.vocabulary import DEVICES
from models.data.synthetic.world import SECONDS_PER_DAY, World

ROWS_PER_TABLE = 1 << 20


def _masked(index: np.ndarray) -> pa.Array:
    return pa.array(index, mask=index < 0)


def timestamps_us(world: World, seconds: np.ndarray) -> np.ndarray:
    """Event times as the table stores them: microseconds since the epoch, kept inside
    the period and floored to the millisecond."""
    period = world.days * SECONDS_PER_DAY
    t_ms = np.floor(np.minimum(seconds, period - 1e-3) * 1000).astype(np.int64)
    return world.start.value // 1000 + t_ms * 1000


def event_tables(world: World, events: EventColumns, rows: int = ROWS_PER_TABLE
                 ) -> Iterator[pa.Table]:
    """The events table in slices of `rows`, in the order they are written."""
    timestamp = timestamps_us(world, events.t)
    order = np.lexsort((np.arange(len(events)), timestamp))
    user_ids = pa.array(world.user_ids, pa.string())
    item_ids = pa.array(world.item_ids, pa.string())
    kinds = pa.array(KINDS, pa.string())
    queries = pa.array(query_words(world), pa.string())
    contexts = pa.array([json.dumps({"device": d, "page": p}, sort_keys=True)
                         for d in DEVICES for p in PAGES], pa.string())
    for lo in range(0, len(order), rows):
        at = order[lo:lo + rows]
        user = user_ids.take(pa.array(events.user[at]))
        number = pc.utf8_lpad(pc.cast(pa.array(at), pa.string()), 9, "0")
        columns = {
            "event_id": pc.binary_join_element_wise("e", number, ""),
            "user_id": user,
            "item_id": item_ids.take(_masked(events.item[at])),
            "event_type": kinds.take(pa.array(events.kind[at])),
            "value": pa.array(events.value[at], pa.float64(), from_pandas=True),
            "timestamp": pa.array(timestamp[at], TIMESTAMP),
            "session_id": pc.binary_join_element_wise(
                user, pc.cast(pa.array(events.session[at]), pa.string()), "-s"),
            "query": queries.take(_masked(events.query[at])),
            "request_id": pa.nulls(len(at), pa.string()),
            "context": contexts.take(pa.array(
                world.user_device[events.user[at]] * len(PAGES) + events.page[at])),
        }
        yield pa.table(columns, schema=EVENTS_SCHEMA)
