"""ImpressionLog's batching, with a recording stand-in for the stream (the real
append is covered against Redis by tests/serving/test_serve.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.impressions import BATCH_DELAY_S, ImpressionLog


class Recording:
    def __init__(self) -> None:
        self.appends: list[list[Any]] = []

    async def append(self, events: list[Any]) -> None:
        self.appends.append(list(events))


def _answer(request_id: str, items: list[str]) -> dict[str, Any]:
    return {"request_id": request_id, "variant": "control", "model_version": "v1",
            "items": [{"item_id": i, "score": 1.0, "sources": ["ease"], "reasons": []}
                      for i in items]}


def test_answers_shown_together_are_appended_together_after_the_delay() -> None:
    async def scenario() -> Recording:
        stream = Recording()
        log = ImpressionLog(stream)  # type: ignore[arg-type]
        log.log("u1", _answer("r1", ["a", "b"]))
        log.log("u2", _answer("r2", ["c"]))
        log.log("u3", _answer("r3", []))  # nothing shown, nothing logged
        assert stream.appends == []  # not on the answer's path
        await asyncio.sleep(BATCH_DELAY_S * 5)
        assert log.counts["logged"] == 3
        log.log("u1", _answer("r4", ["d"]))
        await log.flush()  # at once, not after the delay
        return stream

    stream = asyncio.run(scenario())
    assert [[e.event_id for e in batch] for batch in stream.appends] == [
        ["r1:1", "r1:2", "r2:1"], ["r4:1"]]
    first = stream.appends[0][0]
    assert (first.user_id, first.item_id, first.event_type) == ("u1", "a", "impression")


def test_what_was_shown_is_captured_when_logged() -> None:
    async def scenario() -> Recording:
        stream = Recording()
        log = ImpressionLog(stream)  # type: ignore[arg-type]
        answer = _answer("r1", ["a"])
        log.log("u1", answer)
        answer["items"][0]["item_id"] = "changed later"
        await log.flush()
        return stream

    assert stream_ids(asyncio.run(scenario())) == ["a"]


def stream_ids(stream: Recording) -> list[str]:
    return [e.item_id for batch in stream.appends for e in batch]
