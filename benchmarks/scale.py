"""Growth benchmark (issue 21, step 1): what each step of RecStack costs as the world
grows, and the growth exponent of each figure against the number of events.

For each size in --sizes (USERSxITEMS), in a fresh directory OUT/scale/USERSxITEMS/:
- `recstack data generate --users U --items I --days D --seed S`: wall time, events;
- `recstack features build`, then `recstack features apply` (Feast apply and
  materialize into Redis, --engine): wall times, and the materialize seconds the
  command prints per view;
- `recstack train --promote dev` (through benchmarks/train_probe.py, which runs the
  same CLI with timers around the library functions its stages call): wall time;
  the pipeline's own stage timings from the version's manifest (`metrics.timings`:
  split, stage_a_generators, stage_a_features, ranker, stage_b, evaluation, stage_c),
  and the time outside them (imports, reading the data, the feature store, the
  ground-truth scoring, the publish); the probes' figures: each source's fit (the
  two-tower among them), candidate pooling, two-tower affinity scores, point-in-time
  joins, ranker fits and predictions, calibration, text embeddings, bundle write;
  peak RSS of the training process tree (the process and all its descendants, Ray's
  workers included when --workers starts a local Ray; benchmarks/rss.py, every 0.2 s)
  and its largest single process; the version's size on disk;
- with --serve: `recstack serve` alone on its own Ray (start-up to ready, the
  server's own start-up breakdown, each Serve replica's peak RSS after a warm-up),
  then benchmarks/serve_load.py's side-by-side run against the no-op graph on one
  `ray start` cluster: c=1 p50/p99 and c=16 throughput, and each as a ratio to the
  same-run floor. The side-by-side run ends with `ray stop --force`, which stops
  every Ray process on the machine: it is skipped while Ray processes this script
  did not start are running, unless --ray-stop-ok; --serve-alone leaves it out.

Every step is a child process of the CLI (wall times include Python's and the
libraries' imports, a few seconds each: at small sizes they dominate, and the
exponents mean something only between sizes where the work does). Each step prints
a line with the elapsed time as it ends; training prints one per pipeline stage.
At the end: a Markdown table (one row per size), the stage tables, each figure's
growth exponent (least-squares slope of log figure against log events), the raw
figures in OUT/scale.json (written after every size, so a run cut short keeps what
it measured), and a log-log plot, docs/scale.png.

Cost. The default sizes (2k x 1k to 16k x 8k, 30 days: about 80k to 640k events)
took 14 minutes on 2 cores (BENCHMARKS.md), most of it training the largest. The
issue's sizes are not measured yet. Extrapolated from that table's exponents, 40k x
20k (about 1.6M events) would take about 20 minutes to train and 1 to generate. At
160k x 50k the per-candidate-row work (point-in-time joins, exposure calibration,
the two-tower's epochs) dominates, and item-kNN's blocked co-occurrence grows with
the square of the catalog; EASE is capped at its 4,000 most popular items. Run those
only on a machine of their own.

Redis: RECSTACK_BENCH_REDIS (default db 15 of localhost), Feast project
`recstack_scale` (its own keys: nothing else's is touched). Worlds stay under
OUT/scale/ (delete them when done: the largest default one is a few hundred MB).

Usage:
    python benchmarks/scale.py [--sizes 2000x1000,4000x2000,8000x4000,16000x8000]
        [--days 30] [--seed 11] [--workers 0] [--shards 1] [--engine feast]
        [--serve | --serve-alone]
        [--serve-requests 300] [--serve-rounds 1] [--ray-stop-ok] [--serve-only]
        [--out benchmarks/out] [--plot docs/scale.png] [--from-json OUT/scale.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load
from rss import GB, TreeSampler, end_tree
from serve_load import (
    Server,
    Spec,
    drive,
    measure_pair,
    median_round,
    ratios,
    request_bodies,
    side_by_side,
    specs,
)

from recstack.processes import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "benchmarks" / "out"
PLOT = ROOT / "docs" / "scale.png"
DEFAULT_SIZES = "2000x1000,4000x2000,8000x4000,16000x8000"
ENV = {**serve_load.ENV, "RECSTACK_FEAST_PROJECT": "recstack_scale"}
CLI = [sys.executable, "-m", "recstack"]
MB = 1024**2


class Progress:
    """One line per finished step, with the time since the benchmark began."""

    def __init__(self) -> None:
        self.began = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def __call__(self, text: str) -> None:
        minutes, seconds = divmod(int(self.elapsed()), 60)
        print(f"[{minutes:3d}:{seconds:02d}] {text}", flush=True)


@dataclass
class Step:
    """One command's wall time, its process tree's memory, and its log."""

    seconds: float
    rss: dict[str, Any]
    log: Path


def _follow(process: subprocess.Popen[bytes], log: Path, echo: str | None,
            show: Progress, prefix: str) -> None:
    """Wait for the process; with `echo`, show its log's lines starting so as they come."""
    offset = 0
    while True:
        done = process.poll() is not None
        if echo is not None:
            with log.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk if done else chunk[:chunk.rfind(b"\n") + 1]  # whole lines
            offset += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                if line.startswith(echo):
                    show(f"{prefix}{line[len(echo):].strip()}")
        if done:
            return
        time.sleep(0.5)


