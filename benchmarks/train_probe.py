"""`recstack train`, unchanged, with timers around the library functions its stages
call, for benchmarks/scale.py.

    python benchmarks/train_probe.py TIMINGS.json train --data DIR --registry REG ...

Runs the CLI in this process (`recstack.cli.app`, the arguments after TIMINGS.json)
after wrapping, by name, what the pipeline's own stage timings (the manifest's
`metrics.timings`: split, stage_a_generators, stage_a_features, ranker, stage_b,
evaluation, stage_c) lump together: each candidate source's fit (the two-tower
among them), candidate pooling, the two-tower's affinity scores, the point-in-time
feature joins, the ranker's fits and predictions, calibration, the ranked lists,
and, outside the pipeline, reading the data, the feature store, the ground-truth
scoring and the publish (bundle and lists written). Nothing in models/ or recstack/
changes: a name that has moved is reported under `missing`, not an error.

Each wrapped call's time is inclusive (pooling includes the sources' `recommend`),
counted once when a wrapped function calls itself, and attributed to the pipeline
stage it started in. After each stage a line `[probe] STAGE N.N s` goes to stderr.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (module, attribute, label): functions looked up in the module that calls them.
PROBES: tuple[tuple[str, str, str], ...] = (
    ("models.shards", "pool", "candidate pooling (sources' recommend)"),
    ("models.two_tower.generator", "TwoTowerGenerator.pair_scores",
     "two-tower affinity scores"),
    ("models.shards", "with_features", "point-in-time feature joins"),
    ("models.shards", "compact", "frame compaction"),
    ("models.ranker.model", "Ranker.fit", "ranker fits (XGBoost)"),
    ("models.ranker.model", "Ranker.predict", "ranker predictions"),
    ("models.text_embeddings", "TextEmbedder.encode", "text embeddings (cached per world)"),
    ("models.text_embeddings", "TextEmbedder._load", "text model load"),
    ("models.pipeline", "calibrate", "exposure calibration"),
    ("models.pipeline", "_best_baseline_ndcg", "calibration baselines"),
    ("models.candidates.als", "ALS.fit", "fit als (baseline only)"),
    ("models.pipeline", "list_metrics", "evaluation metrics"),
    ("models.pipeline", "ranked_lists", "ranked lists"),
    ("models.data.dataset", "read_dataset", "read dataset"),
    ("recstack.cli.features", "ready_store", "feature store (apply; build if stale)"),
    ("models.pipeline", "run", "pipeline"),
    ("models.publish", "against_truth", "ground-truth scoring"),
    ("models.bundle", "save_bundle", "bundle write"),
    ("models.publish", "publish", "publish (bundle, lists, manifest)"),
)


PROBED = "_probe_wraps"  # on a wrapper: the function it wraps


def _replace(owner: Any, name: str, new: Callable[..., Any]) -> None:
    setattr(owner, name, new)


class Clock:
    """Wrapped calls' durations by label and by the pipeline stage they started in."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.calls: dict[str, list[tuple[float, float]]] = defaultdict(list)  # start, s
        self.laps: list[tuple[str, float, float]] = []  # stage, its start and end
        self.depth: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []

    def wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        inner = getattr(function, PROBED, function)  # a subclass inherits a wrapped fit

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.depth[label] += 1
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.depth[label] -= 1
                if self.depth[label] == 0:
                    self.calls[label].append((start, time.perf_counter() - start))
        setattr(timed, PROBED, inner)
        return timed

    def stage_of(self, instant: float) -> str:
        for name, start, end in self.laps:
            if start <= instant < end:
                return name
        if self.laps and instant >= self.laps[-1][2]:
            return "after the pipeline"
        return "before the pipeline"

    def as_json(self) -> dict[str, Any]:
        probes: dict[str, Any] = {}
        for label, calls in self.calls.items():
            by_stage: dict[str, float] = defaultdict(float)
            for start, seconds in calls:
                by_stage[self.stage_of(start)] += seconds
            probes[label] = {"seconds": sum(s for _, s in calls), "calls": len(calls),
                             "by_stage": dict(by_stage)}
        return {"probes": probes, "laps": [name for name, _, _ in self.laps],
                "missing": self.missing, "wall_s": time.perf_counter() - self.began}


def _patch(clock: Clock, module_name: str, attribute: str, label: str) -> None:
    try:
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        _replace(owner, name, clock.wrap(getattr(owner, name), label))
    except (ImportError, AttributeError) as exc:
        clock.missing.append(f"{module_name}.{attribute} ({exc})")


def _patch_sources(clock: Clock) -> None:
    """Each registered source's fit, on its own class (one it inherits, too)."""
    try:
        from models.sources import SOURCES
    except ImportError as exc:
        clock.missing.append(f"models.sources.SOURCES ({exc})")
        return
    for name, source in SOURCES.items():
        _replace(source, "fit", clock.wrap(source.fit, f"fit {name}"))


def _patch_laps(clock: Clock) -> None:
    """The pipeline's own stage ends, recorded and printed as they happen."""
    try:
        from models.pipeline import _Run
    except ImportError as exc:
        clock.missing.append(f"models.pipeline._Run ({exc})")
        return
    lap = _Run.lap

    def timed_lap(self: Any, name: str) -> None:
        start = self.clock  # where the stage began: the last lap's end
        lap(self, name)
        clock.laps.append((name, start, time.perf_counter()))
        print(f"[probe] {name} {self.timings.get(name, float('nan')):.1f} s",
              file=sys.stderr, flush=True)

    _replace(_Run, "lap", timed_lap)


def main() -> None:
    out, arguments = Path(sys.argv[1]), sys.argv[2:]
    clock = Clock()
    for module_name, attribute, label in PROBES:
        _patch(clock, module_name, attribute, label)
    _patch_sources(clock)
    _patch_laps(clock)
    from recstack.cli import app

    try:
        app(args=arguments, prog_name="recstack")
    finally:
        out.write_text(json.dumps(clock.as_json(), indent=1))


if __name__ == "__main__":
    main()
