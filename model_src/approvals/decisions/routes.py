"""Route ranking: the candidate routes of an attempt, best expected value first.

Pure functions shared by the offline policy evaluation and the BentoML service (numpy and
pydantic only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from approvals.decisions.costs import CostConfig, checked_probability, expected_value


@dataclass(frozen=True)
class RankedRoute:
    """One candidate route of an attempt, with its approval probability and value."""

    route_id: str
    p_approve: float
    expected_value: float


def _check_amount(amount: float) -> float:
    if not (math.isfinite(amount) and amount >= 0):
        raise ValueError(f"amount must be finite and non-negative, got {amount!r}")
    return float(amount)


def rank_routes(
    amount: float, route_probabilities: Mapping[str, float], costs: CostConfig
) -> list[RankedRoute]:
    """Rank candidate routes of a first attempt by expected value.

    Args:
        amount: attempt amount in settlement currency.
        route_probabilities: route id -> calibrated approval probability on that route.
        costs: cost configuration (margin and per-route fees).

    Returns:
        All routes, best first: by expected value, then probability, then route id.

    Raises:
        ValueError: a probability outside [0, 1] or a negative amount.
    """
    amount = _check_amount(amount)
    checked = {r: checked_probability(p, f"route {r}") for r, p in route_probabilities.items()}
    ranked = [
        RankedRoute(r, p, expected_value(p, amount, r, costs, retry=False))
        for r, p in checked.items()
    ]
    return sorted(ranked, key=lambda x: (-x.expected_value, -x.p_approve, x.route_id))