def run_step(command: list[str], log: Path, show: Progress, prefix: str = "",
             echo: str | None = None) -> Step:
    """`command` as a child process (output into `log`), its tree's RSS sampled."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160", **ENV}
    began = time.perf_counter()
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env=env, cwd=ROOT)
        with TreeSampler(process.pid) as peak:
            _follow(process, log, echo, show, prefix)
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(command)}\nexited with {process.returncode}; "
                         f"its log, {log}, ends:\n{tail}")
    return Step(seconds, peak.as_json(), log)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        users, _, items = part.strip().lower().partition("x")
        if not (users.isdigit() and items.isdigit()):
            raise argparse.ArgumentTypeError(f"{part!r}: sizes are USERSxITEMS, e.g. 2000x1000")
        sizes.append((int(users), int(items)))
    return sizes


def event_count(data: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(data / "events.parquet").num_rows)


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


MATERIALIZED = re.compile(r"^\s+(\w+)\s+(?:[\d,]+ entities)?\s+([\d.]+) s\s*$", re.M)


def generate_and_features(users: int, items: int, base: Path, args: argparse.Namespace,
                          show: Progress) -> dict[str, Any]:
    """A fresh world of this size, its feature tables, applied and materialized."""
    name, data, logs = f"{users}x{items}", base / "data", base / "logs"
    shutil.rmtree(data, ignore_errors=True)  # the embedding cache too: a first training
    step = run_step([*CLI, "data", "generate", "--out", str(data), "--users", str(users),
                     "--items", str(items), "--days", str(args.days), "--seed",
                     str(args.seed)], logs / "generate.log", show)
    events = event_count(data)
    show(f"{name} generate: {step.seconds:.1f} s, {events:,} events")
    build = run_step([*CLI, "features", "build", "--data", str(data)],
                     logs / "features-build.log", show)
    show(f"{name} features build: {build.seconds:.1f} s")
    apply = run_step([*CLI, "features", "apply", "--data", str(data), "--engine",
                      args.engine], logs / "features-apply.log", show)
    views = {view: float(s) for view, s in MATERIALIZED.findall(apply.log.read_text())}
    show(f"{name} features apply + materialize: {apply.seconds:.1f} s "
         f"(materialize {sum(views.values()):.1f} s over {len(views)} views)")
    return {"users": users, "items": items, "days": args.days, "seed": args.seed,
            "events": events,
            "generate": {"seconds": step.seconds, "rss": step.rss},
            "features": {"build_s": build.seconds, "apply_s": apply.seconds,
                         "materialize_s": sum(views.values()), "materialize_views_s": views,
                         "build_rss": build.rss, "apply_rss": apply.rss}}


def train(data: Path, registry: Path, base: Path, args: argparse.Namespace,
          show: Progress, name: str) -> dict[str, Any]:
    """`recstack train` through the probe: wall time, stages, memory, version size."""
    shutil.rmtree(registry, ignore_errors=True)
    probe = base / "logs" / "train_probe.json"
    step = run_step([sys.executable, str(HERE / "train_probe.py"), str(probe), "train",
                     "--data", str(data), "--registry", str(registry), "--workers",
                     str(args.workers), "--shards", str(args.shards), "--promote", "dev"],
                    base / "logs" / "train.log",
                    show, prefix=f"{name} train: ", echo="[probe]")
    (version_dir,) = [p for p in (registry / "versions").iterdir()
                      if (p / "manifest.json").exists()]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    probed = json.loads(probe.read_text())
    timings = manifest["metrics"]["timings"]  # in the order the stages ran, where known
    order = [*[n for n in probed["laps"] if n in timings], *sorted(set(timings)
                                                                  - set(probed["laps"]))]
    stages = {k: float(timings[k]) for k in order}
    result = {"wall_s": step.seconds, "stages_s": stages,
              "outside_stages_s": step.seconds - sum(stages.values()),
              "probes_s": {k: v["seconds"] for k, v in probed["probes"].items()},
              "probes_by_stage_s": {k: v["by_stage"] for k, v in probed["probes"].items()},
              "probes_missing": probed["missing"], "rss": step.rss,
              "version": version_dir.name, "version_bytes": directory_bytes(version_dir),
              "ndcg@10": manifest["metrics"]["test"].get("ndcg@10")}
    show(f"{name} train: {step.seconds:.1f} s, peak RSS {step.rss['tree_peak_gb']:.2f} GB "
         f"(largest process {step.rss['largest_process_gb']:.2f} GB), version "
         f"{result['version_bytes'] / MB:.1f} MB")
    if probed["missing"]:
        show(f"{name} train: probes not found (renamed?): {', '.join(probed['missing'])}")
    return result


# serving ------------------------------------------------------------------------------


@contextlib.contextmanager
def scale_env() -> Iterator[None]:
    """serve_load's servers and its `ray start` cluster read its module's ENV when they
    start: this benchmark's Feast project for as long as the block runs."""
    saved = dict(serve_load.ENV)
    serve_load.ENV.update(ENV)
    try:
        yield
    finally:
        serve_load.ENV.clear()
        serve_load.ENV.update(saved)


