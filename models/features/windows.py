"""Exact sliding-window counts, emitted only on the days they change.

Batch features are snapshots taken at UTC midnights: the row stamped `T`
describes events strictly before `T`. A window of `w` days over daily counts
changes only on the day after an active day `e` (e+1) and on the day the event
leaves each window (e+1+w), so emitting rows on exactly those days keeps every
point-in-time lookup exact with no row per idle day.

Windows are computed for all entities at once with one sorted key array and
global cumulative sums: the sum over days [s-w, s) of an entity is
C(last key < (entity, s)) - C(last key < (entity, s-w)), which never crosses
into the previous entity because keys are sorted by entity first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
_STRIDE = 1 << 32  # key = entity_index * _STRIDE + day


def day_index(timestamps: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    return ((timestamps - origin) // DAY).to_numpy(dtype=np.int64)


def origin_of(timestamps: pd.Series) -> pd.Timestamp:
    return pd.Timestamp(timestamps.min()).floor("D")


def daily_totals(frame: pd.DataFrame, entity: str, columns: list[str]) -> pd.DataFrame:
    """Sum `columns` per (entity, day); `frame` needs `entity`, `day` and `columns`."""
    return frame.groupby([entity, "day"], sort=True)[columns].sum().reset_index()


def change_days(daily: pd.DataFrame, entity: str, windows: tuple[int, ...],
                last_day: int) -> pd.DataFrame:
    """(entity, day) pairs on which any window's content changes, up to `last_day`."""
    offsets = sorted({1} | {1 + w for w in windows})
    snaps = pd.concat([pd.DataFrame({entity: daily[entity], "day": daily["day"] + off})
                       for off in offsets], ignore_index=True)
    snaps = snaps[snaps["day"] <= last_day].drop_duplicates()
    return snaps.sort_values([entity, "day"], kind="stable").reset_index(drop=True)


def window_sums(daily: pd.DataFrame, snaps: pd.DataFrame, entity: str,
                columns: list[str], windows: tuple[int, ...]) -> pd.DataFrame:
    """For each snapshot (entity, s): sums of `columns` over days [s-w, s) for each w,
    plus the running total over all days before s (`<col>_total`)."""
    codes = {e: n for n, e in enumerate(sorted(daily[entity].unique()))}
    keys = daily[entity].map(codes).to_numpy(np.int64) * _STRIDE + daily["day"].to_numpy()
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    values = daily[columns].to_numpy(dtype=np.float64)[order]
    cum = np.vstack([np.zeros((1, len(columns))), np.cumsum(values, axis=0)])

    snap_code = snaps[entity].map(codes).to_numpy(np.int64)
    snap_day = snaps["day"].to_numpy(np.int64)
    base = snap_code * _STRIDE

    def upto(day: np.ndarray) -> np.ndarray:
        # cumulative sum over this entity's days strictly before `day`
        return cum[np.searchsorted(keys, base + day, side="left")]

    entity_start = cum[np.searchsorted(keys, base, side="left")]
    now = upto(snap_day)
    out = pd.DataFrame({entity: snaps[entity].to_numpy(), "day": snap_day})
    for w in windows:
        summed = now - upto(snap_day - w)
        for n, col in enumerate(columns):
            out[f"{col}_{w}d"] = summed[:, n]
    total = now - entity_start
    for n, col in enumerate(columns):
        out[f"{col}_total"] = total[:, n]
    return out


def last_active_before(daily: pd.DataFrame, snaps: pd.DataFrame, entity: str,
                       mask_column: str | None = None) -> np.ndarray:
    """Day of the entity's last active day strictly before each snapshot (-1 if none).
    With `mask_column`, only days where that column is positive count."""
    active = daily if mask_column is None else daily[daily[mask_column] > 0]
    codes = {e: n for n, e in enumerate(sorted(daily[entity].unique()))}
    keys = np.sort(active[entity].map(codes).to_numpy(np.int64) * _STRIDE
                   + active["day"].to_numpy())
    snap_keys = snaps[entity].map(codes).to_numpy(np.int64) * _STRIDE + snaps["day"].to_numpy()
    if len(keys) == 0:
        return np.full(len(snaps), -1, dtype=np.int64)
    pos = np.searchsorted(keys, snap_keys, side="left") - 1
    prev = np.where(pos >= 0, keys[np.maximum(pos, 0)], -1)
    same_entity = (prev >= 0) & (prev // _STRIDE == snap_keys // _STRIDE)
    return np.where(same_entity, prev % _STRIDE, -1)
