"""The demo's live experiment: payments replayed through a served champion and challenger.

Each replayed payment is a first attempt of the simulation's last hours, re-timed to just
after the served feature state. The service ranks the merchant's routes for it (RankRoutes
over gRPC, in the payment's arm: champion, challenger, or the holdout's static first route);
its outcome is drawn from the simulator's true approval probability on the route the arm
chose (``routes.parquet``) and reported back (ReportOutcomes). The decision log the service
wrote meanwhile goes through the sink to Parquet, and ``approvals experiment report`` reads
it: the same path as production, with outcomes whose truth is known.

Two phases, one service process each: ``shadow`` (the champion answers, the challenger scores
every request too, logged and never answered) then ``ab`` with a holdout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dev.calls import LABELS, _message
from dev.stack import Service
from dev.stubs import grpc_stubs

SHADOW = {"APPROVALS_EXPERIMENT": "shadow"}
AB = {
    "APPROVALS_EXPERIMENT": "ab", "APPROVALS_CHALLENGER_SHARE": "0.45",
    "APPROVALS_HOLDOUT_SHARE": "0.10",
}  # fmt: skip
AB_SHARES = "champion=0.45,challenger=0.45,holdout=0.10"
CHALLENGER_CONFIG = {"num_leaves": 15, "stack": False, "refit": False, "max_rounds": 300}
_DECLINE = "05"  # a generic soft decline: the outcome's response code when not approved
_REPORT_BATCH = 200


@dataclass(frozen=True)
class Played:
    """What one phase sent: payments per arm, and how many outcomes were applied."""

    arms: dict[str, int]
    applied: int


def payments(sim: Path, count: int, offset: int = 0) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """``count`` first attempts (skipping the last ``offset``), re-timed after the data's end,
    and the true approval probability of each on every route of its merchant."""
    frame = pd.read_parquet(sim / "attempts.parquet")
    routes = pd.read_parquet(sim / "routes.parquet")
    end = pd.to_datetime(frame["event_time"], utc=True).max()
    first = frame.loc[frame["attempt_number"] == 1].drop(columns=list(LABELS))
    first = first.iloc[len(first) - offset - count : len(first) - offset]
    attempts = []
    for i, record in enumerate(first.to_dict("records")):
        row = {str(k): (None if pd.isna(v) else v) for k, v in record.items()}
        row["event_time"] = (end + pd.Timedelta(seconds=60 + i / 10)).isoformat()
        attempts.append(row)
    return attempts, routes.loc[routes["attempt_id"].isin(first["attempt_id"])]


def play(
    service: Service, attempts: list[dict[str, Any]], truth: pd.DataFrame, seed: int
) -> Played:
    """Rank each payment's routes, draw its outcome on the chosen route, report it."""
    import grpc

    pb, rpc = grpc_stubs()
    rng = np.random.default_rng(seed)
    p_true = truth.set_index(["attempt_id", "route_id"])["p_approve"]
    candidates = truth.groupby("attempt_id", sort=False)["route_id"].agg(list)
    arms: dict[str, int] = {}
    outcomes, applied = [], 0
    with grpc.insecure_channel(service.grpc) as channel:
        stub = rpc.ApprovalServiceStub(channel)
        for attempt in attempts:
            # the merchant's configured order: the route it sent the attempt to first
            order = [attempt["route_id"]] + [
                r for r in candidates[attempt["attempt_id"]] if r != attempt["route_id"]
            ]
            message = _message(pb, attempt)
            answer = stub.RankRoutes(pb.RankRoutesRequest(attempt=message, route_ids=order),
                                     timeout=10)  # fmt: skip
            arms[answer.variant] = arms.get(answer.variant, 0) + 1
            route = answer.routes[0].route_id
            approved = bool(rng.random() < p_true[(attempt["attempt_id"], route)])
            message.route_id = route
            outcomes.append(pb.Outcome(attempt=message, approved=approved,
                                       response_code="00" if approved else _DECLINE))  # fmt: skip
        for batch in _chunks(outcomes, _REPORT_BATCH):
            done = stub.ReportOutcomes(pb.ReportOutcomesRequest(outcomes=batch), timeout=30)
            applied += done.applied + done.late
    return Played(dict(sorted(arms.items())), applied)


def shadow_summary(sink: Path) -> str:
    """How the challenger's shadow answers compare with the champion's on the same attempts."""
    files = sorted((sink / "decisions").rglob("*.parquet"))
    log = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    log = log.loc[log["endpoint"] == "rank_routes"]
    shadow = log.loc[log["shadow"].astype(bool)].drop_duplicates("attempt_id")
    answered = log.loc[~log["shadow"].astype(bool)].drop_duplicates("attempt_id")
    both = answered.merge(shadow, on="attempt_id", suffixes=("", "_shadow"))
    same = (both["route_id"] == both["route_id_shadow"]).mean()
    gap = (both["p_approve"] - both["p_approve_shadow"]).abs().mean()
    return (
        f"shadow: {len(shadow):,} challenger answers logged beside {len(answered):,} answered;"
        f" same top route {same:.1%}, mean |p champion - p challenger| {gap:.4f}"
    )


def report_lines(report: dict[str, Any]) -> Iterator[str]:
    """The experiment report's arms and uplifts, as the demo prints them."""
    for name, arm in report["arms"].items():
        rate, value = arm["approval_rate"], arm["approved_value"]
        yield f"  {name:<10} {arm['payments']:>6,} payments  approval rate {rate:.2%}  " + (
            f"approved value {value:,.0f}"
        )
    for row in report["uplift"]:
        lo, hi = row["ci95"]
        yield (f"  {row['arm']} vs {row['versus']:<9} {row['metric']:<22} "
               f"{row['estimate']:+.4f}  95% CI [{lo:+.4f}, {hi:+.4f}]")  # fmt: skip
    srm = report["srm"]
    yield f"  sample ratio: p = {srm['p_value']:.3f} ({'FLAGGED' if srm['flagged'] else 'ok'})"


def clear_stream(redis_url: str, prefix: str = "approvals") -> None:
    """Empty the decision stream (what it held is written, or not part of the experiment)."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        client.delete(f"{prefix}:decisions")


def read_report(out: Path) -> dict[str, Any]:
    """``report.json`` of ``approvals experiment report``."""
    return dict(json.loads((out / "report.json").read_text()))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
