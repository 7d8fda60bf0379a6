"""What `recstack train` and the demo print reads whole in an 80-column terminal."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from recstack.cli.demo import shown_recommendations
from recstack.cli.train import SHOWN, metrics_table

MODELS = ("two_stage", "two_tower", "ease", "item_knn", "popularity", "content", "als")


def test_the_training_summary_fits_80_columns_with_whole_headers() -> None:
    metrics = {model: {metric: 0.1234 / (n + 1) for metric in SHOWN}
               for n, model in enumerate(MODELS)}
    out = io.StringIO()
    Console(file=out, width=80).print(
        metrics_table(metrics, "per-user temporal split: each user's last 20% of items held out"))
    text = out.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    header = " ".join(text.split("┡")[0].replace("┃", " ").split())
    for word in ("model", "ndcg", "recall", "precision", "map", "coverage", "long-tail",
                 "@10", "@20"):
        assert word in header, (word, header)
    assert "0.1234" in text and "0.0176" in text  # 0.1234 / 7: four decimals, whole
    assert "each user's last 20% of items held out" in " ".join(text.split())


def test_demo_recommendations_say_which_list_and_round_scores() -> None:
    recs = pd.DataFrame({"user_id": ["u1", "u1", "someone-new"], "item_id": ["a", "b", "c"],
                         "rank": [1, 2, 1], "score": [1.9312345678901234, -0.25, 431.5]})
    lines = shown_recommendations(recs, known={"u1"}).splitlines()
    assert lines[0].split() == ["user_id", "item_id", "rank", "score", "list"]
    assert lines[1].split() == ["u1", "a", "1", "1.931", "model"]
    assert lines[2].split() == ["u1", "b", "2", "-0.250", "model"]
    assert lines[3].split() == ["someone-new", "c", "1", "431.500", "trending", "(cold",
                                "start)"]
