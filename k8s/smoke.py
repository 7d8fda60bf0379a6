#!/usr/bin/env python3
"""The kind smoke test's requests, against a RecStack predictor and collector.

    python3 k8s/smoke.py --serve http://127.0.0.1:18080 --collect http://127.0.0.1:18090 \
        --api-key KEY [--user USER] [--timeout 120]

`k8s/kind.sh smoke` runs it through `kubectl port-forward` to svc/recstack-predictor
and svc/recstack-collector. Standard library only, so it runs on a bare runner with
python3. In order:

1. wait until the predictor (`/v2/health/ready`) and the collector (`/readyz`) answer;
2. pick a user the model knows (`--user`, or the first of users 0 to 4 at id widths 1
   to 7, u0 ... u4, u00 ... u0000004, whose answer is not the cold-start list: the
   synthetic generator numbers its users from zero, zero-padded to a width it chooses);
3. a V1 request, `POST /v1/models/recommender:predict` `{"instances": [{user_id, k}]}`;
4. a V2 request, `POST /v2/models/recommender/infer` with inputs `user_id` (BYTES) and
   `k` (INT32); outputs `item_ids` (BYTES, [1, k]) and `scores` (FP32);
5. a click and a purchase of the answer's first item posted to the collector,
   `POST /v1/events` with `Authorization: Bearer KEY`, carrying the answer's request_id
   (the events `recstack demo` posts in its loop, recstack/cli/demo_loop.py);
6. the same user's recommendation polled until that item is gone from it: the consumer
   has pushed the user's real-time features and invalidated their cached answers, so
   the next answer differs (the item is seen now).

Exit 0 when every step passed, 1 with the reason otherwise. Python 3.9 or newer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

V1_PATH = "/v1/models/recommender:predict"
V2_PATH = "/v2/models/recommender/infer"
EVENTS_PATH = "/v1/events"
SERVE_READY = "/v2/health/ready"
COLLECT_READY = "/readyz"
# Users 0 to 4 of a synthetic world at every id width it may choose (u0, ..., u4, u00,
# ...): some users of a world have no events, so the model knows not every one.
CANDIDATE_USERS = tuple(f"u{n:0{width}d}" for width in range(1, 8) for n in range(5))
K = 5


class SmokeFailure(RuntimeError):
    """A step of the smoke test failed; the message says which and why."""


Response = tuple[int, Any]


class Http:
    """JSON over HTTP to one base URL, with optional headers on every request."""

    def __init__(self, base: str, headers: dict[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Response:
        data = None if body is None else json.dumps(body).encode()
        headers = {"accept": "application/json", **self.headers}
        if data is not None:
            headers["content-type"] = "application/json"
        req = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return response.status, _decoded(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decoded(exc.read())

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Response:
        return self.request("POST", path, body)


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


# -- request bodies ------------------------------------------------------------------------


def v1_body(user: str, k: int = K) -> dict[str, Any]:
    return {"instances": [{"user_id": user, "k": k}]}


def v2_body(user: str, k: int = K) -> dict[str, Any]:
    return {"inputs": [
        {"name": "user_id", "shape": [1], "datatype": "BYTES", "data": [user]},
        {"name": "k", "shape": [1], "datatype": "INT32", "data": [k]}]}


def events_body(user: str, item: str, request_id: str,
                now: datetime | None = None) -> dict[str, Any]:
    """A click and a purchase of `item`, answering the recommendation `request_id`."""
    stamp = (now or datetime.now(timezone.utc)).isoformat()  # noqa: UP017 (3.9+)
    session = f"smoke-{uuid.uuid4().hex[:12]}"
    return {"events": [
        {"event_id": f"smoke-{uuid.uuid4().hex}", "user_id": user, "item_id": item,
         "event_type": event_type, "value": None, "timestamp": stamp,
         "session_id": session, "request_id": request_id}
        for event_type in ("click", "purchase")]}


# -- answers -------------------------------------------------------------------------------


def item_ids(answer: dict[str, Any]) -> list[str]:
    return [str(item["item_id"]) for item in answer.get("items") or []]


def changed(before: dict[str, Any], after: dict[str, Any], item: str) -> bool:
    """The next answer reflects the events: the item acted on is gone from it (so the
    list differs from the one before)."""
    return item not in item_ids(after) and item_ids(after) != item_ids(before)


def v1_answer(status: int, body: Any, what: str = "V1") -> dict[str, Any]:
    if status != 200:
        raise SmokeFailure(f"{what} {V1_PATH} answered {status}: {body}")
    try:
        answer: dict[str, Any] = body["predictions"][0]
    except (KeyError, IndexError, TypeError):
        raise SmokeFailure(f"{what} {V1_PATH}: no predictions[0] in {body}") from None
    if not item_ids(answer):
        raise SmokeFailure(f"{what} {V1_PATH}: no items in {answer}")
    return answer


def check_v2(status: int, body: Any, k: int) -> list[str]:
    """The V2 answer's item ids, once its outputs are the contract's."""
    if status != 200:
        raise SmokeFailure(f"V2 {V2_PATH} answered {status}: {body}")
    try:
        outputs = {o["name"]: o for o in body["outputs"]}
    except (KeyError, TypeError):
        raise SmokeFailure(f"V2 {V2_PATH}: no outputs in {body}") from None
    items, scores = outputs.get("item_ids"), outputs.get("scores")
    if items is None or scores is None:
        raise SmokeFailure(f"V2 {V2_PATH}: outputs {sorted(outputs)}, expected item_ids "
                           "and scores")
    if items.get("datatype") != "BYTES" or scores.get("datatype") != "FP32":
        raise SmokeFailure(f"V2 {V2_PATH}: datatypes item_ids {items.get('datatype')}, "
                           f"scores {scores.get('datatype')}; expected BYTES and FP32")
    shape = items.get("shape") or []
    if len(shape) != 2 or shape[0] != 1 or not 1 <= shape[1] <= k or not items.get("data"):
        raise SmokeFailure(f"V2 {V2_PATH}: item_ids shape {shape} with data "
                           f"{items.get('data')}; expected [1, n], 1 <= n <= {k}")
    return [str(i) for i in items["data"]]


# -- steps ---------------------------------------------------------------------------------


def wait_ready(checks: dict[str, Callable[[], Response]], timeout: float,
               interval: float = 2.0, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
    began = clock()
    waiting = dict(checks)
    last: dict[str, str] = {}
    while waiting:
        for name, check in list(waiting.items()):
            try:
                status, body = check()
            except OSError as exc:  # refused, reset, timed out: not up yet
                last[name] = str(exc)
                continue
            if status == 200:
                del waiting[name]
                say(f"{name} ready ({clock() - began:.0f} s)")
            else:
                last[name] = f"{status} {body}"
        if not waiting:
            return
        if clock() - began > timeout:
            raise SmokeFailure("not ready in {:.0f} s: {}".format(
                timeout, "; ".join(f"{n} ({last.get(n, 'no answer')})" for n in waiting)))
        sleep(interval)


def pick_user(serve: Http, user: str | None) -> tuple[str, dict[str, Any]]:
    """`user`, or the first candidate the model knows, with its V1 answer."""
    for candidate in [user] if user else CANDIDATE_USERS:
        answer = v1_answer(*serve.post(V1_PATH, v1_body(candidate)))
        if answer.get("fallback") is None:
            return candidate, answer
        if user:
            raise SmokeFailure(f"user {user} got the cold-start list "
                               f"({answer.get('fallback')}): the model does not know them")
    raise SmokeFailure(f"none of {CANDIDATE_USERS[0]} ... {CANDIDATE_USERS[-1]} is known to "
                       "the model; pass --user with a user id from the training data")


def run(serve: Http, collect: Http, user: str | None = None, k: int = K,
        timeout: float = 120.0, ready_timeout: float = 300.0, interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Every step; a summary of what was seen. SmokeFailure says which step failed."""
    wait_ready({"predictor": lambda: serve.get(SERVE_READY),
                "collector": lambda: collect.get(COLLECT_READY)}, ready_timeout,
               clock=clock, sleep=sleep)
    user, _ = pick_user(serve, user)
    before = v1_answer(*serve.post(V1_PATH, v1_body(user, k)))
    items = item_ids(before)
    say(f"V1 {V1_PATH}: {user} gets {len(items)} items {items} (model "
        f"{before.get('model_version')}, variant {before.get('variant')}, request "
        f"{before.get('request_id')})")
    v2_items = check_v2(*serve.post(V2_PATH, v2_body(user, k)), k=k)
    say(f"V2 {V2_PATH}: {user} gets item_ids {v2_items}")

    item, request_id = items[0], str(before.get("request_id") or "")
    if not request_id:
        raise SmokeFailure(f"V1 {V1_PATH}: the answer carries no request_id: {before}")
    status, body = collect.post(EVENTS_PATH, events_body(user, item, request_id))
    if status != 202:
        raise SmokeFailure(f"collector {EVENTS_PATH} answered {status}: {body}")
    if not isinstance(body, dict) or body.get("rejected") or body.get("accepted") != 2:
        raise SmokeFailure(f"collector {EVENTS_PATH}: expected 2 events accepted, got {body}")
    posted = clock()
    say(f"collector {EVENTS_PATH}: a click and a purchase of {item} by {user} accepted (202)")

    polls = 0
    while True:
        after = v1_answer(*serve.post(V1_PATH, v1_body(user, k)), what="V1 (after)")
        polls += 1
        if changed(before, after, item):
            break
        if clock() - posted > timeout:
            raise SmokeFailure(f"{item} still recommended to {user} {timeout:.0f} s after "
                               f"the collector accepted the events ({polls} requests); is "
                               "the consumer running?")
        sleep(interval)
    seconds = clock() - posted
    say(f"next recommendation for {user} changed after {polls} request(s), {seconds:.1f} s: "
        f"{item_ids(after)} ({item} is gone)")
    return {"user": user, "item": item, "before": items, "after": item_ids(after),
            "v2": v2_items, "polls": polls, "seconds": round(seconds, 3)}


def say(line: str) -> None:
    print(f"smoke: {line}", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", required=True,
                        help="the predictor's base URL, e.g. http://127.0.0.1:18080")
    parser.add_argument("--collect", required=True,
                        help="the collector's base URL, e.g. http://127.0.0.1:18090")
    parser.add_argument("--api-key", default="", help="the collector's API key")
    parser.add_argument("--serve-api-key", default="",
                        help="the predictor's API key, when it has any")
    parser.add_argument("--user", default=None, help="a user the model knows "
                        "(default: the first of u0 ... u4, u00 ... that it knows)")
    parser.add_argument("--k", type=int, default=K, help="items per answer")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the "
                        "answer to change after the events were accepted")
    parser.add_argument("--ready-timeout", type=float, default=300.0,
                        help="seconds for both services to answer their readiness routes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    serve = Http(args.serve, bearer(args.serve_api_key))
    collect = Http(args.collect, bearer(args.api_key))
    try:
        summary = run(serve, collect, args.user, args.k, args.timeout, args.ready_timeout)
    except (SmokeFailure, OSError) as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    say("passed " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
