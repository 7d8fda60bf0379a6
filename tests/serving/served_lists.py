"""A version's answers on fixed inputs: every known user alone, some with their
real-time recent items, some with fresh items training never saw them with, new
users from fresh items, and the batch lists of every known user. Recorded once, from
the version in tests/fixtures/small_version (trained on the `small_world` fixture's
world with tests/cli/test_train.py's SMALL config, commit 739373e) and its world's
features in the test Redis, into that directory's served_lists.json;
tests/serving/test_served_lists.py compares today's code against it: refactors of
scoring must not change a version's answers."""

from __future__ import annotations

from typing import Any

import pandas as pd

from models.bundle import Bundle
from models.ranker.features import store_join
from models.served import ServedModel
from serving.features import OnlineFeatureJoin


def served_lists(bundle: Bundle, store: Any) -> dict[str, Any]:
    join = OnlineFeatureJoin(store)
    online = ServedModel(bundle)
    events = bundle.events
    at = events["timestamp"].max() + pd.Timedelta(seconds=1)
    users = list(events["user_id"].unique())
    catalog = list(pd.unique(bundle.item_ids))
    answers: list[dict[str, Any]] = []

    def answer(case: str, user: str, fresh: list[str]) -> None:
        got = online.score(user, fresh, join.user(user), join, at, 10)
        answers.append({"case": case, "user": user, "fresh": fresh,
                        "items": [str(i) for i in bundle.item_ids[got.items]],
                        "scores": [float(s) for s in got.scores],
                        "sources": [list(s) for s in got.sources]})

    for user in users:
        answer("known", user, [])
    for user in users[:30]:
        answer("recent", user, [str(i) for i in join.user(user)["user_realtime__recent_items"]
                                or []])
    for n, user in enumerate(users[:10]):
        theirs = set(events.loc[events["user_id"] == user, "item_id"])
        answer("fresh", user, [i for i in catalog[n * 7:] if i not in theirs][:2])
    for n in range(10):
        answer("new", f"brand-new-{n}", [str(i) for i in catalog[n * 11:n * 11 + 1 + n % 3]])
    table = ServedModel(bundle, search=False).recommend(events, users, at, store_join(store),
                                                        30)
    batch = [[str(u), str(i), int(r), float(s)] for u, i, r, s in zip(
        table["user_id"], table["item_id"], table["rank"], table["score"], strict=True)]
    return {"at": str(at), "online": answers, "batch": batch}
