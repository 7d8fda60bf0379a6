"""The registry on a local directory and on fsspec's in-memory filesystem."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stores.registry import (
    Manifest,
    Registry,
    RegistryError,
    StageConflict,
    StageEntry,
    line,
    new_version_id,
    single_version,
)


def _manifest(version: str, minutes: int = 0) -> Manifest:
    return Manifest(version=version,
                    created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes),
                    code_revision="abc123", data_snapshot={"events": 10},
                    feature_service="ranker", params={"k": 1}, metrics={"ndcg@10": 0.1})


def _artifacts(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    (root / "ranker").mkdir(parents=True)
    (root / "ranker" / "model.json").write_text('{"trees": []}')
    (root / "items.parquet").write_bytes(b"PAR1")
    return root


@pytest.fixture(params=["local", "memory", "s3"])
def registry(request, tmp_path: Path) -> Registry:
    if request.param == "local":
        return Registry(tmp_path / "reg")
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return Registry(f"{bucket}/reg-{uuid.uuid4().hex}")
    return Registry(f"memory://reg-{uuid.uuid4().hex}")


def test_publish_list_show_and_fetch(registry: Registry, tmp_path: Path) -> None:
    assert registry.versions() == []
    with pytest.raises(RegistryError, match="no versions yet"):
        registry.latest()
    registry.publish(_manifest("v1"), _artifacts(tmp_path, "a1"))
    registry.publish(_manifest("v2", minutes=5), _artifacts(tmp_path, "a2"))
    assert [m.version for m in registry.versions()] == ["v1", "v2"]
    shown = registry.manifest("v2")
    assert shown.artifacts == ["items.parquet", "ranker/model.json"]
    assert shown.metrics == {"ndcg@10": 0.1} and shown.code_revision == "abc123"
    local = registry.fetch("v1", cache=tmp_path / "cache")
    assert (local / "ranker" / "model.json").read_text() == '{"trees": []}'
    assert registry.version_uri("v1").endswith("/versions/v1")
    with pytest.raises(RegistryError, match="already exists"):
        registry.publish(_manifest("v1"), _artifacts(tmp_path, "a3"))
    with pytest.raises(RegistryError, match="no version 'v9'"):
        registry.manifest("v9")


def _through(registry: Registry, version: str, stage: str) -> None:
    """Promote `version` along dev -> staging -> prod up to `stage`."""
    for step in ("dev", "staging", "prod"):
        registry.promote(version, step, by="ci")
        if step == stage:
            return


def test_stages_promote_history_and_rollback(registry: Registry, tmp_path: Path) -> None:
    for n in (1, 2, 3):
        registry.publish(_manifest(f"v{n}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    assert registry.stage("prod") is None
    with pytest.raises(RegistryError, match="has no version yet"):
        registry.resolve(stage="prod")
    _through(registry, "v1", "prod")
    _through(registry, "v2", "prod")
    _through(registry, "v3", "staging")
    assert registry.stage("prod") == "v2" and registry.stage("staging") == "v3"
    assert registry.resolve(stage="prod").version == "v2"
    assert registry.resolve().version == "v3"  # latest when nothing is named
    back = registry.rollback("prod", note="p99 doubled")
    assert back.version == "v1" and back.note == "rollback from v2: p99 doubled"
    assert registry.stage("prod") == "v1"
    assert [e.version for e in registry.history()["prod"]] == ["v1", "v2", "v1"]
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("prod")
    with pytest.raises(RegistryError, match="unknown stage 'qa'"):
        registry.promote("v1", "qa")
    with pytest.raises(RegistryError, match="no version 'v7'"):
        registry.promote("v7", "dev")
    assert registry.history()["prod"][-1].action == "rollback"


def test_stage_order_and_forced_promotions(registry: Registry, tmp_path: Path) -> None:
    for n in (1, 2):
        registry.publish(_manifest(f"v{n}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    with pytest.raises(RegistryError, match="v1 has never been in dev; staging takes only"):
        registry.promote("v1", "staging")
    registry.promote("v1", "dev")
    with pytest.raises(RegistryError, match="v1 has never been in staging; prod takes"):
        registry.promote("v1", "prod")
    assert registry.order_problem("v1", "staging") is None
    registry.promote("v1", "staging")
    registry.promote("v1", "prod")
    forced = registry.promote("v2", "prod", by="alice", force_reason="hotfix for INC-42")
    assert forced.forced and forced.note == "hotfix for INC-42" and forced.by == "alice"
    assert registry.stage("prod") == "v2"
    assert registry.history()["prod"][-1].forced  # kept in the history
    # Gates checked against v1, but prod moved: the promotion is refused.
    with pytest.raises(StageConflict, match="prod moved to v2 while v1 was being checked"):
        registry.promote("v1", "prod", expected="v1")
    registry.promote("v1", "prod", expected="v2", details={"gates": "passed"})
    assert registry.history()["prod"][-1].details == {"gates": "passed"}


def test_canary_entries_record_without_moving_the_stage(registry: Registry,
                                                        tmp_path: Path) -> None:
    for n in (1, 2):
        registry.publish(_manifest(f"v{n}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    registry.promote("v1", "dev")
    assert registry.canary("dev") is None
    registry.record("dev", "v2", "canary_start", note="10%")
    registry.record("dev", "v2", "canary_wait", details={"impressions": 120})
    assert registry.stage("dev") == "v1" and registry.canary("dev").version == "v2"
    registry.record("dev", "v2", "canary_stop", note="rolled back: CTR lower")
    assert registry.canary("dev") is None and registry.stage("dev") == "v1"
    with pytest.raises(RegistryError, match="moves the stage"):
        registry.record("dev", "v2", "promote")
    registry.record("dev", "v2", "canary_start")
    registry.promote("v2", "dev", note="canary won")
    assert registry.canary("dev") is None and registry.stage("dev") == "v2"
    assert registry.rollback("dev").version == "v1"  # canary entries are not steps


def test_canary_entries_are_checked_on_the_generation_they_land_on(
        registry: Registry, tmp_path: Path) -> None:
    """Two `rollout canary` runs that both saw no canary open: the second start is
    refused where it is written, and waits or stops need that version's canary."""
    for n in (1, 2, 3):
        registry.publish(_manifest(f"v{n}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    registry.promote("v1", "prod", force_reason="a test")
    with pytest.raises(RegistryError, match="no canary of v2 is open on prod"):
        registry.record("prod", "v2", "canary_wait")
    registry.record("prod", "v2", "canary_start")
    with pytest.raises(RegistryError, match="a canary of v2 is open on prod already"):
        registry.record("prod", "v3", "canary_start")
    with pytest.raises(RegistryError, match=r"no canary of v3 .*\(the open one is v2\)"):
        registry.record("prod", "v3", "canary_stop")
    assert [e.action for e in registry.history()["prod"]] == ["promote", "canary_start"]


def test_two_writers_never_lose_a_change(registry: Registry, tmp_path: Path) -> None:
    """The compare-and-swap: a writer that read the history before another's change
    landed is refused, on local disks and on S3 (If-None-Match) alike."""
    for n in (1, 2, 3):
        registry.publish(_manifest(f"v{n}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    registry.promote("v1", "dev")
    real = registry._history
    stale = real()

    def racing() -> tuple[int, dict[str, list[StageEntry]]]:
        registry._history = real  # type: ignore[method-assign]
        registry.promote("v2", "dev", by="other")  # lands between our read and write
        return stale

    registry._history = racing  # type: ignore[method-assign]
    with pytest.raises(StageConflict, match="changed while this promote of dev"):
        registry.promote("v3", "dev")
    assert [e.version for e in registry.history()["dev"]] == ["v1", "v2"]


def test_concurrent_promotions_each_land_or_are_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    for n in range(8):
        registry.publish(_manifest(f"v{n}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    outcomes: dict[str, str] = {}

    def attempt(version: str) -> None:
        try:
            Registry(tmp_path / "reg").promote(version, "dev")
            outcomes[version] = "landed"
        except StageConflict:
            outcomes[version] = "refused"

    threads = [threading.Thread(target=attempt, args=(f"v{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    landed = {v for v, o in outcomes.items() if o == "landed"}
    assert landed and len(outcomes) == 8
    assert {e.version for e in registry.history()["dev"]} == landed


def test_a_registry_from_before_the_log_keeps_its_history(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    registry.publish(_manifest("v1"), _artifacts(tmp_path, "a1"))
    registry.publish(_manifest("v2", minutes=1), _artifacts(tmp_path, "a2"))
    at = "2026-01-01T00:00:00Z"
    (tmp_path / "reg" / "stages.json").write_text(json.dumps({"prod": [
        {"version": "v1", "at": at, "by": "cli"}, {"version": "v2", "at": at, "by": "cli"}]}))
    assert registry.stage("prod") == "v2"
    assert registry.rollback("prod").version == "v1"
    assert [e.version for e in registry.history()["prod"]] == ["v1", "v2", "v1"]
    assert (tmp_path / "reg" / "stage-history" / "00000001.json").exists()


def test_rollbacks_walk_back_one_promotion_each_never_toggling(
        registry: Registry, tmp_path: Path) -> None:
    for n in (1, 2, 3, 4):
        registry.publish(_manifest(f"v{n}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    for n in (1, 2, 3):
        registry.promote(f"v{n}", "dev")
    assert [registry.rollback("dev").version for _ in range(2)] == ["v2", "v1"]
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("dev")
    registry.promote("v4", "dev")  # on top of v1: what it rolls back to
    assert registry.rollback("dev").version == "v1"
    assert [e.version for e in registry.history()["dev"]] == [
        "v1", "v2", "v3", "v2", "v1", "v4", "v1"]


def test_a_history_written_before_actions_keeps_its_rollbacks() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    old = [StageEntry(version=v, at=at, by="cli", note=n)
           for v, n in (("v1", ""), ("v2", ""), ("v1", "rollback from v2"))]
    assert line(old) == ["v1"]


def test_version_ids_sort_by_time_and_bad_ids_are_refused(tmp_path: Path) -> None:
    early = new_version_id(datetime(2026, 1, 1, tzinfo=UTC), "a")
    late = new_version_id(datetime(2026, 1, 2, tzinfo=UTC), "a")
    assert early < late and early == "v20260101-000000-a"
    with pytest.raises(RegistryError, match="invalid version id"):
        Registry(tmp_path).publish(_manifest("../escape"), _artifacts(tmp_path, "x"))


def test_models_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recstack.cli import app

    reg = Registry(tmp_path / "reg")
    reg.publish(_manifest("v1"), _artifacts(tmp_path, "a1"))
    reg.publish(_manifest("v2", minutes=1), _artifacts(tmp_path, "a2"))
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    args = ["--registry", str(tmp_path / "reg")]
    assert runner.invoke(app, ["models", "promote", "v1", *args, "--to", "dev"],
                         env=env).exit_code == 0
    skipped = runner.invoke(app, ["models", "promote", "v2", *args, "--to", "prod", "--force"],
                            env=env)
    assert skipped.exit_code == 2 and "--force needs --reason" in skipped.stderr
    no_data = runner.invoke(app, ["models", "promote", "v1", *args, "--to", "staging"],
                            env=env)
    assert no_data.exit_code == 2 and "runs the gates on fresh data" in no_data.stderr
    for version in ("v1", "v2"):
        forced = runner.invoke(app, ["models", "promote", version, *args, "--stage", "prod",
                                     "--force", "--reason", "INC-7 hotfix", "--by", "alice"],
                               env=env)
        assert forced.exit_code == 0 and "(forced)" in forced.output
    history = runner.invoke(app, ["models", "history", *args], env=env)
    assert "FORCED  by alice  INC-7 hotfix" in history.output
    listed = runner.invoke(app, ["models", "list", *args], env=env)
    assert listed.exit_code == 0 and "v2" in listed.output and "prod" in listed.output
    shown = runner.invoke(app, ["models", "show", "v1", *args], env=env)
    assert '"feature_service": "ranker"' in shown.output
    back = runner.invoke(app, ["models", "rollback", *args, "--stage", "prod"], env=env)
    assert back.exit_code == 0 and "prod -> v1" in back.output
    missing = runner.invoke(app, ["models", "show", "v9", *args], env=env)
    assert missing.exit_code == 1 and "no version 'v9'" in missing.stderr
    bad = runner.invoke(app, ["models", "promote", "v1", *args, "--stage", "qa"], env=env)
    # An unknown stage is a usage error, refused before the registry is read.
    assert bad.exit_code == 2
    assert bad.stderr == "error: --to: 'qa' is not one of 'dev', 'staging', 'prod'\n"


def test_a_unique_prefix_names_a_version(registry: Registry, tmp_path: Path) -> None:
    ids = ["v20261206-214800-a1b2c3", "v20261206-214900-d4e5f6", "v20261207-080000-0719aa",
           "v20261207-08"]  # an id that is also the start of another
    for n, version in enumerate(ids):
        registry.publish(_manifest(version, minutes=n), _artifacts(tmp_path, f"a{n}"))
    assert registry.find("v20261206-2149") == "v20261206-214900-d4e5f6"
    assert registry.manifest("v20261206-2148").version == "v20261206-214800-a1b2c3"
    assert registry.find("v20261207-08") == "v20261207-08"  # a whole id wins
    assert registry.resolve("v20261207-0800").version == "v20261207-080000-0719aa"
    local = registry.fetch("v20261206-2149", cache=tmp_path / "cache")
    assert (local / "ranker" / "model.json").exists()
    # A stage keeps the whole id, whatever named it.
    registry.promote("v20261206-2148", "dev")
    assert registry.stage("dev") == "v20261206-214800-a1b2c3"
    with pytest.raises(RegistryError) as ambiguous:
        registry.find("v20261206")
    assert str(ambiguous.value).startswith("'v20261206' is the start of 2 versions in ")
    assert str(ambiguous.value).endswith(
        ": v20261206-214800-a1b2c3, v20261206-214900-d4e5f6; give more of the id")
    with pytest.raises(RegistryError, match="no version 'v2025'"):
        registry.promote("v2025", "dev")
    with pytest.raises(RegistryError, match="invalid version id"):
        registry.find("../v2026")  # no way out of the registry's directory


def test_an_ambiguous_prefix_lists_ten_matches_at_most(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    for n in range(12):
        registry.publish(_manifest(f"v1-{n:02d}", minutes=n), _artifacts(tmp_path, f"a{n}"))
    with pytest.raises(RegistryError, match=r"start of 12 versions .*v1-09 and 2 more; give"):
        registry.find("v1")


def test_a_version_directory_alone_is_a_registry_of_one(tmp_path: Path) -> None:
    """`recstack serve --model-dir`: KServe's storage initializer leaves the version's
    files at a path named for nothing in particular (/mnt/models)."""
    source = Registry(tmp_path / "reg")
    source.publish(_manifest("v7"), _artifacts(tmp_path, "a7"))
    models = tmp_path / "mnt" / "models"
    models.parent.mkdir()
    source.fetch("v7").rename(models)
    alone = single_version(models)
    assert [m.version for m in alone.versions()] == ["v7"]
    assert alone.resolve().version == "v7"
    assert (alone.fetch("v7") / "ranker" / "model.json").read_text() == '{"trees": []}'

    with pytest.raises(RegistryError, match=r"no manifest\.json there"):
        single_version(tmp_path / "mnt")
    (tmp_path / "mnt" / "manifest.json").write_text('{"version": "v8"}')
    with pytest.raises(RegistryError, match="not a RecStack manifest"):
        single_version(tmp_path / "mnt")
