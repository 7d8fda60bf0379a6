"""The candidate sources every version trains, saves and serves, by name.

A source is one `models.candidates.base.CandidateSource` subclass; registering it
here is all the pipeline, the bundle, the ranker's features, serving's retrieval
and the reasons a served item carries need to find it (models/README.md, "Adding a
candidate source"). Order matters: it is the order of the ranker's source columns,
so a version's features and lists stay what they were when a source is appended.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.candidates.base import CandidateSource, SourceBuild
from models.candidates.content import ContentSimilarity
from models.candidates.ease import EASE
from models.candidates.knn import ItemKNN
from models.candidates.popularity import Popularity
from models.two_tower.generator import TwoTowerGenerator

SOURCES: dict[str, type[CandidateSource]] = {}


def register(source: type[CandidateSource]) -> type[CandidateSource]:
    """Add a source (last in order); its name must be new."""
    if source.name in SOURCES:
        raise ValueError(f"a candidate source named {source.name!r} is already registered "
                         f"({SOURCES[source.name].__name__})")
    SOURCES[source.name] = source
    return source


def unregister(name: str) -> None:
    SOURCES.pop(name)


for _source in (TwoTowerGenerator, EASE, ItemKNN, Popularity, ContentSimilarity):
    register(_source)


def by_class_name(name: str) -> type[CandidateSource]:
    """The registered source class of this name (a bundle records class names)."""
    for source in SOURCES.values():
        if source.__name__ == name:
            return source
    raise KeyError(f"no registered candidate source is a {name}: registered are "
                   f"{', '.join(s.__name__ for s in SOURCES.values())}")


def default_counts() -> dict[str, int]:
    """Each source's default number of pooled candidates per user."""
    return {name: source.candidates for name, source in SOURCES.items()}


def counts(per_source: Mapping[str, int]) -> dict[str, int]:
    """Candidates per user for every registered source, in registration order: the
    configured count where one is given, the source's default otherwise. ValueError
    names a configured source nobody registered."""
    unknown = sorted(set(per_source) - set(SOURCES))
    if unknown:
        raise ValueError(f"per_source: no candidate source named {', '.join(unknown)}; "
                         f"the sources are {', '.join(SOURCES)}")
    return {name: int(per_source.get(name, source.candidates))
            for name, source in SOURCES.items()}


def make_sources(build: SourceBuild) -> dict[str, CandidateSource]:
    """A new, unfitted instance of every registered source."""
    return {name: source.create(build) for name, source in SOURCES.items()}


def affinity_source(sources: Mapping[str, CandidateSource]) -> TwoTowerGenerator:
    """The two-tower of a set of sources: every version has one (its affinity is a
    ranker feature of every pooled item)."""
    tower = sources.get(TwoTowerGenerator.name)
    if not isinstance(tower, TwoTowerGenerator):
        raise TypeError(f"the sources lack the {TwoTowerGenerator.name} model")
    return tower


def reason_of(name: str) -> str | None:
    """Why a served item is shown, when the source named `name` found it; None for a
    name no source has."""
    source = SOURCES.get(name)
    return None if source is None else source.reason
