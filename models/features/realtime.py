"""The real-time view's state (`user_realtime`): what a user just did, one event at a time.

Both sides fold events through `RealtimeState.add`: `models.features.build.user_realtime`
over the whole history (the offline rows training joins), and the stream consumer
(`serving.events.realtime_sink`) onto the user's current online row. Sharing the step is
what keeps training and serving in agreement.

Impressions are not the user's actions: every recommendation response is logged as
impressions, so if they counted, each answer would change the user's state (and
invalidate their cached answers). They are left out of the view entirely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RECENT_ITEMS = 20


@dataclass
class RealtimeState:
    recent_items: list[str] = field(default_factory=list)
    """Distinct items, newest first, at most RECENT_ITEMS."""
    session_id: str | None = None
    session_event_count: int = 0
    last_event_type: str | None = None
    last_event_ts: float | None = None
    """Epoch seconds, `epoch_seconds` of the last event's time."""

    def add(self, item_id: str | None, session_id: str | None, event_type: str,
            ts: float) -> None:
        """The state after one more event (events must come in (timestamp, event_id) order)."""
        # An event without a session starts a session of its own.
        if session_id is None or session_id != self.session_id:
            self.session_event_count = 0
            self.session_id = session_id
        self.session_event_count += 1
        if item_id is not None:
            if item_id in self.recent_items:
                self.recent_items.remove(item_id)
            self.recent_items.insert(0, item_id)
            del self.recent_items[RECENT_ITEMS:]
        self.last_event_type = event_type
        self.last_event_ts = ts


def epoch_seconds(micros: int) -> float:
    """An event time (integer microseconds since the epoch) as the view's float seconds.
    Both sides compute it this way, so equal times give equal floats."""
    return micros / 1e6
