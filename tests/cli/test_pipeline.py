"""`recstack pipeline rehearse`: the promotion workflows' commands, end to end, on one
machine, canaries included: 3 minutes on an idle 2-core machine, more in a loaded
full run, so `slow`
(`pytest -m slow tests/cli/test_pipeline.py`); tests/cli/test_promotion.py runs the
same gates on real versions in the default run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stores.registry import Registry

pytestmark = pytest.mark.slow


def test_the_rehearsal_promotes_refuses_and_decides_two_canaries(tmp_path: Path) -> None:
    out = tmp_path / "rehearsal"
    done = subprocess.run([sys.executable, "-m", "recstack", "pipeline", "rehearse", "--out",
                           str(out)], capture_output=True, text=True, timeout=900,
                          check=False, env={**os.environ, "COLUMNS": "160",
                                            "RECSTACK_ONLINE_STORE": "sqlite"})
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    good = (out / "train.version").read_text().strip().removeprefix("version=")
    weak = (out / "tenth.version").read_text().strip().removeprefix("version=")
    retrain = (out / "retrain.version").read_text().strip().removeprefix("version=")
    registry = Registry(out / "registry")
    said = done.stdout + done.stderr
    assert f"{weak} refused for staging" in said
    assert "has never been in staging" in said
    assert registry.stage("staging") == registry.stage("dev") == retrain
    # prod: the good version through the gates; the retrain's first canary (clicking
    # 20% less) rolled back, its second (20% more) promoted.
    assert [(e.action, e.version) for e in registry.history()["prod"]] == [
        ("promote", good), ("canary_start", retrain), ("canary_stop", retrain),
        ("canary_start", retrain), ("promote", retrain)]
    stopped, promoted = registry.history()["prod"][2], registry.history()["prod"][4]
    assert stopped.note.startswith("rolled back: CTR ") and "upper bound stays below" in \
        stopped.note
    assert promoted.note.startswith("canary: CTR ") and "lower bound clears" in promoted.note
    assert "decision: rollback" in said and "decision: promote" in said
