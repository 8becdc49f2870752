"""From raw window counters and the attempt itself to the model's feature matrix.

Pure numpy, shared by training, batch prediction and the online service: whatever produced the
counters (offline SQL or the Redis reader), the model sees the same numbers. Rates are shrunk
toward their parent family's lifetime rate, so a BIN x route seen twice does not claim a 0 %
or 100 % approval rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from approvals import codes
from approvals.features.definitions import CATEGORICALS, FAMILIES, UTC_OFFSET_HOURS

Columns = Mapping[str, np.ndarray]
MIN_CATEGORY_COUNT = 20
EPS = 1e-4


@dataclass(frozen=True)
class FeatureSpec:
    """What the model needs to turn counters and attempts into features (saved in packages).

    Attributes:
        global_rate: approval rate of the training data, the prior of top-level families.
        vocab: categorical column -> known values (index = LightGBM category code).
        names: feature names in matrix column order.
        state_end: ISO timestamp up to which the package's feature state holds outcomes.
    """

    global_rate: float
    vocab: dict[str, list[str]]
    names: list[str] = field(default_factory=list)
    state_end: str | None = None

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Load from :meth:`to_json` output."""
        raw: dict[str, Any] = json.loads(text)
        return cls(**raw)

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical features, as LightGBM needs them."""
        return [c for c in CATEGORICALS if c in self.names]


def map_values(values: np.ndarray, fn: Any, dtype: Any = float) -> np.ndarray:
    """Apply ``fn`` once per distinct value (as text; ``None`` and "" mean missing).

    A dictionary of the distinct values, not a sort: as fast on millions of rows with few
    distinct values, and without ``np.unique``'s fixed cost on the few rows of a request.
    """
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    keys = ["" if v is None else str(v) for v in items]
    table = {k: fn(k if k != "" else None) for k in dict.fromkeys(keys)}
    return np.array([table[k] for k in keys], dtype=dtype)


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds, clipped away from 0 and 1."""
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))


def _shrunk(a: np.ndarray, n: np.ndarray, prior: np.ndarray | float, strength: float) -> np.ndarray:
    return (a + strength * prior) / (n + strength)


def aggregate_features(
    counts: Columns, attempts: Columns, global_rate: float
) -> dict[str, np.ndarray]:
    """Shrunk rates, volumes, outage shares and card history from the window counters."""
    out: dict[str, np.ndarray] = {}
    life_rate: dict[str, np.ndarray] = {}
    size = len(next(iter(counts.values())))
    for family in FAMILIES:
        prior = life_rate[family.parent] if family.parent else np.full(size, global_rate)
        for window in family.windows:
            base = f"{family.name}_{window.name}"
            n, a = counts[f"{base}_n"], counts[f"{base}_a"]
            rate = _shrunk(a, n, prior, family.strength)
            out[f"{base}_rate"] = rate
            out[f"{base}_logn"] = np.log1p(n)
            if "outage" in family.counters and not window.lifetime:
                out[f"{base}_outage"] = counts[f"{base}_outage"] / (n + 1.0)
            if window.lifetime:
                life_rate[family.name] = rate
        for window in family.windows[:-1]:
            base = f"{family.name}_{window.name}"
            out[f"{base}_vs_life"] = logit(out[f"{base}_rate"]) - logit(life_rate[family.name])
    out.update(_card_features(counts, attempts))
    return out