def on_port(spec: Spec, port: int) -> Spec:
    name, command, env, users = spec
    command = list(command)
    command[command.index("--port") + 1] = str(port)
    return name, command, env, users


STARTUP = re.compile(r"start-up: ([\d.]+) s to import, ([\d.]+) s for Ray, ([\d.]+) s to "
                     r"deploy")


async def serve_alone(spec: Spec, data: Path, logs: Path) -> dict[str, Any]:
    """`recstack serve` on its own local Ray: seconds to ready, its own start-up
    breakdown, each replica's peak RSS after 100 warm-up requests; then the server and
    everything it started, by process id (no `ray stop`)."""
    name, command, env, _ = on_port(spec, free_port())
    port = int(command[command.index("--port") + 1])
    began = time.perf_counter()
    server = Server(name, command, port, logs / "serve-alone.log", env, uses_ray=False)
    sampler = TreeSampler(server.process.pid)
    try:
        with sampler as peak:
            await server.ready()
            startup = time.perf_counter() - began
            await drive(port, request_bodies(data, 100, 7), 4)
            sampler.sample()  # every process it started, seen before it stops
    finally:
        server.stop()
        end_tree(sampler.seen.values())
    replicas = {n: rss / GB for n, rss in peak.per_process.values() if "ServeReplica" in n}
    found = STARTUP.search(server.log.read_text(errors="replace"))
    return {"startup_s": startup,
            "startup_breakdown_s": dict(zip(("import", "ray", "deploy"),
                                            map(float, found.groups()), strict=True))
            if found else None,
            "replicas_gb": replicas, "replica_rss_gb": sum(replicas.values()),
            "replica_max_gb": max(replicas.values(), default=0.0),
            "tree_peak_gb": peak.total_bytes / GB}


