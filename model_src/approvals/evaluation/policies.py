"""Offline policy evaluation on simulated payments with counterfactual truth.

Routing: the static routing the data came from, the model's routing (``rank_routes`` on the
model's probabilities for every route the merchant can use) and the oracle's (the same ranking
on the true probabilities). Retries: never, always retry a soft decline (same route, one hour
later), the model (``advise_retry`` on the model's probabilities) and the oracle (``advise_retry``
on the true probabilities). Every policy is scored with the *true* probabilities of the options
it picks, and uplift is reported as a share of what the oracle gains over the baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals import codes
from approvals.decisions.costs import CostConfig
from approvals.decisions.retries import DeclineContext, RetryOption, advise_retry
from approvals.decisions.routes import rank_routes
from approvals.errors import UserError
from approvals.model import predict

if TYPE_CHECKING:
    import pandas as pd

    from approvals.model.package import ModelPackage

ALWAYS_DELAY_HOURS = 1.0


def read_counterfactuals(truth: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``routes.parquet`` and ``retries.parquet`` from the truth file's directory."""
    import pandas as pd

    folder = truth.parent
    paths = [folder / "routes.parquet", folder / "retries.parquet"]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise UserError(f"policy-eval needs {', '.join(missing)} beside {truth}")
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1])


def evaluation_rows(package: ModelPackage, data: pd.DataFrame) -> pd.DataFrame:
    """First attempts after the model's feature state (unseen by training)."""
    import pandas as pd

    rows = data["attempt_number"] == 1
    if package.spec.state_end:
        rows &= data["event_time"] > pd.Timestamp(package.spec.state_end)
    first = data.loc[rows]
    if first.empty:
        raise UserError("no first attempts after the model's training window to evaluate on")
    return first


def _score_variants(
    package: ModelPackage, variants: pd.DataFrame, history: pd.DataFrame
) -> np.ndarray:
    return predict.score(package, variants.reset_index(drop=True), history)


def _value(p: np.ndarray, amount: np.ndarray, fee: np.ndarray, costs: CostConfig) -> np.ndarray:
    return p * costs.merchant_margin * amount - fee


def _summary(p: np.ndarray, value: np.ndarray, baseline: float, oracle: float) -> dict[str, Any]:
    total = float(value.sum())
    gap = oracle - baseline
    return {
        "approval_rate": float(p.mean()),
        "expected_value": total,
        "uplift_share_of_oracle": (total - baseline) / gap if gap > 0 else None,
    }


def routing(
    package: ModelPackage, first: pd.DataFrame, routes: pd.DataFrame, history: pd.DataFrame,
    costs: CostConfig,
) -> dict[str, Any]:  # fmt: skip
    """Approval rate and expected value of static, model and oracle routing."""
    cand = routes.merge(first.drop(columns=["route_id"]), on=["attempt_id", "payment_id"])
    cand = cand.rename(columns={"p_approve": "p_true"})
    variants = cand.assign(attempt_id=cand["attempt_id"] + "@" + cand["route_id"])
    cand["p_model"] = _score_variants(package, variants, history)
    choice = {"static": first.set_index("attempt_id")["route_id"]}
    for name, column in (("model", "p_model"), ("oracle", "p_true")):
        choice[name] = _pick_routes(cand, column, costs)
    truth = cand.set_index(["attempt_id", "route_id"])["p_true"]
    out: dict[str, Any] = {"attempts": len(first)}
    values = {}
    for name, picked in choice.items():
        keys = list(zip(picked.index, picked.to_numpy(), strict=True))
        p = truth.reindex(keys).to_numpy()
        amount = first.set_index("attempt_id")["amount"].reindex(picked.index).to_numpy()
        values[name] = (p, _value(p, amount, costs.fees(picked.to_numpy()), costs))
    base, best = values["static"][1].sum(), values["oracle"][1].sum()
    for name, (p, value) in values.items():
        out[name] = _summary(p, value, base, best)
    return out


def _pick_routes(cand: pd.DataFrame, column: str, costs: CostConfig) -> pd.Series:
    import pandas as pd

    best = {}
    for attempt_id, group in cand.groupby("attempt_id", sort=False):
        probs = dict(zip(group["route_id"], group[column], strict=True))
        best[attempt_id] = rank_routes(float(group["amount"].iloc[0]), probs, costs)[0].route_id
    return pd.Series(best)


