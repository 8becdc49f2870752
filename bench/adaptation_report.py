"""The adaptation benchmark's arithmetic: outage exposure, realised outcomes, uplift, detection.

Pure pandas and numpy (no service): :mod:`bench.adaptation` replays the attempts through the
service and hands the routes each policy chose to these functions. Times are naive UTC.

- :func:`candidates` gives every replayed attempt x route its merchant can use: the true
  probability, the outages it is exposed to, and the outcome a policy choosing it meets
  (common random numbers: one uniform per attempt, approved when ``u < p_true``).
- :func:`outcomes` and :func:`summary` turn a policy's choices into approvals and money.
- :func:`detection` says, for every route and issuer x route outage, how much traffic each
  policy sent to the failing route before, during and after it, and how soon it sent less.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from approvals.decisions.costs import CostConfig
from approvals.decisions.routes import rank_routes

ROUTABLE = ("route", "issuer_route")  # outages a route choice can avoid
MINUTE = pd.Timedelta(minutes=1)
HOUR = pd.Timedelta(hours=1)
SIGNIFICANCE = 0.01  # of the test that a policy now sends less traffic to a failing route


def naive_utc(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with the timestamp ``columns`` as naive UTC (the contract's event_time)."""
    return frame.assign(**{c: frame[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in columns})


def candidates(
    first: pd.DataFrame, routes: pd.DataFrame, outages: pd.DataFrame, u: np.ndarray
) -> pd.DataFrame:
    """Every replayed first attempt x candidate route, with its exposure and drawn outcome.

    Args:
        first: the replayed first attempts (contract columns and labels), in replay order.
        routes: the simulation's ``routes`` table (true probability per attempt x route).
        outages: the simulation's ``outages`` table (naive UTC times).
        u: one uniform per row of ``first``.

    Returns:
        ``attempt_id``, ``route_id``, ``p_true``; ``route_out``/``issuer_out`` (the route, or
        the issuer on that route, is in an outage then), ``pair_out`` (an issuer x route
        outage), ``routable`` (a route or issuer x route outage), ``survival`` (the share of
        attempts the outages there let through);
        ``approved`` and ``response_code``: what an attempt sent there meets (96 in a route
        outage, 91 in an issuer one, else the observed decline code on the observed route,
        else 05).
    """
    keep = ["attempt_id", "event_time", "card_bin", "amount", "route_id", "approved",
            "response_code"]  # fmt: skip
    seen = (
        first[keep]
        .assign(u=u)
        .rename(
            columns={"route_id": "seen_route", "approved": "seen_ok", "response_code": "seen_code"}
        )
    )
    cand = routes.loc[routes["attempt_id"].isin(first["attempt_id"]),
                      ["attempt_id", "route_id", "p_approve"]]  # fmt: skip
    cand = cand.rename(columns={"p_approve": "p_true"})
    cand = cand.merge(seen, on="attempt_id", validate="m:1")
    cand = _exposure(cand, outages)
    cand["approved"] = cand["u"].to_numpy() < cand["p_true"].to_numpy()
    same = (cand["route_id"] == cand["seen_route"]) & ~cand["seen_ok"]
    cand["response_code"] = np.select(
        [cand["approved"], cand["route_out"], cand["issuer_out"], same],
        ["00", "96", "91", cand["seen_code"]],
        "05",
    )
    return cand.drop(columns=["seen_route", "seen_ok", "seen_code"])


def _exposure(cand: pd.DataFrame, outages: pd.DataFrame) -> pd.DataFrame:
    t, route, card_bin = cand["event_time"], cand["route_id"], cand["card_bin"]
    n = len(cand)
    route_out, issuer_out, pair_out = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    survival = np.ones(n)
    window = outages[(outages["end_time"] > t.min()) & (outages["start_time"] <= t.max())]
    for o in window.itertuples():
        hit = np.array((t >= o.start_time) & (t < o.end_time), dtype=bool)
        if o.kind != "issuer":
            hit &= np.asarray(route == o.route_id, dtype=bool)
        if o.kind != "route":
            hit &= np.asarray(card_bin.isin(list(o.card_bins)), dtype=bool)
        survival[hit] *= 1.0 - o.severity
        (route_out if o.kind == "route" else issuer_out)[hit] = True
        pair_out |= hit & (o.kind == "issuer_route")
    return cand.assign(route_out=route_out, issuer_out=issuer_out, pair_out=pair_out,
                       routable=route_out | pair_out, survival=survival)  # fmt: skip


def oracle_choices(cand: pd.DataFrame, costs: CostConfig) -> pd.Series:
    """The route of highest true expected value per attempt (the service's ``rank_routes``)."""
    best = {}
    for attempt_id, group in cand.groupby("attempt_id", sort=False):
        probs = dict(zip(group["route_id"], group["p_true"], strict=True))
        best[attempt_id] = rank_routes(float(group["amount"].iloc[0]), probs, costs)[0].route_id
    return pd.Series(best, name="route_id")


def exposure_of_attempts(cand: pd.DataFrame) -> pd.DataFrame:
    """Per attempt: ``in_outage`` (a routable outage on one of its routes at that time; of
    which ``in_route_outage`` and ``in_pair_outage`` by kind) and ``hurt`` (its best route
    without any outage, by true probability, is in one)."""
    clean = cand.assign(p_clean=cand["p_true"] / cand["survival"])
    best = clean.sort_values(["attempt_id", "p_clean"], ascending=[True, False], kind="stable")
    best = best.drop_duplicates("attempt_id").set_index("attempt_id")
    per_attempt = cand.groupby("attempt_id")[["routable", "route_out", "pair_out"]].any()
    return pd.DataFrame({"in_outage": per_attempt["routable"], "hurt": best["routable"],
                         "in_route_outage": per_attempt["route_out"],
                         "in_pair_outage": per_attempt["pair_out"]})  # fmt: skip


def outcomes(
    choices: pd.Series, cand: pd.DataFrame, exposure: pd.DataFrame, costs: CostConfig
) -> pd.DataFrame:
    """What each attempt met on the route a policy chose: approved, realised value, exposure."""
    picked = pd.DataFrame({"attempt_id": choices.index, "route_id": choices.to_numpy()})
    rows = picked.merge(cand, on=["attempt_id", "route_id"], how="left", validate="1:1")
    if rows["p_true"].isna().any():
        raise ValueError("a policy chose a route its merchant cannot use")
    fee = costs.fees(rows["route_id"].to_numpy())
    value = rows["approved"] * costs.merchant_margin * rows["amount"] - fee
    expected = rows["p_true"] * costs.merchant_margin * rows["amount"] - fee
    return rows.assign(value=value, expected_value=expected).join(exposure, on="attempt_id")


def subsets(result: pd.DataFrame) -> dict[str, pd.Series]:
    """The attempts the figures are given for: all, in outage windows (by kind), hurt, outside."""
    inside, hurt = result["in_outage"].astype(bool), result["hurt"].astype(bool)
    return {"all": inside | ~inside, "in outage windows": inside,
            "- in route outages": result["in_route_outage"].astype(bool),
            "- in issuer x route outages": result["in_pair_outage"].astype(bool),
            "hurt by an outage": hurt, "outside outage windows": ~inside}  # fmt: skip


def summary(result: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per :func:`subsets`: attempts, approval rate and value, realised and expected (the
    true probability of the chosen route in place of the draw: the same choices, no noise)."""
    out = {}
    for name, rows in subsets(result).items():
        chosen = result[rows]
        out[name] = {
            "attempts": float(len(chosen)),
            "approval": float(chosen["approved"].mean()) if len(chosen) else float("nan"),
            "expected_approval": float(chosen["p_true"].mean()) if len(chosen) else float("nan"),
            "value": float(chosen["value"].sum()),
            "expected_value": float(chosen["expected_value"].sum()),
        }
    return out


def recovered(frozen: float, live: float, oracle: float) -> float:
    """``(live - frozen) / (oracle - frozen)``: live's share of the oracle's uplift (NaN: none)."""
    gap = oracle - frozen
    return (live - frozen) / gap if abs(gap) > 1e-12 else float("nan")


def detection(outage: Any, cand: pd.DataFrame, chosen: dict[str, pd.Series]) -> dict[str, Any]:
    """How each policy's traffic to the failing route moved around one routable outage.

    Over the attempts that could use the failing route (for an issuer x route outage, with a
    card of that issuer), per policy: ``<name>_before``, ``_during``, ``_after``, the share
    it sent to the failing route in the hour before the outage, during it, and in the hour
    after; ``<name>_minutes``, the minutes from the start to the first attempt at which the
    share it sent there since the start is significantly below its share of the hour before
    (Fisher's exact test, one-sided, at :data:`SIGNIFICANCE`, repeated at every attempt; NaN:
    not during the outage, or it sent nothing there before).

    Returns:
        Those figures, and ``attempts``: how many could use the route during the outage.
    """
    rows = cand[cand["route_id"] == outage.route_id]
    if outage.kind == "issuer_route":
        rows = rows[rows["card_bin"].isin(list(outage.card_bins))]
    rows = rows.sort_values("event_time", kind="stable")
    t, start, end = rows["event_time"], outage.start_time, outage.end_time
    phases = {"before": (start - HOUR, start), "during": (start, end), "after": (end, end + HOUR)}
    out: dict[str, Any] = {"attempts": int(((t >= start) & (t < end)).sum())}
    masks = {phase: ((t >= lo) & (t < hi)).to_numpy() for phase, (lo, hi) in phases.items()}
    for name, choice in chosen.items():
        sent = choice.reindex(rows["attempt_id"]).to_numpy() == outage.route_id
        for phase, inside in masks.items():
            out[f"{name}_{phase}"] = float(sent[inside].mean()) if inside.any() else np.nan
        during = masks["during"]
        out[f"{name}_minutes"] = _fell(t[during], sent[during], sent[masks["before"]], start)
    return out


def _fell(t: pd.Series, sent: np.ndarray, before: np.ndarray, start: pd.Timestamp) -> float:
    """Minutes from ``start`` to the first attempt where the share ``sent`` so far is
    significantly below the share ``before`` (Fisher's exact test, one-sided; NaN: never)."""
    k0, n0 = int(before.sum()), before.size
    if not k0:
        return np.nan
    for i, k in enumerate(np.cumsum(sent)):
        table = [[int(k), i + 1 - int(k)], [k0, n0 - k0]]
        if fisher_exact(table, alternative="less").pvalue < SIGNIFICANCE:
            return float((t.iloc[i] - start) / MINUTE)
    return np.nan


def route_phases(
    outage: Any, cand: pd.DataFrame, live: pd.DataFrame, reported: pd.DataFrame
) -> list[tuple[str, float, int, int]]:
    """The live model's view of one failing route around its outage, phase by phase.

    Args:
        outage: a route outage (row of the outages table).
        cand: the candidates (for the attempts that could use the route).
        live: the live rankings, ``attempt_id``, ``route_id``, ``p_model``.
        reported: the live pass's reported outcomes, ``event_time``, ``route_id``,
            ``response_code``.

    Returns:
        ``(phase, median p_model of the route, attempts reported on it, of which 96)``.
    """
    start, end = outage.start_time, outage.end_time
    phases = [("30 min before", start - 30 * MINUTE, start),
              ("first 10 min", start, min(start + 10 * MINUTE, end)),
              ("rest of the outage", min(start + 10 * MINUTE, end), end),
              ("first hour after", end, end + 60 * MINUTE),
              ("second hour after", end + 60 * MINUTE, end + 120 * MINUTE)]  # fmt: skip
    mine = live[live["route_id"] == outage.route_id].merge(
        cand.loc[cand["route_id"] == outage.route_id, ["attempt_id", "event_time"]],
        on="attempt_id",
    )
    on_route = reported[reported["route_id"] == outage.route_id]
    out = []
    for name, lo, hi in phases:
        p = mine.loc[(mine["event_time"] >= lo) & (mine["event_time"] < hi), "p_model"]
        sent = on_route[(on_route["event_time"] >= lo) & (on_route["event_time"] < hi)]
        out.append((name, float(p.median()) if len(p) else np.nan, len(sent),
                    int((sent["response_code"] == "96").sum())))  # fmt: skip
    return out
