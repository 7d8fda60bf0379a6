"""`recstack pipeline rehearse`: the promotion workflows' commands, end to end, on one
machine: 2 minutes on an idle 2-core machine, 6 in a loaded full run, so `slow`
(`pytest -m slow tests/cli/test_pipeline.py`); tests/cli/test_promotion.py runs the
same gates on real versions in the default run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recstack.registry import Registry

pytestmark = pytest.mark.slow


def test_the_rehearsal_promotes_the_good_version_and_refuses_the_weak_one(
        tmp_path: Path) -> None:
    out = tmp_path / "rehearsal"
    done = subprocess.run([sys.executable, "-m", "recstack", "pipeline", "rehearse", "--out",
                           str(out)], capture_output=True, text=True, timeout=900,
                          check=False, env={**os.environ, "COLUMNS": "160",
                                            "RECSTACK_ONLINE_STORE": "sqlite"})
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    good = (out / "train.version").read_text().strip().removeprefix("version=")
    weak = (out / "tenth.version").read_text().strip().removeprefix("version=")
    registry = Registry(out / "registry")
    assert registry.stage("prod") == registry.stage("staging") == good
    assert registry.stage("dev") == weak
    assert f"{weak} refused for staging" in done.stdout + done.stderr
    assert "has never been in staging" in done.stdout + done.stderr
    assert [e.version for e in registry.history()["prod"]] == [good]