def other_ray() -> list[int]:
    """Ray processes running on this machine now (none of them this script's)."""
    import psutil

    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if (process.info["name"] in ("raylet", "gcs_server") or command.startswith("ray::")
                or " ray start" in f" {command}" or "/ray start" in command):
            found.append(process.pid)
    return found


async def serve_paired(pair: list[Spec], data: Path, base: Path, args: argparse.Namespace
                       ) -> dict[str, Any]:
    """serve_load's side-by-side rounds: the no-op graph and RecStack on one cluster."""
    if args.serve_alone:
        return {"skipped": "--serve-alone"}
    others = other_ray()
    if others and not args.ray_stop_ok:
        return {"skipped": f"Ray processes not started here are running (pids "
                f"{', '.join(map(str, others[:8]))}); the side-by-side run ends with "
                "`ray stop --force`, which would stop them: pass --ray-stop-ok"}
    pair = [on_port(spec, free_port()) for spec in pair]
    floor, ours = pair[0][0], pair[1][0]
    results: dict[str, list[dict[str, Any]]] = {floor: [], ours: []}
    async with side_by_side(pair, data, base / "logs", args.seed) as (floor_s, ours_s):
        for round_ in range(1, args.serve_rounds + 1):
            first, second = await measure_pair(floor_s, ours_s, data, args.serve_requests,
                                               args.seed + round_, round_)
            results[floor].append(first)
            results[ours].append(second)
    mine, theirs = median_round(results[ours]), median_round(results[floor])
    return {"rounds": results, "ratios": ratios(results, ours, floor),
            "c1_p50_ms": mine["c1"]["p50_ms"], "c1_p99_ms": mine["c1"]["p99_ms"],
            "c16_rps": mine["c16"]["rps"], "floor_c1_p50_ms": theirs["c1"]["p50_ms"],
            "floor_c1_p99_ms": theirs["c1"]["p99_ms"], "floor_c16_rps": theirs["c16"]["rps"],
            "errors": mine["c1"]["errors"] + mine["c16"]["errors"],
            "degraded": mine["c1"]["degraded"] + mine["c16"]["degraded"]}


def serve(data: Path, registry: Path, base: Path, args: argparse.Namespace, show: Progress,
          name: str) -> dict[str, Any]:
    with scale_env():
        layout = argparse.Namespace(fused=False, cached=False, out=base / "logs")
        floor_spec, ours_spec = specs(layout, data, registry)[1:3]
        alone = asyncio.run(serve_alone(ours_spec, data, base / "logs"))
        show(f"{name} serve alone: ready in {alone['startup_s']:.1f} s, "
             f"{len(alone['replicas_gb'])} replicas, {alone['replica_rss_gb']:.2f} GB")
        paired = asyncio.run(serve_paired([floor_spec, ours_spec], data, base, args))
    if "skipped" in paired:
        show(f"{name} serve side by side: skipped: {paired['skipped']}")
    else:
        r = paired["ratios"]
        show(f"{name} serve side by side: c=1 p50 {paired['c1_p50_ms']:.1f} ms "
             f"({r['p50']:.2f}x floor), p99 {paired['c1_p99_ms']:.1f} ms ({r['p99']:.2f}x), "
             f"c=16 {paired['c16_rps']:.0f} req/s ({r['rps']:.2f}x)")
    return alone | paired


def measure_size(users: int, items: int, args: argparse.Namespace, show: Progress
                 ) -> dict[str, Any]:
    name = f"{users}x{items}"
    base = args.out / "scale" / name
    show(f"{name}: starting")
    result = generate_and_features(users, items, base, args, show)
    result["train"] = train(base / "data", base / "registry", base, args, show, name)
    if args.serve or args.serve_alone:
        result["serve"] = serve(base / "data", base / "registry", base, args, show, name)
    return result


