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
from functools import cached_property
from itertools import repeat
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

    @cached_property
    def vocab_index(self) -> dict[str, dict[str, float]]:
        """:func:`vocab_index` of the vocabulary, built once per spec."""
        return vocab_index(self.vocab)

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
    kinds = set(map(type, items))
    if kinds <= {str}:
        keys = items
    elif kinds <= {str, type(None)}:
        keys = [v or "" for v in items]
    else:
        keys = ["" if v is None else str(v) for v in items]
    table = {k: fn(k if k != "" else None) for k in dict.fromkeys(keys)}
    return np.fromiter(map(table.__getitem__, keys), dtype=dtype, count=len(keys))


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds, clipped away from 0 and 1."""
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))


@dataclass(frozen=True)
class _Rates:
    """Every (family, window) counter pair as one row of a matrix, computed level by level.

    Rates shrink toward the parent family's lifetime rate, so families are computed in levels
    (top-level families first, then their children); within a level every row is one numpy
    operation instead of one per family and window.
    """

    bases: list[str]  # "<family>_<window>" of each row
    strength: np.ndarray  # (rows, 1) pseudo-counts
    levels: list[tuple[np.ndarray, np.ndarray]]  # (rows, row of each one's parent life rate or -1)
    life_row: np.ndarray  # row of each row's own family's lifetime rate
    outage: list[int]  # rows with an outage share (finite windows of families counting outages)
    vs_life: list[int]  # rows compared with their family's lifetime rate


def _plan_rates() -> _Rates:
    rows = [(f, w) for f in FAMILIES for w in f.windows]
    bases = [f"{f.name}_{w.name}" for f, w in rows]
    life = {f.name: bases.index(f"{f.name}_{w.name}") for f in FAMILIES for w in f.windows
            if w.lifetime}  # fmt: skip
    depth: dict[str, int] = {}
    while len(depth) < len(FAMILIES):
        for f in FAMILIES:
            if f.name not in depth and (f.parent is None or f.parent in depth):
                depth[f.name] = 0 if f.parent is None else depth[f.parent] + 1
    levels = []
    for level in sorted(set(depth.values())):
        mine = [i for i, (f, _) in enumerate(rows) if depth[f.name] == level]
        parents = [life[rows[i][0].parent] if rows[i][0].parent else -1 for i in mine]  # type: ignore[index]
        levels.append((np.array(mine, dtype=np.intp), np.array(parents, dtype=np.intp)))
    return _Rates(
        bases=bases,
        strength=np.array([[f.strength] for f, _ in rows]),
        levels=levels,
        life_row=np.array([life[f.name] for f, _ in rows], dtype=np.intp),
        outage=[i for i, (f, w) in enumerate(rows) if "outage" in f.counters and not w.lifetime],
        vs_life=[i for i, (f, w) in enumerate(rows) if w != f.windows[-1]],
    )


_RATES = _plan_rates()


def aggregate_features(
    counts: Columns, attempts: Columns, global_rate: float
) -> dict[str, np.ndarray]:
    """Shrunk rates, volumes, outage shares and card history from the window counters."""
    plan = _RATES
    n = np.array([counts[f"{base}_n"] for base in plan.bases], dtype=np.float64)
    a = np.array([counts[f"{base}_a"] for base in plan.bases], dtype=np.float64)
    n = n.reshape(len(plan.bases), -1)
    a = a.reshape(n.shape)
    rate = np.empty_like(n)
    for rows, parents in plan.levels:
        prior = np.where(parents[:, None] >= 0, rate[parents], global_rate)
        strength = plan.strength[rows]
        rate[rows] = (a[rows] + strength * prior) / (n[rows] + strength)
    logn = np.log1p(n)
    out: dict[str, np.ndarray] = {}
    for i, base in enumerate(plan.bases):
        out[f"{base}_rate"] = rate[i]
        out[f"{base}_logn"] = logn[i]
    for i in plan.outage:
        base = plan.bases[i]
        out[f"{base}_outage"] = counts[f"{base}_outage"] / (n[i] + 1.0)
    if plan.vs_life:
        rows = np.array(plan.vs_life, dtype=np.intp)
        vs = logit(rate[rows]) - logit(rate[plan.life_row[rows]])
        for k, i in enumerate(plan.vs_life):
            out[f"{plan.bases[i]}_vs_life"] = vs[k]
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


def vocab_index(vocab: Mapping[str, list[str]]) -> dict[str, dict[str, float]]:
    """Categorical column -> value -> LightGBM category code (the position in ``vocab``)."""
    return {name: {v: float(i) for i, v in enumerate(vocab[name])} for name in CATEGORICALS}


def encode(
    values: Mapping[str, np.ndarray], index: Mapping[str, Mapping[str, float]]
) -> dict[str, np.ndarray]:
    """Category codes as floats; unknown or missing values become NaN (LightGBM: missing)."""
    return {name: _codes(values[name], index[name]) for name in CATEGORICALS}


def _codes(values: np.ndarray, index: Mapping[str, float]) -> np.ndarray:
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if set(map(type, items)) <= {str, type(None)}:
        # the usual case, looked up in C: "" and None are never categories (see fit_vocab)
        return np.fromiter(map(index.get, items, repeat(np.nan)), dtype=float, count=len(items))
    return map_values(values, lambda v: index.get(v, np.nan))


def feature_columns(counts: Columns, attempts: Columns, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Every model feature as a named column (numeric and encoded categoricals)."""
    columns = aggregate_features(counts, attempts, spec.global_rate)
    columns.update(attempt_features(attempts))
    columns.update(encode(categorical_values(attempts, counts), spec.vocab_index))
    return columns


def matrix(counts: Columns, attempts: Columns, spec: FeatureSpec) -> np.ndarray:
    """The feature matrix in ``spec.names`` order (rows = attempts)."""
    columns = feature_columns(counts, attempts, spec)
    by_feature = np.array([columns[name] for name in spec.names], dtype=np.float64)
    return np.ascontiguousarray(by_feature.reshape(len(spec.names), -1).T)
