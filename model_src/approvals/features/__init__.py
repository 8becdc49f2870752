"""Features: definitions (one place), offline DuckDB SQL, derivation shared with serving."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from approvals.features.definitions import FAMILIES
from approvals.features.derive import FeatureSpec, matrix
from approvals.features.state import FeatureState

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FAMILIES", "FeatureSpec", "FeatureState", "counts_for", "frame_columns", "matrix"]

ATTEMPT_FIELDS = (
    "event_time",
    "amount",
    "merchant_country",
    "issuer_country",
    "attempt_number",
    "network_token",
    "previous_response_code",
    "card_brand",
    "card_type",
    "channel",
    "three_ds",
    "route_id",
    "mcc",
    "currency",
    "merchant_advice_code",
)


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The attempt columns feature derivation reads, as numpy arrays."""
    cols = {c: frame[c].to_numpy() for c in ATTEMPT_FIELDS if c in frame.columns}
    for name in ("previous_response_code", "merchant_advice_code"):
        if name in cols:
            values = [None if v is None or isinstance(v, float) else str(v) for v in cols[name]]
            cols[name] = np.array(values, dtype=object)
    return cols


def counts_for(
    queries: pd.DataFrame,
    events: pd.DataFrame | None,
    state: FeatureState | None = None,
    memory_limit: str = "4GB",
) -> dict[str, np.ndarray]:
    """Point-in-time counters for ``queries`` over ``state`` plus labelled ``events``.

    Only outcomes strictly before each query's ``event_time`` count, so a query's own label
    (if it is also among the events) never reaches its own features.
    """
    from approvals.features.offline import point_in_time_counts

    if events is None:
        events = _no_events(queries)
    tables = state.tables if state is not None else None
    return point_in_time_counts(events, queries, tables, memory_limit)


def _no_events(queries: pd.DataFrame) -> pd.DataFrame:
    empty = queries.iloc[:0].copy()
    empty["approved"] = np.array([], dtype=bool)
    empty["response_code"] = np.array([], dtype=object)
    return empty
