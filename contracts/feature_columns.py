"""The feature columns read by name, as Feast's services name them (`view__feature`,
full feature names): what the ranker's crosses, the served model's item rows and
serving's rules read. The views themselves are feature_repo/definitions.py's; a test
checks every name here against them (tests/features/test_feature_columns.py)."""

from __future__ import annotations

# Windows in days of the count features (`clicks_1d`, `clicks_7d`, `clicks_30d`; the
# stems are contracts/event_types.py's), built by models/features and declared in
# feature_repo.
WINDOWS: tuple[int, ...] = (1, 7, 30)
ITEM_VIEWS = ("item_popularity", "item_content")  # the ranker's views keyed by item_id

ITEM_CATEGORY = "item_content__category"
ITEM_PRICE = "item_content__price"
ITEM_CREATED_TS = "item_content__created_ts"
ITEM_AVAILABLE = "item_content__available"
USER_TOP_CATEGORIES = "user_profile__top_categories"
USER_CATEGORY_AFFINITY = "user_profile__category_affinity"
USER_AVG_PURCHASE_PRICE = "user_profile__avg_purchase_price"
USER_RECENT_ITEMS = "user_realtime__recent_items"

NAMED = (ITEM_CATEGORY, ITEM_PRICE, ITEM_CREATED_TS, ITEM_AVAILABLE, USER_TOP_CATEGORIES,
         USER_CATEGORY_AFFINITY, USER_AVG_PURCHASE_PRICE, USER_RECENT_ITEMS)


def view_of(column: str) -> str | None:
    """The view a `view__feature` column comes from; None for a computed column."""
    return column.split("__")[0] if "__" in column else None
