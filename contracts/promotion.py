"""The promotion policy: `promotion.yaml`, the thresholds every gate and canary check
reads.

The file is versioned with the code (the repository's `promotion.yaml` is the
default), so a change of threshold is a reviewed commit like any other. Every key
is optional and every field is described here, the one place: `recstack models
promote --help` and the README point here. A mistake names the file and the key
(`promotion.yaml: accuracy.margin: Input should be less than 1`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from contracts.yaml_file import load_model

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "promotion.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    """Which events a gate scores on: those after the newer version's training cutoff,
    unless `--since` says otherwise."""
    min_users: int = Field(default=200, ge=1)
    """Users with a held-out interaction in the window; fewer is refused: the gates
    would decide on noise."""
    max_users: int = Field(default=3000, ge=1)
    """At most this many of them, drawn with a fixed seed (keeps a gate under a minute
    on big worlds; the bootstrap's interval says how much that costs)."""


class Accuracy(_Strict):
    """Non-inferiority on NDCG@10 and recall@20, paired over the window's users."""
    margin: float = Field(default=0.02, ge=0, lt=1)
    """The candidate's lower bound must clear current x (1 - margin)."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """One-sided: the lower bound is the (1 - confidence) quantile of the bootstrap."""
    resamples: int = Field(default=1000, ge=100, le=100_000)
    """Paired bootstrap resamples over users."""


class Catalog(_Strict):
    """Floors on how much of the catalog the candidate's top 10 reaches."""
    coverage_floor: float = Field(default=0.10, ge=0, le=1)
    """coverage@10: share of the catalog in at least one user's top 10."""
    long_tail_floor: float = Field(default=0.05, ge=0, le=1)
    """Share of top-10 slots on items outside the most popular 20% (by interactions
    before the window)."""
    max_drop: float = Field(default=0.25, ge=0, le=1)
    """Neither may fall more than this share below the current version's."""


class Fairness(_Strict):
    """Per-segment NDCG@10. Segments are activity buckets by interactions before the
    window, and the users table's `segment` column when it has one."""
    worst_ratio_floor: float = Field(default=0.5, ge=0, le=1)
    """The worst segment's NDCG@10 over the overall must be at least this."""
    max_segment_loss: float = Field(default=0.10, ge=0, lt=1)
    """No segment's NDCG@10 may fall below current x (1 - max_segment_loss)."""
    min_segment_users: int = Field(default=30, ge=1)
    """Smaller segments are shown but not gated (too noisy to decide on)."""
    activity_buckets: tuple[int, int] = (5, 20)
    """new: fewer than the first; casual: up to the second; heavy: the rest."""


class Latency(_Strict):
    """In-process scoring of a fixed request set, one user a call, both versions
    alternated on the same machine."""
    requests: int = Field(default=200, ge=20)
    max_ratio: float = Field(default=1.5, ge=1)
    """The candidate's p99 may be at most this times the current's."""


class OffPolicy(_Strict):
    """The candidate's CTR on logged exploration impressions (SNIPS), before any A/B."""
    min_impressions: int = Field(default=500, ge=1)
    """Matched exploration impressions (those that showed the item the candidate would
    have put in the slot: about one in `explore_pool` of those logged) below which the
    estimate is shown, not gated."""
    margin: float = Field(default=0.10, ge=0, lt=1)
    """The candidate's upper bound must reach current x (1 - margin)."""


class Canary(_Strict):
    """`recstack rollout check`: canary against control on live traffic."""
    min_impressions: int = Field(default=2000, ge=1)
    """Per arm, before anything but a rollback for errors is decided."""
    margin: float = Field(default=0.05, ge=0, lt=1)
    """Relative CTR difference tolerated: promote when the canary's lower bound clears
    control x (1 - margin), roll back when its upper bound stays below it."""
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    """Canary's share of failed requests above which it is rolled back at once."""
    max_p99_ratio: float = Field(default=1.5, ge=1)
    """Canary's p99 latency over control's above which it is rolled back."""


class Policy(_Strict):
    window: Window = Window()
    accuracy: Accuracy = Accuracy()
    catalog: Catalog = Catalog()
    fairness: Fairness = Fairness()
    latency: Latency = Latency()
    off_policy: OffPolicy = OffPolicy()
    canary: Canary = Canary()


class PolicyError(ValueError):
    pass


def load_policy(path: Path | None = None) -> Policy:
    """The policy in `path` (default: the repository's promotion.yaml; the built-in
    defaults when that is absent, as in an installed package)."""
    path = path or DEFAULT_FILE
    if not path.exists():
        if path == DEFAULT_FILE:
            return Policy()
        raise PolicyError(f"{path}: file not found")
    return load_model(path, Policy, PolicyError)
