"""The payments simulator: realistic authorization attempts with their true probabilities.

``simulate(n_payments, seed, days)`` plays a seeded world of issuers (by BIN), merchants,
routes and cards through a chain of decline mechanisms and the static retry policy, and
returns the observed attempts (contract columns and labels) with their counterfactual truth
and the outage windows behind their 91/96 declines.
``write(sim, out_dir)`` stores it atomically. See ``dynamics`` for the mechanisms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from approvals.simulate import counterfactual, dynamics, frames, process, tables
from approvals.simulate.payments import draw_payments
from approvals.simulate.world import build_world
from approvals.simulate.writer import Simulation, write

__all__ = ["GENERATOR_VERSION", "START", "Simulation", "simulate", "write"]

GENERATOR_VERSION = "approvals-sim/1"
START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday; fixed so that a seed means one data set


def simulate(
    n_payments: int, seed: int, days: int = 60, progress: Callable[[str], None] | None = None
) -> Simulation:
    """Simulate ``n_payments`` payments over ``days`` days; the same seed gives the same data.

    Args:
        n_payments: number of payments (first attempts); retries come on top.
        seed: seed of every random draw.
        days: length of the period.
        progress: called with a short message as each stage starts.

    Returns:
        The simulation.

    Raises:
        ValueError: ``n_payments`` or ``days`` is not positive.
    """
    if n_payments < 1 or days < 1:
        raise ValueError(f"payments and days must be positive (got {n_payments}, {days})")
    say = progress or (lambda _message: None)
    rng = np.random.default_rng(seed)
    say("drawing issuers, merchants, cards and outages")
    world = build_world(rng, n_payments, days)
    model = dynamics.Model.build(world, draw_payments(rng, world, n_payments, days))
    say("playing first attempts and static retries")
    log, first, deaths = process.run(rng, model)
    arrays = log.arrays()
    say("validating attempts against the contract")
    attempts = frames.attempts_frame(model, arrays, seed, START)
    say("computing counterfactual routes and retries")
    routes = frames.routes_frame(counterfactual.route_table(model, deaths))
    retries = frames.retries_frame(counterfactual.retry_table(model, deaths, first))
    truth = frames.truth_frame(attempts, arrays)
    outages = frames.outages_frame(model, START)
    manifest = _manifest(seed, days, attempts, routes, retries, outages)
    return Simulation(attempts, truth, routes, retries, outages, manifest)


def _manifest(
    seed: int, days: int, attempts: pd.DataFrame, routes: pd.DataFrame, retries: pd.DataFrame,
    outages: pd.DataFrame,
) -> dict[str, Any]:  # fmt: skip
    first = attempts["attempt_number"] == 1
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "days": days,
        "start_time": START.isoformat(),
        "counts": {
            "payments": int(first.sum()),
            "attempts": len(attempts),
            "retries": int((~first).sum()),
            "routes_rows": len(routes),
            "retries_rows": len(retries),
            "outages_rows": len(outages),
        },
        "approval_rate": {
            "first_attempt": float(attempts.loc[first, "approved"].mean()),
            "retry": float(attempts.loc[~first, "approved"].mean()) if (~first).any() else None,
        },
        "routes": [asdict(r) for r in tables.ROUTES],
        "retry_delays_hours": list(counterfactual.RETRY_DELAYS_H),
        "static_policy": process.__doc__,
        "parameters": asdict(dynamics.PARAMS),
    }
