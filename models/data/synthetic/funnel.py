"""Each viewed item down the funnel: view, maybe click, add to cart, purchase and rate.

The probabilities depend on how well the item fits the user (affinity), the item's
quality and its price against the user's price sensitivity. Within a session the
views follow one another: each starts when the previous item's last step is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.synthetic.sessions import Sessions
from models.data.synthetic.world import World

KINDS = ("search", "view", "click", "add_to_cart", "purchase", "rating")
PAGES = ("home", "search", "checkout", "review")
_SEARCH, _VIEW, _CLICK, _CART, _PURCHASE, _RATING = range(len(KINDS))
_HOME, _SEARCH_PAGE, _CHECKOUT, _REVIEW = range(len(PAGES))


@dataclass
class EventColumns:
    """Events as numbers: indices into the world's ids, KINDS, PAGES and the query words."""

    user: np.ndarray  # into world.user_ids
    item: np.ndarray  # into world.item_ids; -1 for a search
    kind: np.ndarray  # into KINDS
    value: np.ndarray  # float64, NaN when none
    t: np.ndarray  # float64 seconds since the start
    session: np.ndarray  # the session's number among its user's sessions
    query: np.ndarray  # into sessions.query_words(world); -1 when none
    page: np.ndarray  # into PAGES

    @classmethod
    def concat(cls, parts: list[EventColumns]) -> EventColumns:
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in cls.__dataclass_fields__))

    def compact(self) -> EventColumns:
        """The narrowest integer types (tens of millions of rows are held at once)."""
        return EventColumns(self.user.astype(np.int32), self.item.astype(np.int32),
                            self.kind.astype(np.int8), self.value, self.t,
                            self.session.astype(np.int32), self.query.astype(np.int32),
                            self.page.astype(np.int8))

    def take(self, index: np.ndarray) -> EventColumns:
        return EventColumns(*(getattr(self, name)[index] for name in self.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.user)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class _Steps:
    """Which steps each view reached, and when each happened."""

    click: np.ndarray
    cart: np.ndarray
    purchase: np.ndarray
    rated: np.ndarray
    dwell: np.ndarray
    stars: np.ndarray
    t: tuple[np.ndarray, ...]  # view, click, add to cart, purchase, rating


def _steps(world: World, log_rel_price: np.ndarray, rng: np.random.Generator,
           user: np.ndarray, item: np.ndarray, a: np.ndarray, session: np.ndarray,
           first_view_t: np.ndarray) -> _Steps:
    n = len(item)
    q = world.item_quality[item]
    penalty = world.user_price_sensitivity[user] * log_rel_price[item]
    dwell = np.round(rng.lognormal(2.6 + 1.2 * a + 0.2 * q, 0.6), 1)
    gap = [rng.uniform(lo, hi, n) for lo, hi in ((1, 20), (5, 60), (10, 120), (30, 300))]
    draw = rng.random((5, n))
    click = draw[0] < _sigmoid(-3.0 + 3.5 * a + 0.3 * q)
    cart = click & (draw[1] < _sigmoid(-2.5 + 3.0 * a + 0.4 * q - 1.5 * penalty))
    purchase = cart & (draw[2] < _sigmoid(-0.3 + 1.0 * a + 0.3 * q - penalty))
    # A rating follows a purchase (35%), or now and then a click that went no further.
    rated = (purchase & (draw[3] < 0.35)) | (click & ~cart & (draw[4] < 0.03))
    stars = np.clip(np.round(3.0 + 2.2 * a + 0.6 * q + rng.normal(0, 0.6, n)), 1, 5)
    duration = dwell + gap[0] + click * (gap[1] + cart * (gap[2] + purchase * gap[3]))
    # Views of a session are consecutive rows: each starts after the ones before it.
    before = np.cumsum(duration) - duration
    starts = np.r_[0, np.flatnonzero(np.diff(session)) + 1].astype(np.int64)
    counts = np.diff(np.r_[starts, n])
    view_t = first_view_t[session] + before - np.repeat(before[starts], counts)
    click_t = view_t + dwell + gap[0]
    cart_t = click_t + gap[1]
    purchase_t = cart_t + gap[2]
    rating_t = np.where(purchase, purchase_t + gap[3], cart_t) + 60
    return _Steps(click, cart, purchase, rated, dwell, stars,
                  (view_t, click_t, cart_t, purchase_t, rating_t))


def funnel_events(world: World, log_rel_price: np.ndarray, rng: np.random.Generator,
                  users: np.ndarray, sessions: Sessions, session: np.ndarray,
                  rank: np.ndarray, item: np.ndarray, affinity: np.ndarray) -> EventColumns:
    """A block's events, in the order they happen per user (session by session).

    `session`, `rank`, `item`, `affinity`: one row per view, sorted by session then
    rank (draw_views' order); `users` maps the block's user positions to the world's."""
    user = users[sessions.user][session]
    steps = _steps(world, log_rel_price, rng, user, item, affinity, session,
                   sessions.first_view_t)
    page = np.where(sessions.search, _SEARCH_PAGE, _HOME)[session]
    every = np.ones(len(item), dtype=bool)
    nan = np.full(len(item), np.nan)
    parts = [  # (which views, kind, value, page) per step
        (every, _VIEW, steps.dwell, page),
        (steps.click, _CLICK, nan, page),
        (steps.cart, _CART, nan, page),
        (steps.purchase, _PURCHASE, world.item_price[item], np.full(len(item), _CHECKOUT)),
        (steps.rated, _RATING, steps.stars, np.full(len(item), _REVIEW)),
    ]
    searched = np.flatnonzero(sessions.search)
    columns = [EventColumns(
        user=users[sessions.user[searched]], item=np.full(len(searched), -1),
        kind=np.full(len(searched), _SEARCH), value=np.full(len(searched), np.nan),
        t=sessions.t[searched], session=sessions.number[searched],
        query=sessions.query[searched], page=np.full(len(searched), _SEARCH_PAGE))]
    order = [(searched, np.full(len(searched), -1), np.zeros(len(searched), dtype=np.int64))]
    for step, (rows, kind, value, where) in enumerate(parts):
        rows = np.flatnonzero(rows)
        columns.append(EventColumns(
            user=user[rows], item=item[rows], kind=np.full(len(rows), kind),
            value=value[rows], t=steps.t[step][rows],
            session=sessions.number[session[rows]], query=np.full(len(rows), -1),
            page=where[rows]))
        order.append((session[rows], rank[rows], np.full(len(rows), step)))
    events = EventColumns.concat(columns)
    key = [np.concatenate(k) for k in zip(*order, strict=True)]
    return events.take(np.lexsort((key[2], key[1], key[0]))).compact()
