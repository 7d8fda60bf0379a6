"""`recstack serve --config serve.yaml`: deployments, rules, cache, variants.

Every key is optional; an empty file (or none) serves one version with the
defaults below. A mistake is reported with the file and the key, for example
`serve.yaml: variants[1].weight: Input should be greater than 0`.

    graph:                       # Ray Serve deployments of each version's graph
      retriever: {replicas: 1, num_cpus: 0, memory_mb: null, threads: null}
      ranker:    {replicas: 1, num_cpus: 0}
      ingress:   {replicas: 1, num_cpus: 0}
    rules: {diversity: mmr, diversity_weight: 0.2, exploration_rate: 0.1}
    cache: {enabled: true, ttl_s: 300}
    impressions: {enabled: true} # log each recommender answer to the events stream
    experiment: home-feed        # salt of the variant hash: a new name reshuffles users
    variants:                    # default: one variant, "default", weight 1
      - {name: control, weight: 0.5}                     # the version serve was given
      - {name: diverse, weight: 0.5, rules: {diversity_weight: 0.5}}
      - {name: candidate, weight: 0.1, stage: staging}   # or version: <id>
    watch_interval_s: 10         # how often stage pointers are re-read (0: never)
    item_staleness_s: 300        # how old a cached item feature row may be
    store_timeout_s: 1.0         # Redis read timeout before answering degraded
    health: {interval_s: 1, timeout_s: 2, grace_s: 60}  # graph probes (serving/health.py)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.yaml_file import load_model, problems
from serving.health import HealthConfig
from serving.rules import RuleConfig

# How old an in-process item feature row may be. Item features are daily popularity
# snapshots and catalog content; 5 min bounds how late an availability change shows,
# and keeps the background re-reads (~0.35 ms of CPU an item) near 2% of a core for
# a 10k-item catalog in each of the two processes that hold rows.
ITEM_STALENESS_S = 300.0
# Not tighter: a busy 2-core node (a new version's replicas loading beside the old)
# stalls healthy Redis reads for a few hundred ms, and 0.25 s answered those degraded.
STORE_TIMEOUT_S = 1.0


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class StoreOptions:
    """How the serving processes read the online store."""
    timeout_s: float = STORE_TIMEOUT_S  # Redis socket and connect timeout
    item_staleness_s: float = ITEM_STALENESS_S


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentConfig(_Strict):
    replicas: int = Field(default=1, ge=1, le=64)
    num_cpus: float = Field(default=0.0, ge=0)  # 0: no reservation, replicas share the machine
    memory_mb: int | None = Field(default=None, ge=1)
    # BLAS/OpenMP/torch threads per replica; Ray starts workers with one. More helps a
    # lone request's matrix products, and oversubscribes a busy node: measure first.
    threads: int | None = Field(default=None, ge=1, le=64)

    def options(self) -> dict[str, Any]:
        """`Deployment.options(...)` keyword arguments."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.memory_mb is not None:
            actor["memory"] = self.memory_mb * 2**20
        return {"num_replicas": self.replicas, "ray_actor_options": actor}


class GraphConfig(_Strict):
    retriever: DeploymentConfig = DeploymentConfig()
    ranker: DeploymentConfig = DeploymentConfig()
    ingress: DeploymentConfig = DeploymentConfig()
    # Retrieval in the Ranker's replicas too (no Retriever deployment, `retriever`
    # unused): one hop fewer, for small installations that need not scale the two apart.
    fused: bool = False
    # The ANN indexes' search breadth (hnswlib's ef) for every version served; None:
    # each version's own (PipelineConfig.ann). Recall against latency without retraining
    # (benchmarks/ann_recall.py measures both).
    ef_search: int | None = Field(default=None, ge=1, le=4096)


class CacheConfig(_Strict):
    enabled: bool = True
    ttl_s: float = Field(default=300.0, gt=0)


class ImpressionsConfig(_Strict):
    enabled: bool = True  # each recommender answer's items logged to the events stream


class VariantConfig(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: float = Field(gt=0)
    version: str | None = None  # a version id; default: what serve was started with
    stage: str | None = None  # or a stage pointer, followed as it moves
    rules: dict[str, Any] = Field(default_factory=dict)  # overrides of the top-level rules

    @model_validator(mode="after")
    def _one_source(self) -> VariantConfig:
        if self.version is not None and self.stage is not None:
            raise ValueError("give version or stage, not both")
        return self


class ServeConfig(_Strict):
    graph: GraphConfig = GraphConfig()
    rules: dict[str, Any] = Field(default_factory=dict)
    cache: CacheConfig = CacheConfig()
    impressions: ImpressionsConfig = ImpressionsConfig()
    experiment: str = "default"
    variants: list[VariantConfig] = Field(
        default_factory=lambda: [VariantConfig(name="default", weight=1.0)], min_length=1)
    watch_interval_s: float = Field(default=10.0, ge=0)
    item_staleness_s: float = Field(default=ITEM_STALENESS_S, gt=0)
    store_timeout_s: float = Field(default=STORE_TIMEOUT_S, gt=0)
    health: HealthConfig = HealthConfig()

    def store_options(self) -> StoreOptions:
        return StoreOptions(timeout_s=self.store_timeout_s,
                            item_staleness_s=self.item_staleness_s)

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        self.rule_config()  # every variant's rules must build
        for variant in self.variants:
            self.rule_config(variant)
        return self

    def rule_config(self, variant: VariantConfig | None = None) -> RuleConfig:
        overrides = {**self.rules, **(variant.rules if variant else {})}
        try:
            return RuleConfig.model_validate(overrides)
        except ValidationError as exc:
            where = f"variant {variant.name}: " if variant else ""
            raise ValueError(where + problems(exc, "rules")) from None


def load_config(path: Path | None) -> ServeConfig:
    return ServeConfig() if path is None else load_model(path, ServeConfig, ConfigError)
