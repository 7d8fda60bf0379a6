"""A fixed version's answers on a fixed world do not change: the lists (and the
sources behind each item) are the ones recorded before the scoring code was
restructured, the scores equal to float32 rounding. The version is stored in
tests/fixtures/small_version, so this also checks that an old version still loads, and
the world it answers from in tests/fixtures/small_world (the generator's output for
300 users x 200 items, seed 7, before the generator was vectorised)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle
from stores.feature_store import open_store
from tests.conftest import applied_copy
from tests.serving.served_lists import served_lists

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VERSION = FIXTURES / "small_version"
WORLD = FIXTURES / "small_world"


def test_a_fixed_version_serves_the_recorded_lists(tmp_path: Path, redis_settings) -> None:  # type: ignore[no-untyped-def]
    world = applied_copy(WORLD, tmp_path / "world", redis_settings)
    recorded = json.loads((VERSION / "served_lists.json").read_text())
    now = served_lists(load_bundle(VERSION), open_store(world, redis_settings))
    assert now["at"] == recorded["at"]
    assert len(now["online"]) == len(recorded["online"]) == 326
    for got, expected in zip(now["online"], recorded["online"], strict=True):
        where = f"{expected['case']} {expected['user']}"
        assert got["items"] == expected["items"], where
        assert got["sources"] == expected["sources"], where
        np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-6, atol=1e-6,
                                   err_msg=where)
    assert [row[:3] for row in now["batch"]] == [row[:3] for row in recorded["batch"]]
    # The batch was recorded from dense score blocks and now runs the one-user path: the
    # same float32 arithmetic in another order, up to 4e-6 apart on these scores.
    np.testing.assert_allclose([row[3] for row in now["batch"]],
                               [row[3] for row in recorded["batch"]], rtol=0, atol=1e-5)
