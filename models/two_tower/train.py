"""Training the two-tower model: one loop that runs in process or on Ray Train.

`train_loop(config)` is the per-worker function. Under Ray Train's
`TorchTrainer` the model is wrapped in DDP by `prepare_model`, each worker
trains on its shard of the examples, and rank 0 reports the weights as a
checkpoint. With `workers=0` the same loop runs in the calling process, which
is what small tests and tiny catalogs want.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from models.two_tower.data import Examples
from models.two_tower.model import TwoTower

WEIGHTS = "two_tower.pt"
METRICS = "metrics.json"


class TwoTowerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(default=64, ge=1)
    hidden: int = Field(default=128, ge=1)
    epochs: int = Field(default=8, ge=1)
    batch_size: int = Field(default=512, ge=1)
    lr: float = Field(default=0.005, gt=0)
    weight_decay: float = Field(default=1e-6, ge=0)  # with sparse_ids, not on the ids
    temperature: float = Field(default=0.05, gt=0)
    seed: int = 0
    # Lazy Adam on sparse id rows instead of one dense Adam: a dense step updates every
    # user's and item's row, so it grows with the world (benchmarks/two_tower_step.py:
    # 161 against 31 ms a step at 160k users x 50k items, 863 against 34 at 1M x 100k).
    # Off by default: at the same learning rate it cost the two-tower 7% of NDCG@10 on
    # the 16k x 8k world (0.0324 -> 0.0302) and the two-stage model 3% (BENCHMARKS.md,
    # "Scale: joins, calibration and shards (issue 21)"); large worlds need it, retuned.
    sparse_ids: bool = False


@dataclass(frozen=True)
class Trained:
    state: dict[str, torch.Tensor]
    metrics: dict[str, float]


def build_model(config: TwoTowerConfig, n_users: int, n_items: int,
                item_features: np.ndarray) -> TwoTower:
    model = TwoTower(n_users, n_items, item_features.shape[1], config.dim, config.hidden,
                     config.temperature, config.sparse_ids)
    model.load_item_features(torch.from_numpy(item_features))
    return model


def train_loop(loop: dict[str, Any]) -> Trained | None:
    """Per-worker training. `loop` holds the arrays, sizes and the TwoTowerConfig."""
    distributed = loop["distributed"]
    config = TwoTowerConfig(**loop["config"])
    if distributed:
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
    else:
        rank, world = 0, 1
    torch.manual_seed(config.seed)
    torch.set_num_threads(max(1, torch.get_num_threads() // max(world, 1)))
    model: torch.nn.Module = build_model(config, loop["n_users"], loop["n_items"],
                                         loop["item_features"])
    if distributed:
        model = ray.train.torch.prepare_model(model)
    steps = optimizers(model, config)
    users = torch.from_numpy(loop["users"])
    history = torch.from_numpy(loop["history"])
    items = torch.from_numpy(loop["items"])
    log_q = torch.from_numpy(np.log(loop["sampling"]))
    n = len(items)
    shard_size = n // world
    on_epoch: Callable[[int, float], None] | None = loop.get("on_epoch")
    losses: list[float] = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        # The same permutation on every worker, then each takes its own slice.
        order = torch.from_numpy(np.random.default_rng(config.seed + epoch).permutation(n))
        mine = order[rank * shard_size:(rank + 1) * shard_size]
        losses.append(_epoch(model, steps, mine, (users, history, items), log_q,
                             config.batch_size))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    seconds = time.perf_counter() - started
    trained_examples = shard_size * world * config.epochs
    metrics = {"loss": losses[-1], "first_loss": losses[0], "seconds": seconds,
               "examples_per_s": trained_examples / max(seconds, 1e-9), "workers": world,
               "examples": n}
    core = cast(torch.nn.Module, getattr(model, "module", model))  # unwrap DDP
    state = {k: v.detach().cpu() for k, v in core.state_dict().items()}
    if not distributed:
        return Trained(state, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            torch.save(state, Path(tmp) / WEIGHTS)
            (Path(tmp) / METRICS).write_text(json.dumps(metrics))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)
    return None


def optimizers(model: torch.nn.Module, config: TwoTowerConfig) -> list[torch.optim.Optimizer]:
    """One Adam over every trainable parameter; with `sparse_ids`, lazy Adam for the id
    embeddings and Adam with weight decay for the towers' layers."""
    if not config.sparse_ids:
        return [torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=config.lr, weight_decay=config.weight_decay)]
    core = cast(TwoTower, getattr(model, "module", model))  # DDP wraps it
    ids = [core.user_id.weight, core.item_id.weight]
    dense = [p for p in model.parameters() if p.requires_grad and all(p is not i for i in ids)]
    return [torch.optim.SparseAdam(ids, lr=config.lr),
            torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay)]


def _epoch(model: torch.nn.Module, steps: list[torch.optim.Optimizer],
           mine: torch.Tensor, examples: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
           log_q: torch.Tensor, batch_size: int) -> float:
    """One pass over this worker's examples in full batches; the mean batch loss."""
    users, history, items = examples
    total = 0.0
    batches = 0
    model.train()
    for start in range(0, len(mine) - batch_size + 1, batch_size):
        batch = mine[start:start + batch_size]
        loss = model(users[batch], history[batch], items[batch], log_q)
        for optimizer in steps:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in steps:
            optimizer.step()
        total += float(loss.detach())
        batches += 1
    return total / max(batches, 1)


def _ray_worker(loop: dict[str, Any]) -> None:
    train_loop(loop)


def fit(examples: Examples, item_features: np.ndarray, sampling: np.ndarray, n_users: int,
        n_items: int, config: TwoTowerConfig, workers: int = 0,
        on_epoch: Callable[[int, float], None] | None = None,
        storage: Path | None = None, ray_address: str | None = None) -> Trained:
    """Train in process (`workers=0`) or on Ray Train with `workers` workers, on the
    cluster at `ray_address` (None: a local Ray)."""
    loop = {"distributed": workers > 0, "config": config.model_dump(), "users": examples.users,
            "history": examples.history, "items": examples.items, "sampling": sampling,
            "item_features": item_features, "n_users": n_users, "n_items": n_items}
    if workers == 0:
        trained = train_loop({**loop, "on_epoch": on_epoch})
        assert trained is not None
        return trained
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from models.ray_runtime import ensure_ray

    ensure_ray(ray_address)
    storage = storage or Path(tempfile.mkdtemp(prefix="recstack-ray-"))
    trainer = TorchTrainer(
        _ray_worker, train_loop_config=loop,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=torch.cuda.is_available()),
        run_config=RunConfig(name="two_tower", storage_path=str(storage.resolve())))
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"two-tower training reported no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / WEIGHTS)
        metrics = json.loads((Path(directory) / METRICS).read_text())
    return Trained(state, metrics)