def serve_again(results: list[dict[str, Any]], users: int, items: int,
                args: argparse.Namespace, show: Progress) -> None:
    """--serve-only: this size's serving figures, from the world and version of the
    earlier run that `results` records."""
    name = f"{users}x{items}"
    (entry,) = [r for r in results if (r["users"], r["items"]) == (users, items)]
    base = args.out / "scale" / name
    entry["serve"] = serve(base / "data", base / "registry", base, args, show, name)


# figures, exponents, report -------------------------------------------------------------


def figures(result: dict[str, Any]) -> dict[str, float]:
    """One size's figures by name, flat: what the exponents are fitted to."""
    train_, features_ = result["train"], result["features"]
    out = {"generate s": result["generate"]["seconds"],
           "features build s": features_["build_s"],
           "features apply + materialize s": features_["apply_s"],
           "materialize s": features_["materialize_s"],
           "train wall s": train_["wall_s"],
           "train peak RSS GB": train_["rss"]["tree_peak_gb"],
           "train largest process GB": train_["rss"]["largest_process_gb"],
           "version MB": train_["version_bytes"] / MB,
           "train outside stages s": train_["outside_stages_s"]}
    out |= {f"train {k} s": v for k, v in train_["stages_s"].items()}
    out |= {f"probe {k} s": v for k, v in train_["probes_s"].items()}
    serving = result.get("serve") or {}
    for key, label in (("startup_s", "serve start-up s"), ("replica_rss_gb", "replica RSS GB"),
                       ("c1_p50_ms", "serve c=1 p50 ms"), ("c1_p99_ms", "serve c=1 p99 ms"),
                       ("floor_c1_p50_ms", "floor c=1 p50 ms"), ("c16_rps", "serve c=16 req/s"),
                       ("floor_c16_rps", "floor c=16 req/s")):
        if isinstance(serving.get(key), int | float):
            out[label] = float(serving[key])
    return out


MIN_SECONDS = 0.1


def exponents(results: list[dict[str, Any]]) -> dict[str, float]:
    """Each figure's least-squares slope of log(figure) on log(events), over the sizes
    where it is positive, and for a time at least MIN_SECONDS (below, it is the clock's
    and the machine's noise); at least two distinct event counts."""
    table = [(r["events"], figures(r)) for r in results]
    names = dict.fromkeys(name for _, f in table for name in f)
    slopes = {}
    for name in names:
        least = MIN_SECONDS if name.endswith(" s") else 0.0
        points = [(events, f[name]) for events, f in table if f.get(name, 0) > least]
        if len({events for events, _ in points}) >= 2:
            x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
            slopes[name] = float(np.polyfit(x, y, 1)[0])
    return slopes


def size_table(results: list[dict[str, Any]]) -> str:
    serving = any("serve" in r for r in results)
    head = ("| users x items | events | generate s | features s (build + apply) | train s "
            "| train peak RSS GB (largest process) | version MB |")
    rule = "|---|---|---|---|---|---|---|"
    if serving:
        head += (" start-up s | replica RSS GB | c=1 p50 ms (x floor) | c=1 p99 ms (x floor) "
                 "| c=16 req/s (x floor) |")
        rule += "---|---|---|---|---|"
    rows = [head, rule]
    for r in results:
        f, t = r["features"], r["train"]
        row = (f"| {r['users']:,} x {r['items']:,} | {r['events']:,} | "
               f"{r['generate']['seconds']:.1f} | {f['build_s'] + f['apply_s']:.1f} "
               f"({f['build_s']:.1f} + {f['apply_s']:.1f}) | {t['wall_s']:.1f} | "
               f"{t['rss']['tree_peak_gb']:.2f} ({t['rss']['largest_process_gb']:.2f}) | "
               f"{t['version_bytes'] / MB:.1f} |")
        rows.append(row + (_serve_cells(r.get("serve")) if serving else ""))
    return "\n".join(rows)


