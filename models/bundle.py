"""A version's serving bundle: everything on-demand scoring needs, as plain files.

Written by `recstack train` into the version directory beside the manifest:

    bundle.json              which source lives where (and its class), per-source
                             candidate counts, the exposure blend
    generators/<name>/       each candidate source (models/sources.py), refit on all
                             the data (CandidateSource.save)
    ranker/                  the XGBoost ranker and its feature list
    items.parquet            item_id of each generator column, in order
    users.parquet            user_id of each two-tower user vector, in order
    events.parquet           the training events (user, item, type, time): each known
                             user's history, to which serving adds fresh events

No pickles: arrays are .npy/.npz, the ranker is XGBoost JSON, the two-tower a
torch state dict, and everything else JSON or parquet, so a bundle can be
inspected, and loaded by code that trusts nothing but the formats.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.candidates.base import CandidateSource
from models.candidates.popularity import Popularity
from models.ranker.exposure import Blend
from models.ranker.model import Ranker
from models.sources import by_class_name

BUNDLE_FILE = "bundle.json"
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "timestamp")


@dataclass
class Bundle:
    generators: dict[str, CandidateSource]
    ranker: Ranker
    item_ids: np.ndarray  # generator column -> item_id
    user_ids: np.ndarray  # two-tower user vector row -> user_id
    per_source: dict[str, int]
    blend: Blend
    events: pd.DataFrame  # user_id, item_id, event_type, timestamp

    def release_events(self) -> None:
        """Drop the training events once a `ServedModel` has read them (a serving
        replica): its histories and the sources' serving state are compact matrices,
        and the frame (75 MB of RSS for the 20k x 100k world's 824k events, its
        strings shared) is free for the replica's own use after start-up."""
        self.events = self.events.iloc[:0]

    def popularity_scores(self) -> np.ndarray:
        """The popularity source's score per catalog column (every version has it)."""
        popularity = self.generators[Popularity.name]
        if not isinstance(popularity, Popularity):
            raise TypeError(f"the popularity source is a {type(popularity).__name__}")
        return popularity.item_scores


def save_bundle(bundle: Bundle, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    classes = {}
    for name, generator in bundle.generators.items():
        kind = type(generator).__name__
        by_class_name(kind)  # a class serving can find again
        generator.save(directory / "generators" / name)
        classes[name] = kind
    bundle.ranker.save(directory / "ranker")
    pd.DataFrame({"item_id": bundle.item_ids}).to_parquet(directory / "items.parquet")
    pd.DataFrame({"user_id": bundle.user_ids}).to_parquet(directory / "users.parquet")
    bundle.events[list(EVENT_COLUMNS)].to_parquet(directory / "events.parquet", index=False)
    (directory / BUNDLE_FILE).write_text(json.dumps(
        {"generators": classes, "per_source": bundle.per_source,
         "blend": asdict(bundle.blend)}, indent=1))


def load_bundle(directory: Path) -> Bundle:
    """The bundle in a (local) version directory; FileNotFoundError when the version
    was written before bundles existed."""
    path = directory / BUNDLE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no {BUNDLE_FILE}: this version was "
                                "trained before versions carried a serving bundle; "
                                "train a new one")
    meta = json.loads(path.read_text())
    generators = {name: by_class_name(kind).load(directory / "generators" / name)
                  for name, kind in meta["generators"].items()}
    return Bundle(
        generators=generators,
        ranker=Ranker.load(directory / "ranker"),
        item_ids=pd.read_parquet(directory / "items.parquet")["item_id"].to_numpy(),
        user_ids=pd.read_parquet(directory / "users.parquet")["user_id"].to_numpy(),
        per_source={k: int(v) for k, v in meta["per_source"].items()},
        blend=Blend(**meta["blend"]),
        # Versions written before bundles kept events: no known history to extend.
        events=(pd.read_parquet(directory / "events.parquet")
                if (directory / "events.parquet").exists()
                else pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})))
