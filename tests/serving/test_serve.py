"""`recstack serve` as a user starts it (tests/serving/live_server.py): answers,
cache, impressions, variants, traces, fuzzed V1 bodies, hot swap and a Redis outage.

The tests run in file order. The swap test moves the stage under load
and asserts that no answer was degraded, so it runs before the Redis outage test:
for a couple of seconds after an outage, pooled connections that died with it can
still fail a read (answered degraded, by design).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.cache import invalidate, key_prefix
from serving.events.stream import stream_key
from stores.feature_store import RedisAddress
from stores.registry import Manifest
from tests.conftest import TEST_REDIS
from tests.serving.live_server import FUZZ_EXAMPLES, PROJECT, Server, _call, _OtlpReceiver

pytestmark = pytest.mark.integration


def _busiest(data: Path, n: int = 1) -> list[str]:
    events = pd.read_parquet(data / "events.parquet")
    return [str(u) for u in events["user_id"].value_counts().index[:n]]


def test_recommender_v1_v2_metadata_and_bad_input(server: Server) -> None:
    (user,) = _busiest(server.data)
    status, body = server.recommend({"user_id": user, "k": 4},
                                    {"user_id": "someone-new", "k": 2})
    assert status == 200
    known, new = body["predictions"]
    assert len(known["items"]) == 4 and known["model_version"] == server.version
    assert known["variant"] in {"control", "diverse"} and known["degraded"] is False
    assert all(i["sources"] and i["reasons"] for i in known["items"])
    assert len(new["items"]) == 2 and new["fallback"] == "trending"
    assert all(i["sources"] == ["trending"] for i in new["items"])

    status, body = _call(server.port, "/v2/models/recommender/infer", {"inputs": [
        {"name": "user_id", "shape": [1], "datatype": "BYTES", "data": [user]},
        {"name": "k", "shape": [1], "datatype": "INT32", "data": [4]}]})
    assert status == 200
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["item_ids"]["datatype"] == "BYTES" and outputs["item_ids"]["shape"] == [1, 4]
    assert outputs["item_ids"]["data"] == [i["item_id"] for i in known["items"]]
    assert outputs["scores"]["datatype"] == "FP32"

    assert _call(server.port, "/v2/models/recommender")[1]["inputs"][0]["name"] == "user_id"
    status, body = server.recommend({"user_id": user, "k": 0})
    assert status == 400 and body["error"].startswith("instances[0].k:")
    status, body = _call(server.port, "/v1/models/recommender:predict", raw=b"{not json")
    assert status == 400 and "expected a string key" in body["error"]
    status, body = _call(server.port, "/v1/models/recommender:predict", raw=b"{not json",
                         headers={})
    assert status == 400 and "not valid JSON" in body["error"]
    # A client's mistake is one warning line in the server log, not an error traceback.
    log = server.log.read_text(errors="replace")
    assert "bad request (400): instances[0].k:" in log and "Traceback" not in log


def test_similar_items_and_ranker(server: Server) -> None:
    (user,) = _busiest(server.data)
    item = str(pd.read_parquet(server.data / "events.parquet")["item_id"].value_counts()
               .index[0])
    status, body = _call(server.port, "/v1/models/similar-items:predict",
                         {"instances": [{"item_id": item, "k": 5}]})
    assert status == 200
    (similar,) = body["predictions"]
    assert len(similar["items"]) == 5 and item not in {i["item_id"] for i in similar["items"]}
    assert all(set(i["sources"]) <= {"embedding", "collaborative", "content"}
               and i["sources"] for i in similar["items"])

    candidates = [i["item_id"] for i in similar["items"]] + ["not-an-item"]
    status, body = _call(server.port, "/v1/models/ranker:predict",
                         {"instances": [{"user_id": user, "candidates": candidates}]})
    assert status == 200
    (ranked,) = body["predictions"]
    got = [i["item_id"] for i in ranked["items"]]
    assert sorted(got) == sorted(candidates) and got[-1] == "not-an-item"
    scores = [i["score"] for i in ranked["items"][:-1]]
    assert scores == sorted(scores, reverse=True)
    status, body = _call(server.port, "/v1/models/ranker:predict",
                         {"instances": [{"user_id": user}]})
    assert status == 400 and "instances[0].candidates: Field required" in body["error"]
    assert _call(server.port, "/v2/models/similar-items")[1]["inputs"][0]["name"] == "item_id"


def test_cache_hits_invalidation_and_hit_rate_metric(server: Server) -> None:
    user = _busiest(server.data, 3)[2]
    request = {"user_id": user, "k": 6, "exclude_ids": ["x"]}
    first = server.recommend(request)[1]["predictions"][0]
    second = server.recommend(request)[1]["predictions"][0]
    assert first["cached"] is False and second["cached"] is True
    assert second["items"] == first["items"] and second["request_id"] != first["request_id"]
    # The user's new events arrive: the consumer invalidates, the next answer is fresh.
    address = RedisAddress.parse(TEST_REDIS)
    invalidate(address.client(), key_prefix(PROJECT), user)
    assert server.recommend(request)[1]["predictions"][0]["cached"] is False
    metrics = _call(server.port, "/metrics")[1]
    hits = re.search(r'^recstack_cache_lookups_total\{[^}]*result="hit"[^}]*\} (\S+)$',
                     metrics, re.MULTILINE)
    assert hits and float(hits.group(1)) >= 1
    rate = re.search(r"^recstack_cache_hit_rate(\{[^}]*\})? (\S+)$", metrics, re.MULTILINE)
    assert rate and 0.0 < float(rate.group(2)) < 1.0
    assert "recstack_stage_duration_seconds_bucket" in metrics
    assert user not in metrics  # /metrics names models and versions, never a user


def test_every_answer_is_logged_as_impressions(server: Server) -> None:
    user = _busiest(server.data, 4)[3]
    request = {"user_id": user, "k": 4, "exclude_ids": ["imp"]}
    answers = [server.recommend(request)[1]["predictions"][0] for _ in range(2)]
    assert [a["cached"] for a in answers] == [False, True]  # a cache hit is shown too
    client = RedisAddress.parse(TEST_REDIS).client()
    deadline = time.monotonic() + 10
    for answer in answers:
        while True:  # written after the answer, without waiting
            logged = [json.loads(fields[b"event"])
                      for _, fields in client.xrange(stream_key(PROJECT))
                      if json.loads(fields[b"event"])["request_id"] == answer["request_id"]]
            if len(logged) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [e["item_id"] for e in logged] == [i["item_id"] for i in answer["items"]]
        assert {e["event_type"] for e in logged} == {"impression"} and \
            {e["user_id"] for e in logged} == {user}
        contexts = [json.loads(e["context"]) for e in logged]
        assert [c["position"] for c in contexts] == [1, 2, 3, 4]
        assert {(c["variant"], c["model_version"]) for c in contexts} == \
            {(answer["variant"], answer["model_version"])}
        assert [e["event_id"] for e in logged] == \
            [f"{answer['request_id']}:{n}" for n in range(1, 5)]


def test_variants_are_sticky_and_echoed(server: Server) -> None:
    users = [f"visitor-{n}" for n in range(24)]
    first = server.recommend(*({"user_id": u, "k": 3} for u in users))[1]["predictions"]
    again = server.recommend(*({"user_id": u, "k": 3} for u in users))[1]["predictions"]
    assert [a["variant"] for a in first] == [a["variant"] for a in again]
    assert {a["variant"] for a in first} == {"control", "diverse"}


def test_every_stage_has_a_span_under_the_callers_trace(server: Server) -> None:
    (user,) = _busiest(server.data)
    trace_id = os.urandom(16)
    parent = f"00-{trace_id.hex()}-{os.urandom(8).hex()}-01"
    status, _ = _call(server.port, "/v1/models/recommender:predict",
                      {"instances": [{"user_id": user, "k": 3, "exclude_ids": ["trace"]}]},
                      headers={"content-type": "application/json", "traceparent": parent})
    assert status == 200
    wanted = {"features.user", "retrieve", "features.items", "rank", "rules"}
    deadline = time.monotonic() + 10
    while True:
        mine = [s for s in list(_OtlpReceiver.spans) if s.trace_id == trace_id]
        roots = [s for s in mine if s.name == "recstack.recommend"]
        children = [s for s in mine if roots and s.parent_span_id == roots[0].span_id]
        if wanted <= {s.name for s in children} or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(roots) == 1, sorted(s.name for s in mine)
    assert roots[0].parent_span_id == bytes.fromhex(parent.split("-")[2])
    assert wanted <= {s.name for s in children}, sorted(s.name for s in mine)
    root = roots[0]
    for child in children:  # each stage lies inside the request
        assert root.start_time_unix_nano <= child.start_time_unix_nano
        assert child.end_time_unix_nano <= root.end_time_unix_nano


_text = st.text(max_size=8) | st.sampled_from(["\ud800", "a\udfff", "x\ny", ""])
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _text,
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_instance = st.fixed_dictionaries({}, optional={
    "user_id": _json | st.text(max_size=300), "k": _json, "exclude_ids": _json,
    "filters": st.fixed_dictionaries({}, optional={"category": _json, "available": _json})
    | _json, "context": _json, "session_items": _json, "item_id": _json,
    "candidates": _json})


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(model=st.sampled_from(["recommender", "similar-items", "ranker"]),
       body=st.one_of(_json, st.fixed_dictionaries({"instances": st.lists(_instance,
                                                                           max_size=3)})))
def test_fuzzed_requests_never_get_a_5xx(server: Server, model: str, body: Any) -> None:
    # NaN and infinities as Python writes them (not JSON); lone surrogates as \\ud800
    raw = json.dumps(body).encode()
    status, answer = _call(server.port, f"/v1/models/{model}:predict", raw=raw)
    assert status in (200, 400), (status, answer)
    if status == 400:
        assert answer["error"]


def test_a_promotion_is_swapped_in_under_load_without_failed_requests(server: Server) -> None:
    users = [*_busiest(server.data, 20), "newcomer"]
    # start, end, status, version, degraded
    results: list[tuple[float, float, int, str, bool]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(n: int) -> None:
        sent = 0
        while not stop.is_set():
            sent += 1
            began = time.monotonic()
            try:
                status, body = server.recommend({"user_id": users[(n + sent) % len(users)],
                                                 "k": 5, "exclude_ids": [f"{n}-{sent}"]})
                answer = body["predictions"][0] if status == 200 else {}
            except Exception as exc:  # any failure is a failed request
                status, answer = 599, {"model_version": repr(exc)}
            with lock:
                results.append((began, time.monotonic(), status,
                                answer.get("model_version", ""), bool(answer.get("degraded"))))

    workers = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2)
        source = Path(server.registry.fetch(server.version))
        old = Manifest.model_validate_json((source / "manifest.json").read_text())
        new = server.registry.publish(old.model_copy(update={"version": f"{old.version}-b"}),
                                      source)
        server.registry.promote(new, "dev")
        deadline = time.monotonic() + 240
        while not any(r[3] == new for r in results[-20:]):
            assert time.monotonic() < deadline, ("the new version never took traffic",
                                                 server.log_tail())
            time.sleep(0.5)
        time.sleep(3)  # the old graph is drained and deleted meanwhile
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failed = [r for r in results if r[2] != 200]
    assert not failed, (failed[:5], server.log_problems())
    # No answer came from the front's last resort (a graph call that failed, e.g. one
    # retired under a request). A degraded answer from the graph itself means a store
    # read timed out on this starved box: an answer, not a failure, and not the swap's.
    log = server.log.read_text(errors="replace")
    assert "answering with trending" not in log, server.log_problems()
    degraded = [r for r in results if r[4]]
    assert len(degraded) <= len(results) // 4, (len(degraded), len(results))
    assert len(results) > 50
    first_new = min(end for _, end, _, version, _ in results if version == new)
    assert {r[3] for r in results if r[1] < first_new} == {server.version}
    after = {r[3] for r in results if r[0] > first_new}  # sent once the switch was seen
    assert after == {new}, (sorted(results, key=lambda r: r[0])[-30:], server.log_tail())


def test_redis_down_gives_degraded_answers_never_5xx(server: Server) -> None:
    (user,) = _busiest(server.data)
    server.proxy.stop()
    try:
        status, body = server.recommend({"user_id": user, "k": 5, "filters": {
            "available": False}}, {"user_id": "another-new-one", "k": 3})
        assert status == 200, body
        known, new = body["predictions"]
        assert known["degraded"] is True and len(known["items"]) == 5
        assert new["degraded"] is True and new["fallback"] == "trending"
        status, body = _call(server.port, "/v1/models/similar-items:predict",
                             {"instances": [{"item_id": known["items"][0]["item_id"]}]})
        assert status == 200
    finally:
        server.proxy.start()
    # Each feature reader rests 2 s after a failure, then tries Redis again.
    deadline, n = time.monotonic() + 15, 0
    while True:
        n += 1  # a new exclusion each time: never a cached answer
        answer = server.recommend({"user_id": user, "k": 5, "exclude_ids": [f"r{n}"]})[1]
        if not answer["predictions"][0]["degraded"]:
            break
        assert time.monotonic() < deadline, "still degraded 15 s after Redis came back"
        time.sleep(0.5)
    time.sleep(2.5)  # every reader (ingress, Ranker) past its rest
    answer = server.recommend({"user_id": "someone-else", "k": 5, "exclude_ids": ["z"]})[1]
    assert answer["predictions"][0]["degraded"] is False