def _card_features(counts: Columns, attempts: Columns) -> dict[str, np.ndarray]:
    n_life, n_day = counts["card_life_n"], counts["card_24h_n"]
    log_amount = np.log1p(attempts["amount"].astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_log = np.where(n_life > 0, counts["card_life_slog"] / n_life, np.nan)
        t_us = attempts["event_time"].astype("datetime64[us]").astype(np.int64)
        minutes = (t_us - counts["card_last_us"]) / 60e6
    with np.errstate(invalid="ignore", divide="ignore"):
        approved_log = counts["card_life_aslog"] / counts["card_life_a"]
        nsf_log = counts["card_life_nsfslog"] / counts["card_life_nsf"]
    return {
        "amount_vs_card_approved": log_amount - approved_log,
        "amount_vs_card_nsf": log_amount - nsf_log,
        "card_24h_declines": n_day - counts["card_24h_a"],
        "card_24h_nsf": counts["card_24h_nsf"],
        "card_life_hard": counts["card_life_hard"],
        "card_life_declines": n_life - counts["card_life_a"],
        "amount_vs_card": log_amount - mean_log,
        "card_minutes_since_last": minutes,
    }


def _local_hour(hours_utc: np.ndarray, countries: np.ndarray) -> np.ndarray:
    offsets = map_values(countries, lambda c: UTC_OFFSET_HOURS.get(c, 0.0))
    return np.asarray((hours_utc + offsets) % 24, dtype=float)


def attempt_features(attempts: Columns) -> dict[str, np.ndarray]:
    """Features of the attempt itself: amount, cross-border, local time, retry context."""
    t = attempts["event_time"].astype("datetime64[us]")
    hours_utc = (t - t.astype("datetime64[D]")).astype(np.int64) / 3.6e9
    local = _local_hour(hours_utc, attempts["merchant_country"])
    days = t.astype("datetime64[D]").astype(np.int64)
    prev = attempts["previous_response_code"]
    return {
        "log_amount": np.log1p(attempts["amount"].astype(float)),
        "cross_border": (attempts["merchant_country"] != attempts["issuer_country"]).astype(float),
        "local_hour": local,
        "issuer_local_hour": _local_hour(hours_utc, attempts["issuer_country"]),
        "day_of_week": ((days + 3) % 7).astype(float),  # 1970-01-01 was a Thursday
        "attempt_number": attempts["attempt_number"].astype(float),
        "network_token": attempts["network_token"].astype(float),
        "prev_hard": map_values(prev, lambda c: codes.classify(c) is codes.CodeClass.HARD),
        "prev_outage": map_values(prev, lambda c: c is not None and codes.is_outage(c)),
    }


def categorical_values(attempts: Columns, counts: Columns) -> dict[str, np.ndarray]:
    """Raw string values of every categorical feature (``None`` when absent)."""
    prev = attempts["previous_response_code"]
    values = {c: attempts[c] for c in CATEGORICALS if c in attempts}
    values["prev_code"] = prev
    values["prev_class"] = map_values(prev, lambda c: codes.classify(c).value, dtype=object)
    values["card_last_code"] = counts["card_last_code"]
    size = len(prev)
    values.setdefault("merchant_advice_code", np.full(size, None, dtype=object))
    return values


def fit_vocab(values: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """Categories seen at least :data:`MIN_CATEGORY_COUNT` times, most frequent first."""
    vocab: dict[str, list[str]] = {}
    for name in CATEGORICALS:
        column = np.asarray([v if v is not None else "" for v in values[name]], dtype=str)
        uniq, count = np.unique(column[column != ""], return_counts=True)
        keep = uniq[count >= MIN_CATEGORY_COUNT][np.argsort(-count[count >= MIN_CATEGORY_COUNT])]
        vocab[name] = [str(v) for v in keep]
    return vocab


def encode(
    values: Mapping[str, np.ndarray], vocab: Mapping[str, list[str]]
) -> dict[str, np.ndarray]:
    """Category codes as floats; unknown or missing values become NaN (LightGBM: missing)."""
    out = {}
    for name in CATEGORICALS:
        index = {v: float(i) for i, v in enumerate(vocab[name])}
        out[name] = map_values(values[name], lambda v, ix=index: ix.get(v, np.nan))
    return out


def feature_columns(counts: Columns, attempts: Columns, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Every model feature as a named column (numeric and encoded categoricals)."""
    columns = aggregate_features(counts, attempts, spec.global_rate)
    columns.update(attempt_features(attempts))
    columns.update(encode(categorical_values(attempts, counts), spec.vocab))
    return columns


def matrix(counts: Columns, attempts: Columns, spec: FeatureSpec) -> np.ndarray:
    """The feature matrix in ``spec.names`` order (rows = attempts)."""
    columns = feature_columns(counts, attempts, spec)
    return np.column_stack([columns[name] for name in spec.names]).astype(np.float64)
