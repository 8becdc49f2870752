"""Counterfactual truth for offline policy evaluation: other routes, other retries."""

from __future__ import annotations

import numpy as np

from approvals.simulate import dynamics as dyn
from approvals.simulate.chains import Chains, Deaths, attempt_probs

Array = np.ndarray
RETRY_DELAYS_H = (0.05, 1.0, 24.0, 72.0, 168.0)


def route_table(model: dyn.Model, deaths: Deaths) -> dict[str, Array]:
    """True approval probability of every first attempt on every route its merchant can use.

    Returns:
        Arrays ``idx`` (payment), ``route`` and ``p``; the primary route's ``p`` is the truth of
        the observed first attempt.
    """
    pay = model.pay
    routes = model.world.merchants.routes[pay.merchant]
    parts: dict[str, list[Array]] = {"idx": [], "route": [], "p": []}
    for slot in range(routes.shape[1]):
        idx = np.flatnonzero(routes[:, slot] >= 0)
        route = routes[idx, slot]
        ch = Chains.start(idx, route, pay.t[idx], np.full(idx.size, -1), np.zeros(idx.size, int))
        p = attempt_probs(model, deaths, ch, route, pay.t[idx]).p_approve
        for name, values in (("idx", idx), ("route", route), ("p", p)):
            parts[name].append(values)
    return _sorted({k: np.concatenate(v) for k, v in parts.items()})


def retry_table(model: dyn.Model, deaths: Deaths, first: Chains) -> dict[str, Array]:
    """True probability that a second attempt is approved, per route and delay.

    Args:
        model: world, payments and per-payment parts.
        deaths: when cards died.
        first: the declined payments right after their first attempt.

    Returns:
        Arrays ``idx`` (payment), ``route``, ``delay`` and ``p``: one row per declined first
        attempt x route of its merchant x delay in ``RETRY_DELAYS_H``. Hard declines give 0.
    """
    routes = model.world.merchants.routes[model.pay.merchant[first.idx]]
    hard = (first.stage == dyn.DEAD) | (first.stage == dyn.HARD)
    parts: dict[str, list[Array]] = {"idx": [], "route": [], "delay": [], "p": []}
    delays = np.array(RETRY_DELAYS_H)
    for slot in range(routes.shape[1]):  # one batch per route slot keeps memory flat
        rows = np.repeat(np.flatnonzero(routes[:, slot] >= 0), delays.size)
        ch, route = first.take(rows), routes[rows, slot]
        delay = np.tile(delays, rows.size // delays.size)
        p = attempt_probs(model, deaths, ch, route, ch.t + delay).p_approve
        for name, v in zip(
            parts, (ch.idx, route, delay, np.where(hard[rows], 0.0, p)), strict=True
        ):
            parts[name].append(v)
    return _sorted({k: np.concatenate(v) for k, v in parts.items()})


def _sorted(table: dict[str, Array]) -> dict[str, Array]:
    keys = [table[k] for k in ("delay", "route", "idx") if k in table]
    order = np.lexsort(keys)
    return {k: v[order] for k, v in table.items()}
