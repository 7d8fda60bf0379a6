"""ImpressionLog's batching, with a recording stand-in for the stream (the real
append is covered against Redis by tests/serving/test_serve.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pandas as pd

from models.evaluation.off_policy import exploration_log
from serving.events.event import MAX_CONTEXT_CHARS, Event
from serving.events.impressions import BATCH_DELAY_S, ImpressionLog, impression_events
from serving.rules import Candidates, RuleConfig, apply_rules


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


def _explored(pool: list[str]) -> dict[str, Any]:
    answer = _answer("r1", ["a", "b", "c"])
    answer["items"][1] |= {"sources": ["ease", "exploration"], "propensity": 1 / len(pool),
                           "explore_pool": pool}
    return answer


def test_the_exploration_item_logs_its_propensity_and_pool() -> None:
    async def scenario() -> Recording:
        stream = Recording()
        log = ImpressionLog(stream)  # type: ignore[arg-type]
        answer = _explored(["b", "x", "y", "z"])
        log.log("u1", answer)
        answer["items"][1]["explore_pool"].append("changed later")
        await log.flush()
        return stream

    events = asyncio.run(scenario()).appends[0]
    contexts = [json.loads(e.context) for e in events]
    assert (contexts[1]["propensity"], contexts[1]["explore_pool"]) == (0.25,
                                                                       ["b", "x", "y", "z"])
    assert contexts[1]["position"] == 2
    # The other items' context is as before.
    assert all(set(c) == {"position", "variant", "model_version", "sources"}
               for c in (contexts[0], contexts[2]))


def test_a_pool_too_long_for_the_context_is_left_out_not_the_impression() -> None:
    pool = [f"item-{n:0200d}" for n in range(20)]  # 20 ids of 205 characters
    events = impression_events("u1", _explored(pool))
    context = json.loads(events[1].context or "{}")
    assert len(events) == 3 and "explore_pool" not in context
    assert context["propensity"] == 1 / 20
    assert len(events[1].context or "") <= MAX_CONTEXT_CHARS


def test_what_serving_logs_is_what_the_off_policy_log_reads() -> None:
    n = 30
    candidates = Candidates(item_ids=np.array([f"i{k}" for k in range(n)], dtype=object),
                            scores=np.linspace(1.0, 0.0, n), sources=[["ease"]] * n,
                            categories=np.array(["a"] * n, dtype=object),
                            available=np.ones(n, dtype=bool))
    picks = apply_rules(candidates, 5, [], None, True,
                        RuleConfig(diversity="none", exploration_rate=1.0), "r1")
    answer = {"request_id": "r1", "variant": "control", "model_version": "v1",
              "items": [p.as_dict() for p in picks]}
    shown = impression_events("u1", answer)
    explored = picks[4]
    click = Event.model_validate({"user_id": "u1", "item_id": explored.item_id,
                                  "event_type": "click", "request_id": "r1"})
    log = exploration_log(pd.DataFrame([e.record() for e in [*shown, click]]))
    assert log[["request_id", "item_id", "position", "clicked"]].values.tolist() == [
        ["r1", explored.item_id, 5, True]]
    assert log["propensity"].iloc[0] == 1 / 20
    assert log["pool"].iloc[0] == [f"i{k}" for k in range(5, 25)]  # after the top 5
