"""Costs of authorization attempts, expected value, and value-maximising thresholds.

Numpy and pydantic only: the serving image imports this module. The value of acting on an
attempt (sending it, or reattempting it) is::

    p * merchant_margin * amount - attempt_fee(route) - retry_penalty (reattempts only)
      - scheme_reattempt_fee (only for reattempts that break the scheme rules)

against zero for not acting.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from approvals.config import read_config

DEFAULT_COSTS = "costs.yaml"

Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class AttemptFees(BaseModel):
    """Authorization fee per attempt: per route, with a default for unlisted routes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Money
    by_route: dict[str, Money] = Field(default_factory=dict)


class CostConfig(BaseModel):
    """Money side of the decisions; see ``data/costs.yaml`` for the meaning of each key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency_note: str = Field(min_length=1)
    merchant_margin: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    attempt_fee: AttemptFees
    retry_penalty: Money
    scheme_reattempt_fee: Money

    def fee(self, route_id: str) -> float:
        """Attempt fee of one route (the default fee for routes not listed)."""
        return self.attempt_fee.by_route.get(route_id, self.attempt_fee.default)

    def fees(self, route_ids: npt.ArrayLike) -> np.ndarray:
        """Attempt fees of many routes, vectorised over the distinct route ids."""
        routes = np.asarray(route_ids, dtype=object).astype(str)
        unique, inverse = np.unique(routes, return_inverse=True)
        return np.array([self.fee(r) for r in unique], dtype=np.float64)[inverse]


def load_costs(path: str | os.PathLike[str] | None = None) -> CostConfig:
    """Load a costs file (``None``: the packaged ``data/costs.yaml`` defaults).

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (names the key).
    """
    return read_config(CostConfig, path, DEFAULT_COSTS)


def checked_probability(p: object, what: str) -> float:
    """``p`` as a float, or ValueError naming ``what`` when it is not within [0, 1]."""
    try:
        value = float(p)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what}: probability must be within [0, 1], got {p!r}")
    return value


def expected_value(
    p: npt.ArrayLike,
    amount: npt.ArrayLike,
    route_id: str | npt.ArrayLike,
    costs: CostConfig,
    *,
    retry: bool | npt.ArrayLike,
    breaks_rules: bool | npt.ArrayLike = False,
) -> Any:
    """Expected value of acting on attempts, against not acting (value 0).

    Args:
        p: approval probability (scalar or array).
        amount: amount in settlement currency (scalar or array).
        route_id: route of the attempt (one id, or one per row).
        costs: the cost configuration.
        retry: the attempt is a reattempt of a declined payment (adds the retry penalty).
        breaks_rules: the reattempt breaks a scheme rule (adds the scheme fee).

    Returns:
        A float when every input is a scalar, otherwise a numpy array (broadcast).
    """
    pa, amt = np.asarray(p, dtype=np.float64), np.asarray(amount, dtype=np.float64)
    route = np.asarray(route_id, dtype=object)
    fee = costs.fees(route.ravel()).reshape(route.shape)
    value = (
        pa * costs.merchant_margin * amt
        - fee
        - np.asarray(retry, dtype=np.float64) * costs.retry_penalty
        - np.asarray(breaks_rules, dtype=np.float64) * costs.scheme_reattempt_fee
    )
    return float(value) if np.ndim(value) == 0 else value


@dataclass(frozen=True)
class ThresholdChoice:
    """The value-maximising threshold on a labelled split and what it trades off.

    Values are realised on the split; ``*_per_attempt`` divides by every attempt in the split.
    ``threshold`` above every probability means acting on nothing is best.
    """

    threshold: float
    n: int
    value_total: float
    value_per_attempt: float
    value_all_total: float
    value_all_per_attempt: float
    value_none_total: float
    value_none_per_attempt: float
    precision: float | None
    recall: float | None
    share_acted: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return asdict(self)


def _realised(y: np.ndarray, amount: np.ndarray, fee: np.ndarray, costs: CostConfig) -> np.ndarray:
    return y * costs.merchant_margin * amount - fee


def _best_cut(p_sorted: np.ndarray, cum: np.ndarray) -> int:
    """Index of the last row acted on (-1: none), cutting only between distinct p values."""
    ends = np.flatnonzero(np.append(p_sorted[1:] != p_sorted[:-1], True))
    best = ends[np.argmax(cum[ends])] if ends.size else -1
    return int(best) if ends.size and cum[best] > 0 else -1


def choose_threshold(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    amount: npt.ArrayLike,
    route_ids: npt.ArrayLike,
    costs: CostConfig,
    *,
    retry: bool = True,
) -> ThresholdChoice:
    """Pick the probability threshold that maximises realised value on a calibration split.

    Acting on an attempt with ``p >= threshold`` yields ``y * margin * amount - fee - penalty``
    (penalty only when ``retry``); not acting yields 0.

    Raises:
        ValueError: lengths differ, labels are not 0/1, probabilities are outside [0, 1] or
            amounts are negative or not finite.
    """
    ya, pa, amt, routes = _threshold_inputs(y, p, amount, route_ids)
    fee = costs.fees(routes) + (costs.retry_penalty if retry else 0.0)
    order = np.argsort(-pa, kind="stable")
    cum = np.cumsum(_realised(ya, amt, fee, costs)[order])
    cut = _best_cut(pa[order], cum)
    acted = order[: cut + 1]
    threshold = float(pa[order][cut]) if cut >= 0 else _above(pa)
    return _choice(ya, acted, threshold, float(cum[cut]) if cut >= 0 else 0.0, float(cum[-1]))


def _above(pa: np.ndarray) -> float:
    return float(np.nextafter(pa.max(), math.inf)) if pa.size else 1.0


def _choice(
    ya: np.ndarray, acted: np.ndarray, threshold: float, total: float, total_all: float
) -> ThresholdChoice:
    n, hits, positives = ya.size, float(ya[acted].sum()), float(ya.sum())
    return ThresholdChoice(
        threshold=threshold,
        n=n,
        value_total=total,
        value_per_attempt=total / n,
        value_all_total=total_all,
        value_all_per_attempt=total_all / n,
        value_none_total=0.0,
        value_none_per_attempt=0.0,
        precision=hits / acted.size if acted.size else None,
        recall=hits / positives if positives else None,
        share_acted=acted.size / n,
    )


def _threshold_inputs(
    y: npt.ArrayLike, p: npt.ArrayLike, amount: npt.ArrayLike, route_ids: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ya = np.asarray(y, dtype=np.float64).ravel()
    pa = np.asarray(p, dtype=np.float64).ravel()
    amt = np.asarray(amount, dtype=np.float64).ravel()
    routes = np.asarray(route_ids, dtype=object).ravel()
    if not ya.size == pa.size == amt.size == routes.size:
        sizes = f"y={ya.size}, p={pa.size}, amount={amt.size}, route_ids={routes.size}"
        raise ValueError(f"inputs differ in length: {sizes}")
    if ya.size == 0:
        raise ValueError("no rows to choose a threshold on")
    if not np.isin(ya, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1 (or bool)")
    if not (np.isfinite(pa).all() and (pa >= 0).all() and (pa <= 1).all()):
        raise ValueError("probabilities must be finite and within [0, 1]")
    if not (np.isfinite(amt).all() and (amt >= 0).all()):
        raise ValueError("amounts must be finite and non-negative")
    return ya, pa, amt, routes
