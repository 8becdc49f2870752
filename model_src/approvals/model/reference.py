"""The training reference: what inputs, features, predictions and approval rates looked like.

Written into the model package (``reference.json``) at training time and read back by
:mod:`approvals.monitoring`, which compares a window of the decision log with it. It holds:

- **bins** of every model feature, every contract input column and the predictions, over the
  reference rows (the calibration and test splits: the latest, out-of-sample part of training):
  numeric columns in deciles (equal-count bins; ties merge bins), categorical ones as their top
  20 values plus ``other``, and one bin for missing values; counted over the whole reference
  and per UTC hour of day (:mod:`approvals.model.reference_bins`);
- for each, the **chunk variability**: the reference rows cut into consecutive 1 h, 6 h and
  24 h chunks, each chunk's PSI and chi-square against the reference matched to its hours
  (NannyML's way of learning how much a metric moves on its own, so that features clustered
  by entity, such as a route's 24 h rate, do not alert on every window);
- per issuer country, route and issuer country x route the **approval counts** of all training
  rows by hour of day and first try or retry (:mod:`approvals.model.reference_rates`), and per
  merchant with enough payments the quintile bins of its **amounts** (one per payment);
- the test split's **reliability table** and ECE.

Pure numpy and pydantic (pandas only inside the builder): the serving image can load a package
without the training libraries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from approvals.features.definitions import CATEGORICALS, FAMILIES
from approvals.model import metrics
from approvals.model.reference_bins import Bins, ChunkStats, chi_square, make_bins, psi
from approvals.model.reference_rates import RateCells, build_rates

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REFERENCE_FILE", "Bins", "ChunkStats", "TrainingReference", "build_reference", "chi_square",
    "feature_group", "psi",
]  # fmt: skip

REFERENCE_FILE = "reference.json"
FORMAT_VERSION = 1
SEGMENT_BINS = 5  # quintiles of a merchant's amounts: a few rows per bin in a short window
MIN_SEGMENT_ROWS = 200
MAX_SEGMENTS = 500
INPUT_NUMERIC = ("amount", "attempt_number")
INPUT_CATEGORICAL = (
    "issuer_country", "merchant_country", "route_id", "mcc", "channel", "three_ds",
    "card_brand", "card_type", "currency", "network_token", "merchant_id",
)  # fmt: skip
CALENDAR = frozenset({"local_hour", "issuer_local_hour", "day_of_week"})
HISTORY_PREFIXES = (*(f"{f.name}_" for f in FAMILIES), "amount_vs_card")


class TrainingReference(BaseModel):
    """Everything a monitor compares a decision log with (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    period: tuple[str, str]
    rows: int
    features: dict[str, Bins]
    groups: dict[str, Literal["attempt", "history", "calendar"]]  # of each feature
    inputs: dict[str, Bins]
    prediction: Bins
    prediction_mean: float
    reliability: list[dict[str, Any]]
    ece: float
    rates: dict[str, dict[str, RateCells]]  # dimension -> segment -> its cells
    merchant_amounts: dict[str, Bins]

    def to_json(self) -> str:
        """Serialise to JSON."""
        return self.model_dump_json()

    @classmethod
    def load(cls, path: str | Path) -> TrainingReference:
        """Read ``reference.json``."""
        return cls.model_validate(json.loads(Path(path).read_text()))


def build_reference(
    data: pd.DataFrame,
    x: np.ndarray,
    names: Sequence[str],
    categorical: Sequence[str],
    p: np.ndarray,
    reference_rows: np.ndarray,
    test_rows: np.ndarray,
) -> TrainingReference:
    """The reference of a trained model.

    Args:
        data: the training attempts with labels, in time order.
        x: their feature matrix (columns in ``names`` order).
        names: the model's feature names; ``categorical`` those that are category codes.
        p: the model's calibrated probability of every row.
        reference_rows: rows whose distributions are the reference (calibration + test).
        test_rows: rows of the test split (reliability and ECE).
    """
    rows = data.iloc[reference_rows]
    hours = _hours(rows["event_time"])
    features = {
        name: make_bins(x[reference_rows, j], name in categorical, hours)
        for j, name in enumerate(names)
    }
    inputs = {c: make_bins(rows[c].to_numpy(), False, hours) for c in INPUT_NUMERIC}
    inputs |= {c: make_bins(rows[c].to_numpy(), True, hours) for c in INPUT_CATEGORICAL}
    y_test = data["approved"].to_numpy()[test_rows].astype(float)
    times = rows["event_time"]
    return TrainingReference(
        period=(times.min().isoformat(), times.max().isoformat()),
        rows=len(rows),
        features=features,
        groups={name: feature_group(name) for name in names},
        inputs=inputs,
        prediction=make_bins(p[reference_rows], False, hours),
        prediction_mean=float(np.mean(p[reference_rows])),
        reliability=metrics.reliability_table(y_test, p[test_rows]),
        ece=metrics.ece(y_test, p[test_rows]),
        rates=build_rates(data),
        merchant_amounts=_merchant_amounts(data),
    )


def feature_group(name: str) -> Literal["attempt", "history", "calendar"]:
    """What a feature describes: the attempt itself, past outcomes, or when it happened.

    History features (aggregates of earlier outcomes: rates, counts, outage shares, the card's
    past) move by design as history accumulates and whenever approval rates move; calendar
    features (hour of day, day of week) describe the window rather than the traffic.
    """
    if name in CALENDAR:
        return "calendar"
    if name in CATEGORICALS and name != "card_last_code":
        return "attempt"
    return "history" if name.startswith(HISTORY_PREFIXES) else "attempt"


def _hours(times: pd.Series) -> np.ndarray:
    """Hours since the epoch: chunks fall on UTC multiples of their length, as monitoring
    windows scheduled every hour, 6 hours or day do."""
    t = times.dt.tz_localize(None) if times.dt.tz is not None else times
    us = t.to_numpy().astype("datetime64[us]").astype(np.int64)
    return np.asarray(us / 3.6e9, dtype=np.float64)


def _merchant_amounts(data: pd.DataFrame) -> dict[str, Bins]:
    """Quintile bins of each busy merchant's amounts, one per payment (retries repeat the
    amount of their payment: counting them would count a payment several times)."""
    data = data.drop_duplicates("payment_id")
    counts = data["merchant_id"].value_counts()
    merchants = counts.index[counts >= MIN_SEGMENT_ROWS][:MAX_SEGMENTS]
    amounts = data["amount"].to_numpy(dtype=np.float64)
    by_merchant = data.groupby("merchant_id", sort=False).indices
    return {
        str(m): make_bins(amounts[by_merchant[m]], False, None, SEGMENT_BINS) for m in merchants
    }
