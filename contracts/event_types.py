"""The event types and what each one means, in one table.

Every reader of events takes its meaning from here: which fields a type requires
(the collector's `Event` and the file importer's checks), whether it says something
about taste (the interactions candidate sources train on), the stem of its count
features (`clicks_7d`, built in models/features/build.py and declared in the Feast
repo), its weight in a user's category affinity, whether it is something the user
did (real-time recent items and sessions), and whether it means an impression was
acted on (online metrics and the A/B report). Adding an event type is one row here
plus the `EventType` literal in serving/events/event.py, which a check keeps equal
(README, "Adding an event type").
"""

from __future__ import annotations

from dataclasses import dataclass, field

ITEM_NEEDED = {"item_id": "only search events may omit it"}


@dataclass(frozen=True)
class EventType:
    name: str
    doc: str
    requires: dict[str, str] = field(default_factory=lambda: dict(ITEM_NEEDED))
    """Fields this type cannot do without, each with why (the error message says it)."""
    taste: bool = False
    """An interaction with an item that says the user likes it: a positive for training."""
    count_stem: str | None = None
    """Stem of the user's windowed counts of it (`clicks_1d`, `clicks_7d`, ...)."""
    item_counted: bool = False
    """Counted per item too (an item's `clicks_7d`)."""
    affinity: float = 0.0
    """Weight in the user's category affinity (0: none)."""
    action: bool = True
    """Something the user did: it updates their real-time recent items and session."""
    acts_on_impression: bool = False
    """With a `request_id`: the user acted on what was shown (a click in online metrics)."""


TYPES: tuple[EventType, ...] = (
    EventType("view", "an item's page was seen; `value`: dwell seconds",
              taste=True, count_stem="views", item_counted=True, affinity=1.0),
    EventType("click", "an item was clicked",
              taste=True, count_stem="clicks", item_counted=True, affinity=2.0,
              acts_on_impression=True),
    EventType("add_to_cart", "an item was put in the cart",
              taste=True, count_stem="carts", item_counted=True, affinity=3.0,
              acts_on_impression=True),
    EventType("purchase", "an item was bought; `value`: the amount",
              taste=True, count_stem="purchases", item_counted=True, affinity=5.0,
              acts_on_impression=True),
    EventType("rating", "an item was rated; `value`: the rating",
              requires={**ITEM_NEEDED, "value": "the rating"},
              taste=True, count_stem="ratings", item_counted=True, affinity=3.0),
    EventType("search", "a search; `query`: its text, no item",
              requires={"query": "the search text"}, count_stem="searches"),
    EventType("impression", "an item was shown in a recommendation (written by serving)",
              action=False),
)

BY_NAME: dict[str, EventType] = {t.name: t for t in TYPES}
EVENT_TYPES: tuple[str, ...] = tuple(BY_NAME)
TASTE_TYPES: tuple[str, ...] = tuple(t.name for t in TYPES if t.taste)
# Column stem per counted type: the user's counts, then the item's.
USER_COUNTED: dict[str, str] = {t.name: t.count_stem for t in TYPES if t.count_stem}
ITEM_COUNTED: dict[str, str] = {t.name: t.count_stem for t in TYPES
                                if t.count_stem and t.item_counted}
AFFINITY_WEIGHT: dict[str, float] = {t.name: t.affinity for t in TYPES if t.affinity}
NOT_ACTIONS: frozenset[str] = frozenset(t.name for t in TYPES if not t.action)
ACTS_ON_IMPRESSION: tuple[str, ...] = tuple(t.name for t in TYPES if t.acts_on_impression)
IMPRESSION = "impression"  # the type serving writes for each item it showed


def requiring(field_name: str) -> frozenset[str]:
    """The types that cannot do without this field."""
    return frozenset(t.name for t in TYPES if field_name in t.requires)


def describe() -> str:
    """A Markdown table of the types and their meaning (README, "Event types")."""
    def mark(flag: bool) -> str:
        return "yes" if flag else ""

    rows = ["| type | what it records | requires | taste | counts | affinity | action "
            "| acts on an impression |", "|---|---|---|---|---|---:|---|---|"]
    for t in TYPES:
        counts = (f"`{t.count_stem}_Nd` (user{', item' if t.item_counted else ''})"
                  if t.count_stem else "")
        rows.append(f"| `{t.name}` | {t.doc} | {', '.join(f'`{f}`' for f in t.requires)} | "
                    f"{mark(t.taste)} | {counts} | {t.affinity or ''} | {mark(t.action)} | "
                    f"{mark(t.acts_on_impression)} |")
    return "\n".join(rows)
