"""`recstack train` then `recstack recommend`, as a new user runs them, on real models,
a real Feast repo and a real registry."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from contracts.settings import Settings
from models.bundle import load_bundle
from models.ranker.features import store_join
from models.served import ServedModel
from recstack.cli import app
from stores.feature_store import open_store
from stores.registry import Registry

pytestmark = pytest.mark.integration
SMALL = {"per_source": {"two_tower": 40, "ease": 30, "item_knn": 20, "popularity": 10,
                       "content": 20},
         "two_tower": {"epochs": 2, "batch_size": 128}, "ranker_rounds": 20, "serve_top": 30}


def test_train_then_recommend(small_world: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200", "RECSTACK_ONLINE_STORE": "sqlite"}
    config = tmp_path / "small.yaml"
    config.write_text(json.dumps(SMALL))
    registry = tmp_path / "registry"
    trained = runner.invoke(app, ["train", "--data", str(small_world), "--registry",
                                  str(registry), "--config", str(config), "--promote", "dev"],
                            env=env)
    assert trained.exit_code == 0, trained.output
    assert "two_stage" in trained.output and "ease" in trained.output
    reg = Registry(registry)
    manifest = reg.resolve(stage="dev")
    assert manifest.feature_service == "ranker"
    assert 0 < manifest.metrics["test"]["ndcg@10"] <= 1
    assert {"popularity", "ease", "item_knn", "als"} <= set(manifest.metrics["baselines"])
    assert manifest.data_snapshot["events"] > 0 and manifest.params["serve_top"] == 30
    # Generated data: the served lists against the world's true next-choice probabilities.
    truth = {name: row["gt_ndcg@10"] for name, row in manifest.metrics["ground_truth"].items()}
    assert truth["ground_truth"] > 0.999
    assert truth["ground_truth"] > truth["two_stage"] > 1.2 * truth["popularity"], truth

    # The version carries its serving bundle; loaded back, the generators answer for a
    # history and the two-tower knows every user.
    bundle = load_bundle(Path(reg.fetch(manifest.version)))
    assert set(bundle.generators) == {"two_tower", "ease", "item_knn", "popularity",
                                      "content"}
    assert bundle.blend.head == int(10 - manifest.metrics["stages"]["blend_unique_slots"])
    history = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 1])), shape=(1, len(bundle.item_ids)))
    for name in ("ease", "item_knn", "content"):
        ids, _ = bundle.generators[name].recommend_history(  # type: ignore[attr-defined]
            history, 5, seen=history)
        assert (ids >= 0).all() and not {0, 1} & set(ids[0]), name
    assert len(bundle.user_ids) == manifest.data_snapshot["users"]
    # Scoring every known user on demand, with features as of the end of the data, gives
    # back exactly the lists training stored: one model, batch or on demand.
    store = open_store(small_world, Settings.from_env(env))
    events = pd.read_parquet(small_world / "events.parquet")
    at = events["timestamp"].max() + pd.Timedelta(seconds=1)
    fresh = ServedModel(bundle, search=False).recommend(
        events, list(bundle.user_ids), at, store_join(store), 30)
    stored = pd.read_parquet(Path(reg.fetch(manifest.version)) / "recommendations.parquet")
    key = ["user_id", "rank"]
    # The same lists; the scores to float32 rounding (training scores dense blocks, the
    # served model one user at a time: the same arithmetic in another order).
    pd.testing.assert_frame_equal(fresh.sort_values(key).reset_index(drop=True),
                                  stored.sort_values(key).reset_index(drop=True),
                                  check_dtype=False, atol=1e-5)

    users = tmp_path / "users.txt"
    data = pd.read_parquet(small_world / "events.parquet")
    known = list(data["user_id"].unique()[:3])
    users.write_text("\n".join([*known, "brand-new-user", ""]) + "\n")
    out = tmp_path / "recs.csv"
    rec = runner.invoke(app, ["recommend", "--registry", str(registry), "--stage", "dev",
                              "--users", str(users), "--k", "5", "--out", str(out)], env=env)
    assert rec.exit_code == 0, rec.output
    recs = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert list(recs["user_id"].unique()) == [*known, "brand-new-user"]
    assert recs.groupby("user_id")["rank"].apply(list).to_dict() == {
        u: [1, 2, 3, 4, 5] for u in [*known, "brand-new-user"]}
    seen = data[data["user_id"] == known[0]]["item_id"].dropna()
    assert not set(recs[recs["user_id"] == known[0]]["item_id"]) & set(seen)
    assert "1 cold-start" in rec.stderr
    assert "scores are the model's" in rec.stderr  # the two scales are told apart
    # Told to include seen items, it scores on demand: a heavy user's own items come back
    # (this world's users re-buy their taste), and the new user still gets trending.
    # (A list of 30: which of the user's items reach the top 5 moves with the library
    # versions' arithmetic on this 200-item world; none did with those of 2026-12-07.)
    again = runner.invoke(app, ["recommend", "--registry", str(registry), "--stage", "dev",
                                "--users", str(users), "--k", "30", "--out", str(out),
                                "--include-seen"], env=env)
    assert again.exit_code == 0, again.output
    with_seen = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(with_seen["user_id"].unique()) == [*known, "brand-new-user"]
    assert set(with_seen[with_seen["user_id"] == known[0]]["item_id"]) & set(seen)
    cold_items = recs[recs["user_id"] == "brand-new-user"]["item_id"].tolist()
    cold_with_seen = with_seen[with_seen["user_id"] == "brand-new-user"]["item_id"].tolist()
    assert cold_with_seen[:len(cold_items)] == cold_items
    no_data = runner.invoke(app, ["recommend", "--registry", str(registry), "--users",
                                  str(users), "--out", str(out), "--include-seen", "--data",
                                  str(tmp_path / "nowhere")], env=env)
    assert no_data.exit_code == 2 and "no events.parquet there" in no_data.stderr

    report = tmp_path / "report.html"
    evaluated = runner.invoke(app, ["evaluate", "--registry", str(registry), "--stage", "dev",
                                    "--report", str(report)], env=env)
    assert evaluated.exit_code == 0, evaluated.output
    payload = json.loads(evaluated.stdout)
    assert payload["test"]["ndcg@10"] == manifest.metrics["test"]["ndcg@10"]
    assert "two_stage" in payload["segments"]
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 5 and "Per stage" in page
    # On a held-out window (the version saw it: said so), written beside the version.
    policy = tmp_path / "promotion.yaml"
    policy.write_text("window: {min_users: 20}\n")
    since = pd.read_parquet(small_world / "events.parquet")["timestamp"].quantile(0.8)
    fresh = runner.invoke(app, ["evaluate", manifest.version[:12], "--registry",
                                str(registry), "--data", str(small_world), "--since",
                                since.isoformat(), "--policy", str(policy)], env=env)
    assert fresh.exit_code == 0, fresh.output
    scored = json.loads(fresh.stdout)
    assert scored["window"]["since"] == since.isoformat()
    assert 0 < scored["fresh"]["ndcg@10"] < 1 and scored["fresh"]["users"] >= 20
    assert {row["segment"] for row in scored["fresh"]["segments"]} >= {"new", "casual"}
    assert "it has seen part of this window" in fresh.stderr
    beside = Path(registry) / "versions" / manifest.version / "evaluations" / \
        scored["window"]["key"]
    assert {p.name for p in beside.iterdir()} == {"per_user.parquet", "result.json",
                                                 "report.html"}
    assert (beside / "report.html").read_text().count("data:image/png;base64,") == 1
    too_few = runner.invoke(app, ["evaluate", "--registry", str(registry), "--data",
                                  str(small_world)], env=env)
    assert too_few.exit_code == 2 and "the gates need 200" in too_few.stderr
    not_measured = runner.invoke(app, ["evaluate", "--registry", str(registry), "--k", "7"],
                                 env=env)
    assert not_measured.exit_code == 2 and "not at [7]" in not_measured.stderr

    too_many = runner.invoke(app, ["recommend", "--registry", str(registry), "--users",
                                   str(users), "--k", "99", "--out", str(out)], env=env)
    assert too_many.exit_code == 2 and "more than the 30 items" in too_many.stderr


def test_train_on_the_global_time_split(small_world: Path, tmp_path: Path) -> None:
    config = tmp_path / "global.yaml"
    config.write_text(json.dumps({**SMALL, "split": "global"}))
    registry = tmp_path / "registry"
    result = CliRunner().invoke(app, ["train", "--data", str(small_world), "--registry",
                                      str(registry), "--config", str(config)],
                                env={"COLUMNS": "200", "RECSTACK_ONLINE_STORE": "sqlite"})
    assert result.exit_code == 0, result.output
    assert "global time split" in result.output
    manifest = Registry(registry).resolve()
    assert manifest.params["split"] == "global"
    assert manifest.metrics["protocol"].startswith("global time split")
    assert 0 < manifest.metrics["test"]["ndcg@10"] <= 1
    assert set(manifest.metrics["baselines"]) >= {"popularity", "ease", "item_knn", "als"}


@pytest.mark.parametrize(("config_text", "message"), [
    ("two_tower:\n  epoch: 3\n", "two_tower.epoch: Extra inputs are not permitted"),
    ("join_engine: spark\n", "join_engine: Input should be 'asof' or 'feast'"),
    ("split: weekly\n", "split: Input should be 'per_user' or 'global'"),
    ("per_source: {als: 10}\n", "per_source: no candidate source named als"),
])
def test_train_rejects_bad_config(small_world: Path, tmp_path: Path, config_text: str,
                                  message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(config_text)
    result = CliRunner().invoke(app, ["train", "--data", str(small_world), "--registry",
                                      str(tmp_path / "r"), "--config", str(config)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert message in result.stderr
