"""Faults under load (issue 17): a private Redis stalled and killed, then `recstack
serve` killed, while clients ask for recommendations and post events; counts 5xx,
degraded answers, refused connections and accepted-versus-persisted events, and
times each recovery.

Starts its own `redis-server` on a free port (AOF with `appendfsync always`, as a
production Redis that must not lose what it acknowledged), builds a small world
(data, features, a trained version; kept in --out between runs), then `recstack
serve`, `recstack collect` and `recstack consume` against it. Load: --clients
recommendation clients (known users, random exclusions, so cache hits and misses
both) and one event client posting a batch of 20 events with their own ids every
0.1 s. The timeline, in seconds of load:

    stall:   SIGSTOP Redis at 10 s, SIGCONT at 15 s
    kill:    SIGKILL Redis at 30 s, restarted (same port, same AOF) at 33 s
    serve:   SIGKILL the serve process group at 50 s, restarted at once
    after:   the load goes on until 20 s after serve is ready again

Then the consumer drains the stream and every accepted event_id is looked for in
the offline history. Prints a table per phase and writes JSON and a plot.

Usage:
    python benchmarks/faults.py [--clients 4] [--users 1000] [--items 500] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import OUT, ROOT, Server, _run

from models.data.event_log import read_stream_events
from recstack.processes import free_port
from serving.events.consumer import group_progress
from stores.redis_address import RedisAddress

PROJECT = "recstack_faults"
KEY = "faults-bench-key"
STALL, KILL, SERVE_KILL = (10.0, 15.0), (30.0, 33.0), 50.0
AFTER_READY_S = 20.0
PATH = "/v1/models/recommender:predict"
# ok; degraded (answered from what is in process); 503 (the collector: retry); 5xx; no
# server listening; a request that took over 10 s; a connection dropped mid-answer.
OUTCOMES = ("ok", "degraded", "503", "5xx", "refused", "timeout", "dropped")


class PrivateRedis:
    """redis-server on its own port and directory, which this benchmark may stop."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = RedisAddress.parse(self.address).client()
        for _ in range(100):
            try:
                client.ping()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("the private Redis did not start")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait()