def _serve_cells(s: dict[str, Any] | None) -> str:
    if not s:
        return " | | | | |"
    alone = f" {s['startup_s']:.1f} | {s['replica_rss_gb']:.2f} |"
    if "skipped" in s:
        return alone + " skipped | skipped | skipped |"
    r = s["ratios"]
    return alone + (f" {s['c1_p50_ms']:.1f} ({r['p50']:.2f}x) | {s['c1_p99_ms']:.1f} "
                    f"({r['p99']:.2f}x) | {s['c16_rps']:.0f} ({r['rps']:.2f}x) |")


def stage_table(results: list[dict[str, Any]], key: str, title: str) -> str:
    """Seconds per training stage (`key`: stages_s or probes_s), one column per size."""
    names = list(dict.fromkeys(n for r in results for n in r["train"][key]))
    if key == "stages_s":
        names.append("(outside the stages)")
    else:  # costliest at the largest size first
        names.sort(key=lambda n: -(results[-1]["train"][key].get(n) or 0.0))
    head = f"| {title} | " + " | ".join(f"{r['users']:,} x {r['items']:,}" for r in results)
    rows = [head + " |", "|---|" + "---|" * len(results)]
    for name in names:
        cells = [r["train"]["outside_stages_s"] if name == "(outside the stages)"
                 else r["train"][key].get(name) for r in results]
        rows.append(f"| {name} | " + " | ".join("" if c is None else f"{c:.1f}" for c in cells)
                    + " |")
    return "\n".join(rows)


def exponent_table(results: list[dict[str, Any]], slopes: dict[str, float]) -> str:
    rows = ["| figure | exponent against events | smallest size -> largest |", "|---|---|---|"]
    first, last = figures(results[0]), figures(results[-1])
    for name, slope in slopes.items():
        rows.append(f"| {name} | {slope:.2f} | {first.get(name, float('nan')):.3g} -> "
                    f"{last.get(name, float('nan')):.3g} |")
    return "\n".join(rows)


def _series(results: list[dict[str, Any]], name: str, scale: float = 1.0
            ) -> tuple[list[float], list[float]]:
    points = [(r["events"], figures(r).get(name)) for r in results]
    kept = [(e, v * scale) for e, v in points if v is not None and v > 0]
    return [e for e, _ in kept], [v for _, v in kept]


def plot_panels(results: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, float]]]]:
    """The panels: (y label, [(figure, scale)]): times, with the three costliest
    pipeline stages at the largest size; memory and size in GB; serving latency."""
    last = figures(results[-1])
    stages = [f"train {k} s" for k in results[-1]["train"]["stages_s"]]
    costly = sorted(stages, key=lambda n: -last[n])[:3]
    panels = [("seconds", [(n, 1.0) for n in ("generate s", "features build s",
                                              "features apply + materialize s",
                                              "train wall s", *costly)]),
              ("GB", [("train peak RSS GB", 1.0), ("train largest process GB", 1.0),
                      ("version MB", 1 / 1024)])]
    if "serve start-up s" in last:
        panels[0][1].append(("serve start-up s", 1.0))
    if "replica RSS GB" in last:
        panels[1][1].append(("replica RSS GB", 1.0))
    if "serve c=1 p50 ms" in last:
        panels.append(("ms", [("serve c=1 p50 ms", 1.0), ("serve c=1 p99 ms", 1.0),
                              ("floor c=1 p50 ms", 1.0)]))
    return panels


def _label(name: str, slope: float | None) -> str:
    """A figure's legend entry: its name less the unit the axis shows, and its slope."""
    short = name.replace("version MB", "version size").removesuffix(" s")
    short = short.removesuffix(" GB").removesuffix(" ms")
    return f"{short} ({'-' if slope is None else f'{slope:.2f}'})"


