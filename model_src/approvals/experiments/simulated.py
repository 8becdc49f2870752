"""An experiment played on a simulation, with its true uplift: the statistics' proving ground.

Payments before ``start`` are the pre-period, logged as they were simulated (variant
``champion``, the simulator's own routing). From ``start`` on, each payment's first attempt
is assigned an arm (:func:`approvals.experiments.assignment.assign`) and routed by the arm's
policy: ``None`` sends it to the route the merchant configured first (the static policy of a
holdout), a number ``s`` to the route with the highest true approval logit plus Gaussian noise
of sd ``s`` (a model that errs by that much; equal numbers make equal choices, an A/A test).
Its outcome is drawn from the true probability of the route taken, so the truth of every
arm is the mean, over all payments of the period, of what its policy would have got.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from approvals.experiments.assignment import assign
from approvals.simulate import Simulation

__all__ = ["SimulatedExperiment", "simulate_experiment"]


@dataclass(frozen=True)
class SimulatedExperiment:
    """A decision log and the truth it was drawn from.

    Attributes:
        log: pre-period and experiment rows, in the decision log's schema.
        truth: per arm the expected ``approval_rate`` and ``approved_value`` (per payment) of
            its policy over every payment of the period.
    """

    log: pd.DataFrame
    truth: dict[str, dict[str, float]]


def simulate_experiment(
    sim: Simulation,
    start: datetime,
    policies: Mapping[str, float | None],
    shares: Mapping[str, float],
    seed: int,
    lose: Mapping[str, float] | None = None,
) -> SimulatedExperiment:
    """Play the experiment (see the module docstring).

    Args:
        sim: the simulation.
        start: the experiment's start (UTC).
        policies: per arm its policy (None: static; a number: a model's noise sd).
        shares: per arm its share of payments.
        seed: seed of the assignment salt, the models' noise and the outcomes.
        lose: per arm the share of its payments missing from the log (a broken pipeline).
    """
    rng = np.random.default_rng(seed)
    attempts = sim.attempts
    at = pd.Timestamp(start)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    pre = attempts[attempts["event_time"] < at]
    first = attempts[(attempts["event_time"] >= at) & (attempts["attempt_number"] == 1)]
    first = first.reset_index(drop=True)
    routes = sim.routes[sim.routes["attempt_id"].isin(first["attempt_id"])]
    position = pd.Series(np.arange(len(first)), index=first["attempt_id"])
    row = position[routes["attempt_id"]].to_numpy()
    p = routes["p_approve"].to_numpy(dtype=float)
    chosen = {arm: _choose(first, routes, row, p, policy, seed) for arm, policy in policies.items()}
    arm = assign(first["payment_id"], shares, salt=f"sim-{seed}")
    taken = np.empty(len(first), dtype=int)
    for name, picks in chosen.items():
        taken[arm == name] = picks[arm == name]
    approved = rng.random(len(first)) < p[taken]
    amount = first["amount"].to_numpy(dtype=float)
    truth = {
        name: {"approval_rate": float(p[picks].mean()),
               "approved_value": float((p[picks] * amount).mean())}
        for name, picks in chosen.items()
    }  # fmt: skip
    logged = _experiment_rows(first, routes, taken, arm, approved, policies, rng)
    keep = np.ones(len(logged), dtype=bool)
    for name, share in (lose or {}).items():
        keep &= ~((arm == name) & (rng.random(len(logged)) < share))
    log = pd.concat([_pre_rows(pre, sim), logged[keep]], ignore_index=True)
    return SimulatedExperiment(log=log, truth=truth)


def _choose(
    first: pd.DataFrame, routes: pd.DataFrame, row: np.ndarray, p: np.ndarray,
    policy: float | None, seed: int,
) -> np.ndarray:  # fmt: skip
    """Per payment, the position in ``routes`` of the route its policy takes."""
    if policy is None:
        static = routes["route_id"].to_numpy() == first["route_id"].to_numpy()[row]
        picks = np.full(len(first), -1)
        picks[row[static]] = np.flatnonzero(static)
        return picks
    noise = np.random.default_rng([seed, int(policy * 1_000_000)]).normal(0.0, policy, len(p))
    score = _logit(p) + noise
    order = np.lexsort((-score, row))  # by payment, best score first
    firsts = order[np.r_[True, row[order][1:] != row[order][:-1]]]
    picks = np.empty(len(first), dtype=int)
    picks[row[firsts]] = firsts
    return picks


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(q / (1 - q))


def _experiment_rows(
    first: pd.DataFrame, routes: pd.DataFrame, taken: np.ndarray, arm: np.ndarray,
    approved: np.ndarray, policies: Mapping[str, float | None], rng: np.random.Generator,
) -> pd.DataFrame:  # fmt: skip
    p = routes["p_approve"].to_numpy(dtype=float)[taken]
    sd = np.array([policies[a] if policies[a] is not None else np.nan for a in arm])
    answered = 1 / (1 + np.exp(-(_logit(p) + np.nan_to_num(sd) * rng.normal(size=len(p)))))
    return first.assign(
        route_id=routes["route_id"].to_numpy()[taken],
        approved=approved,
        response_code=np.where(approved, "00", "05"),
        merchant_advice_code=None,
        p_approve=np.where(np.isnan(sd), np.nan, answered),
        variant=arm,
        model_version=np.where(np.isnan(sd), np.array(None, dtype=object), "simulated"),
        decided_at=first["event_time"],
    )


def _pre_rows(pre: pd.DataFrame, sim: Simulation) -> pd.DataFrame:
    truth = sim.truth.set_index("attempt_id")["p_approve"]
    return pre.assign(
        p_approve=truth.reindex(pre["attempt_id"]).to_numpy(),
        variant="champion", model_version="simulated", decided_at=pre["event_time"],
    )  # fmt: skip
