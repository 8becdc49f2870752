"""Point-in-time correctness of the offline features, and state equivalence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from approvals import codes
from approvals.contract import validate_frame
from approvals.features import counts_for
from approvals.features.definitions import FAMILIES, W7D, Window
from approvals.features.state import build_state
from tests.approvals.factories import random_attempts


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return validate_frame(random_attempts(3000, seed=3, days=25), labels=True)


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], rows: np.ndarray) -> list[str]:
    differ = []
    for key in a:
        left, right = a[key][rows], b[key][rows]
        if left.dtype == object:
            equal = all(x == y for x, y in zip(left, right, strict=True))
        else:
            equal = np.allclose(np.nan_to_num(left), np.nan_to_num(right))
        if not equal:
            differ.append(key)
    return differ


def test_changing_later_outcomes_leaves_earlier_features_unchanged(data: pd.DataFrame) -> None:
    # Given features computed on the data, and the same data with every later outcome flipped
    cut = data["event_time"].iloc[len(data) // 2]
    later = (data["event_time"] >= cut).to_numpy()
    flipped = data.copy()
    flipped.loc[later, "approved"] = ~flipped.loc[later, "approved"]
    flipped.loc[later, "response_code"] = np.where(flipped.loc[later, "approved"], "00", "91")
    # When features are recomputed
    before, after = counts_for(data, data), counts_for(flipped, flipped)
    # Then no feature of an earlier attempt moved
    assert _same(before, after, np.flatnonzero(~later)) == [], "a feature looked into the future"


def test_deleting_later_rows_leaves_earlier_features_unchanged(data: pd.DataFrame) -> None:
    cut = data["event_time"].iloc[2000]
    early = data.loc[data["event_time"] < cut].reset_index(drop=True)
    full, truncated = counts_for(data, data), counts_for(early, early)
    rows = np.arange(len(early))
    assert _same({k: v[rows] for k, v in full.items()}, truncated, rows) == []


def _brute_force(
    data: pd.DataFrame, row: int, keys: tuple[str, ...], window: Window
) -> tuple[int, int]:
    t = data["event_time"].iloc[row]
    same = np.ones(len(data), bool)
    for k in keys:
        same &= (data[k] == data[k].iloc[row]).to_numpy()
    before = (data["event_time"] < t).to_numpy().copy()
    if not window.lifetime:
        tile = pd.Timedelta(seconds=window.tile)
        start = t.floor(tile) - pd.Timedelta(seconds=window.seconds)
        before &= (data["event_time"] >= start).to_numpy()
    mask = same & before
    return int(mask.sum()), int(data["approved"].to_numpy()[mask].sum())


def test_counts_match_a_brute_force_count(data: pd.DataFrame) -> None:
    counts = counts_for(data, data)
    rng = np.random.default_rng(1)
    for row in rng.choice(len(data), 40, replace=False):
        for family in FAMILIES:
            for window in family.windows:
                n, a = _brute_force(data, row, family.keys, window)
                base = f"{family.name}_{window.name}"
                assert counts[f"{base}_n"][row] == n, f"{base}_n at row {row}"
                assert counts[f"{base}_a"][row] == a, f"{base}_a at row {row}"


def test_hard_and_outage_counters_follow_the_taxonomy(data: pd.DataFrame) -> None:
    counts = counts_for(data, data)
    last = len(data) - 1
    card = data["card_fingerprint"].iloc[last]
    earlier = data.loc[(data["card_fingerprint"] == card) & (data.index < last)]
    hard = earlier["response_code"].map(codes.is_hard).sum()
    assert counts["card_life_hard"][last] == hard, "hard declines counted from codes.yaml"


def test_state_plus_recent_history_equals_full_history(data: pd.DataFrame) -> None:
    # Given a state compacted from the first 60 % and the rest as history
    split = int(len(data) * 0.6)
    old, recent = data.iloc[:split], data.iloc[split:].reset_index(drop=True)
    state = build_state(old)
    assert state.rows < len(old) * len(FAMILIES), "old rows were compacted"
    # When the recent rows are featurized both ways
    full = counts_for(data, data)
    via_state = counts_for(recent, recent, state)
    # Then the counters agree exactly
    rows = np.arange(split, len(data))
    full_recent = {k: v[rows] for k, v in full.items()}
    assert _same(full_recent, via_state, np.arange(len(recent))) == []


def test_compaction_keeps_window_counts_exact() -> None:
    # 40 days of data: compaction folds everything older than the longest window
    frame = validate_frame(random_attempts(2500, seed=5, days=40), labels=True)
    split = int(len(frame) * 0.8)
    state = build_state(frame.iloc[:split])
    late = frame.iloc[split:].reset_index(drop=True)
    assert (late["event_time"] - frame["event_time"].iloc[split - 1]).min() >= pd.Timedelta(0)
    full = counts_for(frame, frame)
    via_state = counts_for(late, late, state)
    rows = np.arange(split, len(frame))
    assert _same({k: v[rows] for k, v in full.items()}, via_state, np.arange(len(late))) == []
    assert W7D.seconds < 40 * 86400, "the data set is longer than the longest window"