def _retry_variants(declines: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    cand = grid.merge(declines.drop(columns=["route_id"]), on=["attempt_id", "payment_id"])
    delay = pd.to_timedelta(cand["delay_hours"], unit="h")
    option = cand["route_id"] + "@" + cand["delay_hours"].astype(str)
    return cand.assign(
        attempt_id=cand["attempt_id"] + "@" + option,
        decline_id=cand["attempt_id"],
        event_time=cand["event_time"] + delay,
        attempt_number=2,
        previous_response_code=cand["response_code"],
        merchant_advice_code=None,
    )  # fmt: skip


def retries(
    package: ModelPackage, first: pd.DataFrame, grid: pd.DataFrame, history: pd.DataFrame,
    costs: CostConfig,
) -> dict[str, Any]:  # fmt: skip
    """Recovered payments and value of never / always-on-soft / model / oracle retrying."""
    declines = first.loc[~first["approved"]]
    cand = _retry_variants(declines, grid)
    # Hypothetical retries see first attempts only: a payment's real retries must not leak in.
    cand["p_model"] = _score_variants(package, cand, history.loc[history["attempt_number"] == 1])
    cand["delay_hours"] = cand["delay_hours"].astype(float)
    table = cand.set_index(["decline_id", "route_id", "delay_hours"])
    plans = {
        "never": {},
        "always_on_soft": _always_plan(declines),
        "model": _advise_all(declines, cand, "p_model", costs),
        "oracle": _advise_all(declines, cand, "p_approve", costs),
    }
    outcomes = {name: _retry_value(plan, declines, table, costs) for name, plan in plans.items()}
    base, best = 0.0, outcomes["oracle"]["expected_value"]
    for result in outcomes.values():
        gap = best - base
        result["uplift_share_of_oracle"] = (
            (result["expected_value"] - base) / gap if gap > 0 else None
        )
    return {"declined_first_attempts": len(declines), **outcomes}


def _always_plan(declines: pd.DataFrame) -> dict[str, tuple[str, float]]:
    soft = declines["response_code"].map(lambda c: not codes.is_hard(c))
    chosen = declines.loc[soft]
    return {
        a: (r, ALWAYS_DELAY_HOURS)
        for a, r in zip(chosen["attempt_id"], chosen["route_id"], strict=True)
    }


def _advise_all(
    declines: pd.DataFrame, cand: pd.DataFrame, column: str, costs: CostConfig
) -> dict[str, tuple[str, float]]:
    plan = {}
    rows = declines.set_index("attempt_id")
    for decline_id, group in cand.groupby("decline_id", sort=False):
        keys = zip(group["route_id"], group["delay_hours"].astype(float), strict=True)
        lookup = dict(zip(keys, group[column].astype(float), strict=True))
        options = [RetryOption(route_id=r, delay_hours=d) for r, d in lookup]
        advice = advise_retry(_context(rows.loc[decline_id]), options, _lookup_score(lookup), costs)
        if advice.action == "retry" and advice.route_id is not None:
            plan[str(decline_id)] = (advice.route_id, float(advice.delay_hours or 0.0))
    return plan


def _context(row: Any) -> DeclineContext:
    mac = row.merchant_advice_code if isinstance(row.merchant_advice_code, str) else None
    return DeclineContext(
        response_code=row.response_code, merchant_advice_code=mac, attempt_number=1,
        amount=float(row.amount), card_brand=row.card_brand,
    )  # fmt: skip


def _lookup_score(
    lookup: dict[tuple[str, float], float],
) -> Callable[[Sequence[RetryOption]], list[float]]:
    def score(options: Sequence[RetryOption]) -> list[float]:
        return [float(lookup[(o.route_id, o.delay_hours)]) for o in options]

    return score


def _retry_value(
    plan: dict[str, tuple[str, float]], declines: pd.DataFrame, table: pd.DataFrame,
    costs: CostConfig,
) -> dict[str, Any]:  # fmt: skip
    if not plan:
        return {"retries": 0, "recovered_payments": 0.0, "expected_value": 0.0}
    keys = [(a, r, d) for a, (r, d) in plan.items()]
    p = table["p_approve"].reindex(keys).fillna(0.0).to_numpy()
    amount = declines.set_index("attempt_id")["amount"].reindex(list(plan)).to_numpy()
    fee = costs.fees([r for r, _ in plan.values()]) + costs.retry_penalty
    value = _value(p, amount, fee, costs)
    return {
        "retries": len(plan),
        "recovered_payments": float(p.sum()),
        "expected_value": float(value.sum()),
    }


def evaluate_policies(
    package: ModelPackage, data: pd.DataFrame, truth: Path, costs: CostConfig
) -> dict[str, Any]:
    """The full policy comparison report (routing and retries)."""
    routes, grid = read_counterfactuals(truth)
    first = evaluation_rows(package, data)
    return {
        "model_version": package.model_version,
        "routing": routing(package, first, routes, data, costs),
        "retries": retries(package, first, grid, data, costs),
    }


def render(report: dict[str, Any]) -> str:
    """The report as two plain-text tables."""
    lines = [f"routing ({report['routing']['attempts']} first attempts)"]
    lines.append(f"  {'policy':<16}{'approval':>10}{'value':>14}{'uplift/oracle':>15}")
    for name in ("static", "model", "oracle"):
        row = report["routing"][name]
        lines.append(
            f"  {name:<16}{row['approval_rate']:>10.4f}{row['expected_value']:>14.2f}"
            f"{_share(row['uplift_share_of_oracle']):>15}"
        )
    lines.append(
        f"retries ({report['retries']['declined_first_attempts']} declined first attempts)"
    )
    lines.append(
        f"  {'policy':<16}{'retries':>10}{'recovered':>12}{'value':>14}{'uplift/oracle':>15}"
    )
    for name in ("never", "always_on_soft", "model", "oracle"):
        row = report["retries"][name]
        lines.append(
            f"  {name:<16}{row['retries']:>10}{row['recovered_payments']:>12.1f}"
            f"{row['expected_value']:>14.2f}{_share(row['uplift_share_of_oracle']):>15}"
        )
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