@dataclass
class Outcomes:
    """What clients saw, one row per request: (seconds into the load, outcome)."""

    rows: list[tuple[float, str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # each request's time to answer

    def add(self, at: float, outcome: str, began: float | None = None) -> None:
        self.rows.append((at, outcome))
        self.seconds.append(0.0 if began is None else time.monotonic() - began)


def _recommend_outcome(status: int, body: bytes) -> str:
    if status == 200:
        return "degraded" if json.loads(body)["predictions"][0]["degraded"] else "ok"
    return "5xx" if status >= 500 else f"{status}"


async def recommend_load(port_of: dict[str, int], users: list[str], began: float,
                         stop: asyncio.Event, seen: Outcomes) -> None:
    rng = random.Random(len(seen.rows))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            body = {"instances": [{"user_id": rng.choice(users), "k": 10,
                                   "exclude_ids": [f"x{rng.randrange(20)}"]}]}
            sent = time.monotonic()
            at = sent - began
            try:
                async with session.post(f"http://127.0.0.1:{port_of['serve']}{PATH}",
                                        json=body) as response:
                    seen.add(at, _recommend_outcome(response.status, await response.read()),
                             sent)
            except aiohttp.ClientConnectorError:
                seen.add(at, "refused")  # no server listening (it is restarting)
                await asyncio.sleep(0.2)
            except (TimeoutError, aiohttp.ClientError) as exc:
                seen.add(at, "timeout" if isinstance(exc, TimeoutError) else "dropped")


async def event_load(port: int, users: list[str], items: list[str], began: float,
                     stop: asyncio.Event, seen: Outcomes, accepted: list[str]) -> None:
    rng, batch_no = random.Random(1), 0
    headers = {"authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            batch_no += 1
            events = [{"event_id": f"f{batch_no}-{n}", "user_id": rng.choice(users),
                       "item_id": rng.choice(items), "event_type": "click",
                       "timestamp": datetime.now(UTC).isoformat()} for n in range(20)]
            at = time.monotonic() - began
            try:  # a 503 is retried with the same ids, as a client should
                for _ in range(50):
                    async with session.post(f"http://127.0.0.1:{port}/v1/events",
                                            json={"events": events},
                                            headers=headers) as response:
                        answer = await response.json()
                    if response.status != 503:
                        break
                    seen.add(time.monotonic() - began, "503")
                    await asyncio.sleep(0.5)
                if response.status == 202:
                    accepted += [e["event_id"] for e in events]
                    seen.add(at, "ok" if answer["accepted"] + answer["duplicates"] == 20
                             else "partial")
                else:
                    seen.add(at, "5xx" if response.status >= 500 else str(response.status))
            except aiohttp.ClientConnectorError:
                seen.add(at, "refused")
            except (TimeoutError, aiohttp.ClientError) as exc:
                seen.add(at, "timeout" if isinstance(exc, TimeoutError) else "dropped")
            await asyncio.sleep(0.1)


def build_world(out: Path, env: dict[str, str], users: int, items: int) -> tuple[Path, Path]:
    data, registry = out / f"faults_world_{users}x{items}", out / f"faults_reg_{users}x{items}"
    cli = [sys.executable, "-m", "recstack"]
    if not (data / "events.parquet").exists():
        _run([*cli, "data", "generate", "--out", str(data), "--users", str(users), "--items",
              str(items), "--days", "30", "--seed", "5"], env)
    _run([*cli, "features", "apply", "--data", str(data)], env)  # a new Redis each run
    if not any(registry.glob("versions/*")):
        _run([*cli, "train", "--data", str(data), "--registry", str(registry),
              "--promote", "dev"], env)
    return data, registry


def serve(registry: Path, data: Path, port: int, log: Path, env: dict[str, str]) -> Server:
    # uses_ray=False: its local Ray runs in its process group, which stop() ends; no
    # `ray stop --force`, which would end every other Ray on the machine too.
    return Server("serve", [sys.executable, "-m", "recstack", "serve", "--registry",
                            str(registry), "--stage", "dev", "--port", str(port),
                            "--data", str(data)], port, log, env, uses_ray=False)


def first_after(rows: list[tuple[float, str]], at: float, outcome: str = "ok") -> float | None:
    later = [t for t, o in rows if t >= at and o == outcome]
    return min(later) - at if later else None


def phase_table(recs: Outcomes, events: Outcomes, bounds: list[tuple[str, float, float]]
                ) -> pd.DataFrame:
    rows = []
    for name, start, end in bounds:
        for client, seen in (("recommend", recs), ("events", events)):
            inside = [n for n, (t, _) in enumerate(seen.rows) if start <= t < end]
            outcomes = pd.Series([seen.rows[n][1] for n in inside], dtype=object)
            counts = outcomes.value_counts().to_dict()
            slowest = max((seen.seconds[n] for n in inside), default=0.0)
            rows.append({"phase": name, "client": client, "requests": len(outcomes),
                         "slowest_s": round(slowest, 2) if client == "recommend" else None,
                         **{k: int(counts.get(k, 0)) for k in OUTCOMES},
                         "other": int(sum(v for k, v in counts.items()
                                          if k not in OUTCOMES))})
    return pd.DataFrame(rows)


def plot(recs: Outcomes, events: Outcomes, marks: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    colours = {"ok": "tab:green", "degraded": "tab:orange", "503": "tab:purple",
               "5xx": "tab:red", "refused": "tab:gray", "timeout": "tab:brown",
               "dropped": "black"}
    for ax, (name, seen) in zip(axes, (("recommendations", recs), ("event batches", events)),
                                strict=True):
        frame = pd.DataFrame(seen.rows, columns=["t", "outcome"])
        frame["second"] = frame["t"].astype(int)
        counts = frame.groupby(["second", "outcome"]).size().unstack(fill_value=0)
        bottom = None
        for outcome, colour in colours.items():
            if outcome in counts:
                ax.bar(counts.index, counts[outcome], bottom=bottom, color=colour, width=1.0,
                       label=outcome)
                bottom = counts[outcome] if bottom is None else bottom + counts[outcome]
        ax.set_ylabel(f"{name} / s")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the marks' labels
        for n, (label, at) in enumerate(marks.items()):
            ax.axvline(at, color="black", linewidth=0.8, linestyle="--")
            if ax is axes[0]:
                ax.text(at + 0.5, ax.get_ylim()[1] * (0.93 - 0.09 * (n % 2)), label,
                        fontsize=8)
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles),
               fontsize=9, frameon=False)
    axes[-1].set_xlabel("seconds into the load")
    fig.suptitle("Faults under load: what clients saw each second")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    redis = PrivateRedis(out / "faults_redis")
    for stale in redis.directory.glob("*"):  # a fresh AOF each run
        if stale.is_file():
            stale.unlink()
    redis.start()
    env = {"RECSTACK_REDIS": redis.address, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": PROJECT, "RECSTACK_API_KEYS": KEY}
    servers: list[Server] = []
    try:
        data, registry = build_world(out, env, args.users, args.items)
        cli = [sys.executable, "-m", "recstack"]
        ports = {"serve": free_port(), "collect": free_port()}
        server = serve(registry, data, ports["serve"], out / "faults-serve.log", env)
        collector = Server("collect", [*cli, "collect", "--port", str(ports["collect"])],
                           ports["collect"], out / "faults-collect.log", env, uses_ray=False)
        consumer = Server("consume", [*cli, "consume", "--data", str(data), "--progress-every",
                                      "5"], 0, out / "faults-consume.log", env, uses_ray=False)
        servers += [server, collector, consumer]
        await asyncio.gather(server.ready(), collector.ready(120, "/readyz"))
        known = pd.read_parquet(data / "events.parquet")
        users = sorted(known["user_id"].unique().tolist())
        items = sorted(known["item_id"].dropna().unique().tolist())
        recs, events = Outcomes(), Outcomes()
        accepted: list[str] = []
        stop = asyncio.Event()
        began = time.monotonic()
        load = [asyncio.create_task(recommend_load(ports, users, began, stop, recs))
                for _ in range(args.clients)]
        load.append(asyncio.create_task(event_load(ports["collect"], users, items, began,
                                                   stop, events, accepted)))

        async def until(at: float) -> None:
            await asyncio.sleep(max(0.0, began + at - time.monotonic()))

        await until(STALL[0])
        redis.signal(signal.SIGSTOP)
        print(f"{time.monotonic() - began:5.1f} s  Redis stopped (SIGSTOP)", flush=True)
        await until(STALL[1])
        redis.signal(signal.SIGCONT)
        print(f"{time.monotonic() - began:5.1f} s  Redis continued", flush=True)
        await until(KILL[0])
        redis.kill()
        print(f"{time.monotonic() - began:5.1f} s  Redis killed (SIGKILL)", flush=True)
        await until(KILL[1])
        redis.start()
        print(f"{time.monotonic() - began:5.1f} s  Redis restarted from its AOF", flush=True)
        await until(SERVE_KILL)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        killed_at = time.monotonic() - began
        print(f"{killed_at:5.1f} s  serve killed (SIGKILL to its process group)", flush=True)
        restarted_at = time.monotonic() - began
        server = serve(registry, data, ports["serve"], out / "faults-serve-2.log", env)
        servers.append(server)
        await server.ready()
        ready_at = time.monotonic() - began
        print(f"{ready_at:5.1f} s  serve ready again ({ready_at - restarted_at:.1f} s after "
              "its restart)", flush=True)
        end = ready_at + AFTER_READY_S
        await until(end)
        stop.set()
        await asyncio.gather(*load)
        client = RedisAddress.parse(redis.address).client()
        deadline = time.monotonic() + 120
        while True:  # the consumer drains what was accepted
            progress = group_progress(client, PROJECT)
            if progress is not None and progress.left == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the consumer did not drain the stream in 120 s")
            await asyncio.sleep(0.5)
        persisted = set(read_stream_events(data)["event_id"].to_pylist())
        startup = [line.split("start-up: ", 1)[1] for line in
                   (out / "faults-serve-2.log").read_text(errors="replace").splitlines()
                   if "start-up: " in line]
    finally:
        for running in servers:
            running.stop(30)
        if redis.process is not None and redis.process.poll() is None:
            redis.kill()
    bounds = [("before", 0.0, STALL[0]), ("Redis stalled", *STALL),
              ("recovering", STALL[1], KILL[0]), ("Redis down", *KILL),
              ("recovering ", KILL[1], killed_at), ("serve down", killed_at, ready_at),
              ("after", ready_at, end)]
    table = phase_table(recs, events, bounds)
    lost = sorted(set(accepted) - persisted)
    result = {
        "table": table.to_dict(orient="records"),
        "accepted_events": len(accepted), "persisted_of_those": len(set(accepted) & persisted),
        "lost": len(lost), "lost_sample": lost[:10],
        "5xx": int(table["5xx"].sum()),
        "timeouts_and_drops": int(table["timeout"].sum() + table["dropped"].sum()),
        "recovery_s": {
            "recommend ok after the stall": first_after(recs.rows, STALL[1]),
            "event accepted after the stall": first_after(events.rows, STALL[1]),
            "recommend ok after Redis restarted": first_after(recs.rows, KILL[1]),
            "event accepted after Redis restarted": first_after(events.rows, KILL[1]),
            "serve restart to ready": ready_at - restarted_at,
        },
        "serve_startup": startup,
    }
    print(table.to_string(index=False))
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))
    (out / "faults.json").write_text(json.dumps(result, indent=2))
    plot(recs, events, {"stall": STALL[0], "cont": STALL[1], "Redis killed": KILL[0],
                        "restarted": KILL[1], "serve killed": killed_at, "ready": ready_at},
         ROOT / "docs" / "img" / "faults.png")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    sys.exit(1 if result["lost"] or result["5xx"] else 0)


if __name__ == "__main__":
    main()
