"""The two calibration folds stay even, whatever the user ids are."""

from __future__ import annotations

import zlib

import numpy as np

from models.pipeline import two_folds


def test_two_folds_are_even_even_when_the_ids_share_a_hash_parity() -> None:
    ids = np.array([str(n) for n in range(400) if zlib.crc32(str(n).encode()) % 2 == 0])
    folds = two_folds(ids)
    assert abs(int(folds.sum()) - len(ids) // 2) <= 1
    assert (two_folds(ids[::-1])[::-1] == folds).all()  # by id, not by position
