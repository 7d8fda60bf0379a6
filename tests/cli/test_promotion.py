"""Gated promotion end to end on real versions: two trained on the first 80% of a
generated world (one on a tenth of its users), scored on the last 20% they never
saw; the good one goes dev -> staging through the gates, the weak one is refused
with its reasons, and the stage order holds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recstack.cli import app
from stores.registry import Registry
from tests.cli.test_train import SMALL

pytestmark = pytest.mark.integration
ENV = {"COLUMNS": "200", "RECSTACK_ONLINE_STORE": "sqlite"}


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=ENV)


def _train(data: Path, registry: Path, config: Path, promote: bool) -> str:
    out = data.parent / f"{data.name}.version"
    trained = _invoke("train", "--data", str(data), "--registry", str(registry), "--config",
                      str(config), "--version-file", str(out),
                      *(("--promote", "dev") if promote else ()))
    assert trained.exit_code == 0, trained.output
    return out.read_text().strip().removeprefix("version=")


def test_gates_promote_the_good_version_and_refuse_the_weak_one(
        small_world: Path, tmp_path: Path) -> None:
    cut = pd.read_parquet(small_world / "events.parquet")["timestamp"].quantile(0.8)
    for name, fraction in (("train", "1"), ("tenth", "0.1")):
        sliced = _invoke("data", "slice", "--data", str(small_world), "--out",
                         str(tmp_path / name), "--until", cut.isoformat(),
                         "--users-fraction", fraction)
        assert sliced.exit_code == 0, sliced.output
    config = tmp_path / "small.yaml"
    config.write_text(json.dumps(SMALL))
    policy = tmp_path / "promotion.yaml"
    policy.write_text("window: {min_users: 30}\nlatency: {requests: 40}\n"
                      "fairness: {min_segment_users: 15}\n")
    registry = tmp_path / "registry"
    good = _train(tmp_path / "train", registry, config, promote=True)
    weak = _train(tmp_path / "tenth", registry, config, promote=False)
    gated = ("--registry", str(registry), "--data", str(small_world), "--policy", str(policy))

    skipped = _invoke("models", "promote", good, "--to", "prod", *gated)
    assert skipped.exit_code == 4 and "has never been in staging" in skipped.stderr
    checked = _invoke("models", "promote", good, "--to", "staging", *gated, "--dry-run")
    assert checked.exit_code == 0 and "dry run: nothing changed" in checked.output
    promoted = _invoke("models", "promote", good, "--to", "staging", *gated)
    assert promoted.exit_code == 0, promoted.output
    assert f"staging -> {good}" in promoted.output and "coverage@10" in promoted.output

    assert _invoke("models", "promote", weak, "--to", "dev", "--registry",
                   str(registry)).exit_code == 0
    refused = _invoke("models", "promote", weak, "--to", "staging", *gated)
    assert refused.exit_code == 4, refused.output
    assert f"{weak} refused for staging: ndcg@10" in refused.stderr
    assert "FAIL" in refused.output and f"against {good}" in refused.output
    reg = Registry(registry)
    assert reg.stage("staging") == good  # unchanged
    entry = reg.history()["staging"][-1]
    assert entry.version == good and {g["name"] for g in entry.details["gates"]} >= {
        "stage order", "ndcg@10", "recall@20", "coverage@10", "scoring p99 ms"}
    # Both were scored on one window, kept beside each version and reused.
    windows = [sorted(p.name for p in (registry / "versions" / v / "evaluations").iterdir())
               for v in (good, weak)]
    assert windows[0] == windows[1] and len(windows[0]) == 1
    forced = _invoke("models", "promote", weak, "--to", "staging", *gated, "--force",
                     "--reason", "demo of a forced promotion", "--by", "alice")
    assert forced.exit_code == 0 and "forced past" in forced.stderr
    assert reg.history()["staging"][-1].forced and reg.stage("staging") == weak
