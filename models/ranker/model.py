"""XGBoost learning-to-rank (LambdaMART, `rank:ndcg`), in process or on Ray Train.

Examples are grouped by user (one query per user); under Ray Train each
worker takes whole users, so no query is split across workers.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from models.ranker.dense_predict import predict_dense

PARAMS: dict[str, Any] = {
    "objective": "rank:ndcg",
    "eval_metric": "ndcg@10",
    "lambdarank_pair_method": "topk",
    "lambdarank_num_pair_per_sample": 10,
    "eta": 0.1,
    "max_depth": 6,
    "min_child_weight": 1.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "tree_method": "hist",
    "seed": 0,
    "nthread": 0,
}


@dataclass
class Ranker:
    features: list[str]
    rounds: int = 200
    params: dict[str, Any] = field(default_factory=lambda: dict(PARAMS))
    booster: xgb.Booster | None = None

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, workers: int = 0,
            ray_address: str | None = None) -> Ranker:
        """`groups`: the query (user) of each row; rows must be sorted by it. With
        `workers`, on Ray Train: on the cluster at `ray_address` (None: a local Ray)."""
        if workers == 0:
            dtrain = xgb.DMatrix(x, label=y, qid=groups, feature_names=self.features)
            self.booster = xgb.train(self.params, dtrain, num_boost_round=self.rounds)
        else:
            self.booster = _fit_on_ray(x, y, groups, self.features, self.params, self.rounds,
                                       workers, ray_address)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.booster is not None, "fit or load the ranker first"
        if x.shape[1] != len(self.features):
            raise ValueError(f"{x.shape[1]} feature columns for a ranker of "
                             f"{len(self.features)}")
        # In place: no DMatrix to build, which is most of the cost per request.
        return predict_dense(self.booster, x)

    def importance(self, top: int = 15) -> dict[str, float]:
        assert self.booster is not None
        gain = {k: float(v) for k, v in self.booster.get_score(importance_type="gain").items()
                if isinstance(v, int | float)}
        return dict(sorted(gain.items(), key=lambda kv: -kv[1])[:top])

    def save(self, directory: Path) -> None:
        assert self.booster is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(directory / "ranker.json")
        (directory / "ranker_features.json").write_text(json.dumps(
            {"features": self.features, "params": self.params, "rounds": self.rounds}))

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        meta = json.loads((directory / "ranker_features.json").read_text())
        booster = xgb.Booster()
        booster.load_model(directory / "ranker.json")
        return cls(meta["features"], meta["rounds"], meta["params"], booster)


def _worker(loop: dict[str, Any]) -> None:
    import ray.train
    from ray.train.xgboost import RayTrainReportCallback

    class CheckpointOnly(RayTrainReportCallback):
        """The stock callback also reports the metrics after every round, and each
        report waits on Ray Train's controller (about 2 s on 2 cores): 60 rounds took
        119 s against 0.05 s for one. The model needs one report, with the checkpoint."""

        def _report_metrics(self, report_dict: dict[str, Any]) -> None:
            pass

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    groups = loop["groups"]
    mine = (np.unique(groups, return_inverse=True)[1] % world) == rank
    dtrain = xgb.DMatrix(loop["x"][mine], label=loop["y"][mine], qid=groups[mine],
                         feature_names=loop["features"])
    xgb.train(loop["params"], dtrain, num_boost_round=loop["rounds"],
              evals=[(dtrain, "train")], verbose_eval=False,
              callbacks=[CheckpointOnly(frequency=loop["rounds"])])


def _fit_on_ray(x: np.ndarray, y: np.ndarray, groups: np.ndarray, features: list[str],
                params: dict[str, Any], rounds: int, workers: int,
                ray_address: str | None) -> xgb.Booster:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    from models.ray_runtime import ensure_ray

    ensure_ray(ray_address)
    loop = {"x": x, "y": y, "groups": groups, "features": features,
            "params": {**params, "nthread": 1}, "rounds": rounds}
    trainer = XGBoostTrainer(
        _worker, train_loop_config=loop, scaling_config=ScalingConfig(num_workers=workers),
        run_config=RunConfig(name="ranker",
                             storage_path=tempfile.mkdtemp(prefix="recstack-ray-")))
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"ranker training reported no checkpoint: {result.error}")
    return RayTrainReportCallback.get_model(result.checkpoint)
