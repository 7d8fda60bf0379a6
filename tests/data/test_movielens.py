"""The MovieLens importer on both layouts, with exact counts on ml-latest-small."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.data.dataset import complete_catalogs, write_dataset
from models.data.movielens import detect_layout, read_movielens, split_title
from models.data.validate import DataValidationError
from tests.conftest import MOVIELENS_SMALL


def _write_ml100k(root: Path, bad_line: str | None = None) -> Path:
    root.mkdir()
    lines = ["196\t242\t3\t881250949", "186\t302\t3\t891717742", "22\t242\t1\t878887116"]
    if bad_line:
        lines.insert(1, bad_line)
    (root / "u.data").write_text("\n".join(lines) + "\n")
    flags = ["0"] * 19
    comedy = flags.copy()
    comedy[5] = "1"
    crime = flags.copy()
    crime[6], crime[16] = "1", "1"
    (root / "u.item").write_bytes((
        "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(comedy) + "\n"
        "302|L.A. Confidential (1997)|01-Jan-1997||http://x|" + "|".join(crime) + "\n"
    ).encode("latin-1"))
    (root / "u.user").write_text("196|49|M|writer|55105\n186|39|F|executive|00000\n"
                                 "22|25|M|writer|40206\n")
    return root


def test_ml100k_layout_is_detected_and_imported(tmp_path: Path) -> None:
    src = _write_ml100k(tmp_path / "ml-100k")
    assert detect_layout(src) == "ml-100k"
    events, items, users = read_movielens(src)
    assert events.issues == items.issues == users.issues == []
    assert list(events.frame["event_type"].unique()) == ["rating"]
    assert sorted(events.frame["item_id"]) == ["242", "242", "302"]
    assert events.frame["timestamp"].min() == pd.Timestamp(878887116, unit="s", tz="UTC")
    kolya = items.frame.set_index("item_id").loc["242"]
    assert (kolya["title"], kolya["year"], kolya["category"]) == ("Kolya", 1996, "Comedy")
    confidential = items.frame.set_index("item_id").loc["302"]
    assert confidential["categories"] == ["Crime", "Thriller"]
    assert users.frame.set_index("user_id").loc["186", "attributes"] == (
        '{"age": 39, "gender": "F", "occupation": "executive", "zip_code": "00000"}')


def test_ml100k_bad_rating_line_is_named(tmp_path: Path) -> None:
    src = _write_ml100k(tmp_path / "ml-100k", bad_line="7\t242\tfive\t881250949")
    events, _, _ = read_movielens(src)
    assert [str(i) for i in events.issues] == [
        f"{src / 'u.data'}: line 2: field 'value': not a number: 'five'"]


def test_rating_for_unknown_movie_is_an_issue(tmp_path: Path) -> None:
    src = tmp_path / "ml"
    src.mkdir()
    (src / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
                                     "1,999,4.0,964982703\n")
    (src / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story (1995)",'
                                    "Adventure|Animation\n")
    events, items, _ = read_movielens(src)
    assert [str(i) for i in events.issues] == [
        f"{src / 'ratings.csv'}: line 3: field 'item_id': '999' is not in movies.csv"]
    assert items.frame.iloc[0]["categories"] == ["Adventure", "Animation"]


def test_not_a_movielens_directory(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="not a MovieLens directory"):
        read_movielens(tmp_path)


@pytest.mark.parametrize(("raw", "title", "year"), [
    ("Heat (1995)", "Heat", 1995),
    ("Babylon 5", "Babylon 5", None),
    ("Cosmos (1980) ", "Cosmos", 1980),
    ("Fawlty Towers (1975-1979)", "Fawlty Towers", 1975),
])
def test_split_title(raw: str, title: str, year: int | None) -> None:
    assert split_title(raw) == (title, year)


@pytest.mark.skipif(not (MOVIELENS_SMALL / "ratings.csv").exists(),
                    reason="ml-latest-small is not on this machine")
def test_ml_latest_small_exact_counts(tmp_path: Path) -> None:
    events, items, users = read_movielens(MOVIELENS_SMALL)
    assert events.issues == items.issues == users.issues == []
    item_frame, user_frame = complete_catalogs(events.frame, items.frame, users.frame)
    dataset = write_dataset(tmp_path, events.frame, item_frame, user_frame)
    assert len(dataset.events) == 100_836
    assert (dataset.events["event_type"] == "rating").all()
    assert dataset.events["user_id"].nunique() == len(dataset.users) == 610
    assert len(dataset.items) == 9_742
    # IDs stay verbatim: movieId 318 is "318", with its genres, year and tags.
    shawshank = dataset.items.set_index("item_id").loc["318"]
    assert shawshank["title"] == "Shawshank Redemption, The" and shawshank["year"] == 1994
    assert list(shawshank["categories"]) == ["Crime", "Drama"]
    assert "prison" in list(shawshank["tags"])
    ratings = dataset.events[dataset.events["item_id"] == "318"]["value"]
    assert len(ratings) == 317 and ratings.between(0.5, 5.0).all()