def _axes_style(ax: Any, results: list[dict[str, Any]], unit: str) -> None:
    """Log-log, one x tick per size (events, and users x items), the legend below."""
    from matplotlib.ticker import NullFormatter

    events = [float(r["events"]) for r in results]
    if ax.lines:  # a slope-1 guide through the first series' first point
        y0 = float(np.asarray(ax.lines[0].get_ydata())[0])
        ax.plot(events, [y0 * e / events[0] for e in events], "k:", lw=1,
                label="slope 1 (linear)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(events, [f"{e / 1000:,.0f}k\n{r['users']}x{r['items']}"
                           for e, r in zip(events, results, strict=True)], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("events (users x items)")
    ax.set_ylabel(unit)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
              frameon=False, title="figure (growth exponent)", title_fontsize=8)


def plot(results: list[dict[str, Any]], slopes: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = plot_panels(results)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 6), squeeze=False)
    for ax, (unit, names) in zip(axes[0], panels, strict=True):
        for name, scale in names:
            x, y = _series(results, name, scale)
            if x:
                ax.plot(x, y, "o-", label=_label(name, slopes.get(name)))
        _axes_style(ax, results, unit)
    fig.suptitle("RecStack's cost against the world's size (log-log: a line's slope is its "
                 "growth exponent)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, cwd=ROOT, check=False)
    return found.stdout.strip() or "unknown"


def report(results: list[dict[str, Any]], slopes: dict[str, float]) -> str:
    return "\n\n".join([
        size_table(results),
        stage_table(results, "stages_s", "training stage (manifest), s"),
        stage_table(results, "probes_s", "inside training (probes, inclusive), s"),
        exponent_table(results, slopes)])


def finish(results: list[dict[str, Any]], plot_path: Path) -> None:
    """The tables and exponents printed, the plot written."""
    slopes = exponents(results)
    print(report(results, slopes))
    plot(results, slopes, plot_path)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                        help=f"USERSxITEMS, comma-separated (default {DEFAULT_SIZES})")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=0,
                        help="`recstack train --workers` (Ray Train workers; 0: in process)")
    parser.add_argument("--shards", type=int, default=1,
                        help="`recstack train --shards` (user shards as Ray tasks; 1: none)")
    parser.add_argument("--engine", choices=("feast", "direct"), default="feast",
                        help="`recstack features apply --engine`")
    parser.add_argument("--serve", action="store_true", help="also one serving run per size")
    parser.add_argument("--serve-alone", action="store_true",
                        help="instead of --serve: only the run alone (start-up, replica RSS): no "
                             "side-by-side latency, no `ray stop`")
    parser.add_argument("--serve-requests", type=int, default=300,
                        help="requests at c=1 per round (twice as many at c=16)")
    parser.add_argument("--serve-rounds", type=int, default=1)
    parser.add_argument("--ray-stop-ok", action="store_true",
                        help="run the side-by-side serving even while other Ray processes "
                             "are running (its `ray stop --force` stops them)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--serve-only", action="store_true",
                        help="no generate or train: serve each size's world and version an "
                             "earlier run left under --out (its scale.json entry gains the "
                             "serving figures)")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="measure nothing: the tables and plot of an earlier scale.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    show = Progress()
    if args.from_json is not None:
        finish(json.loads(args.from_json.read_text())["sizes"], args.plot)
        return
    record: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/scale.py", *sys.argv[1:]]),
        "commit": _commit(), "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB}
    results: list[dict[str, Any]] = []
    path = args.out / "scale.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.serve_only:
        record = json.loads(path.read_text())
        results = record["sizes"]
        record["serve_commit"] = _commit()
    for users, items in args.sizes:
        if args.serve_only:
            serve_again(results, users, items, args, show)
        else:
            results.append(measure_size(users, items, args, show))
        path.write_text(json.dumps(record | {"sizes": results}, indent=1))
    record |= {"sizes": results, "exponents": exponents(results), "total_s": show.elapsed()}
    path.write_text(json.dumps(record, indent=1))
    finish(results, args.plot)
    show(f"done: {path}, {args.plot}")


if __name__ == "__main__":
    main()
