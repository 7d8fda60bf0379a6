"""Every `recommender` answer, logged to the events stream as impressions.

One `impression` event per recommended item, through the collector's own path
(`Event` for the contract, `EventStream` for once-per-id appends), so that the
consumer files them with every other event and the online report can join
clicks, carts and purchases that carry the answer's `request_id` back to what
was shown. Each event's id is `{request_id}:{position}`, so a retried write
never doubles an impression; its context holds the position (1-based), the
variant, the model version and the item's sources. The exploration item's
context also holds its `propensity` and the `explore_pool` it was drawn from
(serving/rules.py), what models/evaluation/off_policy.py needs to estimate
another model's CTR on that slot; a pool whose ids would not fit the event's
context limit is left out (the impression stays, unusable for the estimate).

Writes are fire-and-forget from the KServe front's event loop: an answer never
waits for its impressions, and a failing Redis costs lost impressions (counted
in `recstack_impressions_total{result="failed"}`), never a slower or failed
answer. `log` only notes what was shown; the events are built and appended
together, `BATCH_DELAY_S` later, after the answer has gone: building ten
validated events and packing their append took ~0.3 ms of the front's loop per
answer, on the request's path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from serving.events.event import MAX_CONTEXT_CHARS, Event
from serving.events.stream import EventStream
from serving.telemetry import telemetry

log = logging.getLogger("recstack.serving")
WARN_EVERY_S = 30.0  # a failing Redis would otherwise log once per request
BATCH_DELAY_S = 0.02  # how long shown answers wait to be written together


def impression_events(user_id: str, answer: dict[str, Any],
                      at: datetime | None = None) -> list[Event]:
    """The impressions of one answer, in the order shown."""
    when = (at or datetime.now(UTC)).isoformat()
    request_id = str(answer["request_id"])
    return [Event.model_validate({
        "event_id": f"{request_id}:{position}", "user_id": user_id, "item_id": item["item_id"],
        "event_type": "impression", "timestamp": when, "request_id": request_id,
        "context": _context(position, answer, item)})
        for position, item in enumerate(answer.get("items", []), start=1)]


def _context(position: int, answer: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    context = {"position": position, "variant": answer.get("variant"),
               "model_version": answer.get("model_version"),
               "sources": item.get("sources", [])}
    if item.get("propensity") is None:
        return context
    explored = context | {"propensity": item["propensity"],
                          "explore_pool": list(item.get("explore_pool") or [])}
    size = len(json.dumps(explored, separators=(",", ":"), ensure_ascii=False))
    if size > MAX_CONTEXT_CHARS:  # long ids: the impression matters more than its pool
        return context | {"propensity": item["propensity"]}
    return explored


def _shown_item(item: dict[str, Any]) -> dict[str, Any]:
    """What an impression needs of an answer's item, copied."""
    shown = {"item_id": item["item_id"], "sources": list(item.get("sources", []))}
    if item.get("propensity") is not None:  # the exploration item only
        shown["propensity"] = item["propensity"]
        shown["explore_pool"] = list(item.get("explore_pool") or [])
    return shown


@dataclass(frozen=True)
class Shown:
    """What one answer showed, captured when it was given."""

    user_id: str
    answer: dict[str, Any]  # request_id, variant, model_version, items (id, sources,
    # and the exploration item's propensity and pool)
    at: datetime


class ImpressionLog:
    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.counts = {"logged": 0, "failed": 0}
        self._shown: list[Shown] = []
        self._timer: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Task[None]] = set()  # held, so none is collected early
        self._warned_at = -WARN_EVERY_S

    def log(self, user_id: str, answer: dict[str, Any]) -> None:
        """Note the answer's impressions, to be written shortly; returns at once."""
        if not answer.get("items"):
            return
        self._shown.append(Shown(user_id, {
            "request_id": answer["request_id"], "variant": answer.get("variant"),
            "model_version": answer.get("model_version"),
            "items": [_shown_item(i) for i in answer["items"]]}, datetime.now(UTC)))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_DELAY_S, self._write_shown)

    def _write_shown(self) -> None:
        """Append what was shown since the last write, in one append."""
        self._timer = None
        shown, self._shown = self._shown, []
        events = [e for s in shown for e in impression_events(s.user_id, s.answer, s.at)]
        if events:
            task = asyncio.get_running_loop().create_task(self._write(events))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _write(self, events: list[Event]) -> None:
        try:
            await self.stream.append(events)
        except Exception as exc:  # Redis down or slow: the answer has gone already
            self.counts["failed"] += len(events)
            telemetry().impressions(len(events), "failed")
            if time.monotonic() - self._warned_at > WARN_EVERY_S:
                self._warned_at = time.monotonic()
                log.warning("impressions not logged (%s: %s); answers are unaffected",
                            type(exc).__name__, exc)
            return
        self.counts["logged"] += len(events)
        telemetry().impressions(len(events), "logged")

    async def flush(self) -> None:
        """Write what was shown so far and wait for it (tests, shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._write_shown()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

