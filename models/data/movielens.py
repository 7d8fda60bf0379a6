"""MovieLens importer: the `ml-latest-small` (CSV) and `ml-100k` (u.data) layouts.

Each rating becomes a `rating` event with its value and timestamp; genres, the
year parsed from the title and user tags become item attributes. IDs stay
verbatim (movieId 318 -> "318").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from models.data.validate import (
    DataValidationError,
    Issue,
    Locator,
    Validated,
    check_references,
    normalize_events,
    normalize_items,
    normalize_users,
)

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                 "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                 "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
_YEAR = re.compile(r"\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")  # "(1995)", "(2007-2013)"
MAX_TAGS = 10


def detect_layout(src: Path) -> str:
    if (src / "ratings.csv").exists():
        return "ml-latest"
    if (src / "u.data").exists():
        return "ml-100k"
    raise DataValidationError([Issue(str(src), "whole directory", "-", (
        "not a MovieLens directory: expected ratings.csv + movies.csv (ml-latest-small "
        "layout) or u.data + u.item (ml-100k layout)"))])


def split_title(title: str) -> tuple[str, int | None]:
    """'Heat (1995)' -> ('Heat', 1995); titles without a year keep their text."""
    match = _YEAR.search(title)
    if not match:
        return title.strip(), None
    return title[: match.start()].strip(), int(match.group(1))


def _describe(title: str, year: int | None, genres: list[str], tags: list[str]) -> str:
    parts = [f"{title} ({year})" if year else title]
    if genres:
        parts.append("Genres: " + ", ".join(genres) + ".")
    if tags:
        parts.append("Tags: " + ", ".join(tags) + ".")
    return " ".join(parts)


def _tags_by_item(tags: pd.DataFrame) -> dict[str, list[str]]:
    """Most frequent user tags per item, case-folded."""
    if tags.empty:
        return {}
    tags = tags.assign(tag=tags["tag"].astype(str).str.strip().str.lower())
    tags = tags[tags["tag"] != ""]
    counts = tags.groupby(["item_id", "tag"]).size().reset_index(name="n")
    counts = counts.sort_values(["item_id", "n", "tag"], ascending=[True, False, True])
    return {str(k): list(g["tag"].head(MAX_TAGS)) for k, g in counts.groupby("item_id")}


def _items_frame(movies: pd.DataFrame, tags: dict[str, list[str]]) -> pd.DataFrame:
    rows = []
    for movie_id, raw_title, genres in movies[["item_id", "title", "genres"]].itertuples(
            index=False):
        title, year = split_title(str(raw_title))
        genre_list = [g for g in genres if g and g != "(no genres listed)"]
        item_tags = tags.get(str(movie_id), [])
        rows.append({"item_id": movie_id, "title": title, "year": year,
                     "categories": genre_list, "tags": item_tags,
                     "description": _describe(title, year, genre_list, item_tags)})
    return pd.DataFrame(rows)


def _read_latest(src: Path) -> tuple[Validated, Validated, Validated]:
    ratings = pd.read_csv(src / "ratings.csv", dtype=str, keep_default_na=False)
    ratings = ratings.rename(columns={"userId": "user_id", "movieId": "item_id",
                                      "rating": "value"})
    ratings["event_type"] = "rating"
    events = normalize_events(ratings, Locator(str(src / "ratings.csv"), "line", 2))

    movies_path = src / "movies.csv"
    if not movies_path.exists():
        raise DataValidationError([Issue(str(movies_path), "whole file", "-",
                                         "file not found (ml-latest layout needs it)")])
    movies = pd.read_csv(movies_path, dtype=str, keep_default_na=False)
    movies = movies.rename(columns={"movieId": "item_id"})
    movies["genres"] = movies.get("genres", pd.Series("", index=movies.index)).map(
        lambda g: [p for p in str(g).split("|") if p])
    tags_path = src / "tags.csv"
    tags = pd.DataFrame(columns=["item_id", "tag"])
    if tags_path.exists():
        tags = pd.read_csv(tags_path, dtype=str, keep_default_na=False).rename(
            columns={"movieId": "item_id"})
    items = normalize_items(_items_frame(movies, _tags_by_item(tags)),
                            Locator(str(movies_path), "line", 2))
    events = check_references(events, "item_id", set(items.frame["item_id"]),
                              Locator(str(src / "ratings.csv"), "line", 2), "movies.csv")
    user_ids = pd.DataFrame({"user_id": sorted(events.frame["user_id"].unique())})
    users = normalize_users(user_ids, Locator(str(src / "ratings.csv"), "user", 1))
    return events, items, users


def _read_100k(src: Path) -> tuple[Validated, Validated, Validated]:
    data = pd.read_csv(src / "u.data", sep="\t", header=None, dtype=str,
                       names=["user_id", "item_id", "value", "timestamp"],
                       keep_default_na=False)
    data["event_type"] = "rating"
    events = normalize_events(data, Locator(str(src / "u.data"), "line", 1))

    genres = list(ML100K_GENRES)
    genre_path = src / "u.genre"
    if genre_path.exists():
        listed = pd.read_csv(genre_path, sep="|", header=None, dtype=str,
                             keep_default_na=False, encoding="latin-1")
        genres = [g for g in listed[0] if g]
    item_path = src / "u.item"
    if not item_path.exists():
        raise DataValidationError([Issue(str(item_path), "whole file", "-",
                                         "file not found (ml-100k layout needs it)")])
    columns = ["item_id", "title", "release_date", "video_release_date", "url", *genres]
    movies = pd.read_csv(item_path, sep="|", header=None, names=columns, dtype=str,
                         keep_default_na=False, encoding="latin-1")
    movies["genres"] = [[g for g in genres if row[g] == "1"]
                        for _, row in movies[genres].iterrows()]
    items = normalize_items(_items_frame(movies, {}), Locator(str(item_path), "line", 1))
    events = check_references(events, "item_id", set(items.frame["item_id"]),
                              Locator(str(src / "u.data"), "line", 1), "u.item")

    user_path = src / "u.user"
    if user_path.exists():
        users_raw = pd.read_csv(user_path, sep="|", header=None, dtype=str,
                                keep_default_na=False,
                                names=["user_id", "age", "gender", "occupation", "zip_code"])
        users_raw["age"] = pd.to_numeric(users_raw["age"], errors="coerce")
        users = normalize_users(users_raw, Locator(str(user_path), "line", 1))
    else:
        users = normalize_users(
            pd.DataFrame({"user_id": sorted(events.frame["user_id"].unique())}),
            Locator(str(src / "u.data"), "user", 1))
    return events, items, users


def read_movielens(src: Path) -> tuple[Validated, Validated, Validated]:
    """Validated events, items and users from a MovieLens directory."""
    if not src.is_dir():
        raise DataValidationError([Issue(str(src), "whole directory", "-",
                                         "not a directory")])
    layout = detect_layout(src)
    return _read_latest(src) if layout == "ml-latest" else _read_100k(src)


def segment_note(users: pd.DataFrame) -> str:
    """One line describing user attributes found, for the import summary."""
    attrs = users["attributes"].dropna()
    keys = sorted({k for a in attrs for k in json.loads(a)})
    return f"user attributes: {', '.join(keys)}" if keys else "no user attributes"
