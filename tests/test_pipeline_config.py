"""The training config's choices are the pipeline's: its split and join-engine
literals name exactly the splits and join engines that exist, and per-source counts
fill in every registered source."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from models.evaluation.split import SPLITS
from models.pipeline import PipelineConfig
from models.sources import SOURCES
from stores.feature_store import JOIN_ENGINES


def test_literals_match_what_exists() -> None:
    assert get_args(PipelineConfig.model_fields["split"].annotation) == tuple(SPLITS)
    assert get_args(PipelineConfig.model_fields["join_engine"].annotation) == JOIN_ENGINES


def test_per_source_counts_cover_every_source_and_refuse_unknown_ones() -> None:
    config = PipelineConfig.model_validate({"per_source": {"ease": 5}})
    assert list(config.per_source) == list(SOURCES) and config.per_source["ease"] == 5
    with pytest.raises(ValidationError, match="no candidate source named als"):
        PipelineConfig.model_validate({"per_source": {"als": 5}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PipelineConfig.model_validate({"two_tower": {"epoch": 3}})
