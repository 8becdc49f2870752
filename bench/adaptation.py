"""Adaptation to outages: do live outcomes let the served model route around them?

One command (``make bench-adaptation``; ``python bench/adaptation.py --help`` for options):

1. simulate ``--payments`` over ``--days`` (about 20 first attempts a minute by default, so
   every route sees one about every minute) with the simulator's outage windows;
2. train a quick model on the attempts before ``--train-end`` and serve it (``LocalStack``:
   a throwaway redis-server and ``bentoml serve`` of ``bento/``) with its feature state
   materialized;
3. replay the first attempts of the ``--replay-hours`` after the model's state end, in
   event-time order, under three policies with common random numbers (one uniform per
   attempt; approved when it is below the true probability of the chosen route):

   - **frozen**: RankRoutes on the features of the materialization, nothing reported;
   - **live**: after a fresh materialization, RankRoutes, the top route, its drawn outcome
     reported at once with ReportOutcomes (one outcome per call, before the next attempt is
     ranked), as routed (``route_id`` = the chosen route);
   - **oracle**: the route of highest true expected value (no service);
   - and, for reference, **static**: the route the simulated data took (80 % primary);

4. print approvals and money overall and inside outage windows, live's share of the oracle's
   uplift over frozen, per outage how soon each policy routed away from the failing route,
   and what the live model saw around each route outage.

Route outages come about once a day across the seven routes, so a window picked at random
mostly holds none: by default (``--train-end auto``) training ends ``--lead-hours`` before
the first route outage that starts after ``--train-days`` (the live model has that long to
fill its one-hour windows first). The rule reads only the outage schedule, never a result.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from approvals.contract import validate_frame
from approvals.decisions.costs import load_costs
from approvals.model.package import ModelPackage
from approvals.model.train import TrainConfig, save_result, train
from approvals.simulate import START, simulate
from bench import adaptation_report as report
from bench import adaptation_tables as tables
from dev.requests import LABELS, attempt_message
from dev.stack import LocalStack
from dev.stubs import grpc_stubs

# Quick but sound: one booster, early-stopped on validation; the test split is 1 %, so the
# model's feature state ends right before the replay.
CONFIG = TrainConfig(
    train_share=0.8, valid_share=0.1, calib_share=0.09, learning_rate=0.2, num_leaves=31,
    min_data_in_leaf=200, max_rounds=150, early_stopping_rounds=20, stack=False, refit=False,
    threads=2,
)  # fmt: skip
SERVICE_ENV = {"APPROVALS_REDIS_TIMEOUT_MS": "5000", "APPROVALS_MAX_LATENCY_MS": "10000"}
FROZEN_CONCURRENCY = 8
CALL_TIMEOUT_S = 30.0
Ranking = list[tuple[str, float]]


def train_end(outages: pd.DataFrame, start: pd.Timestamp, args: argparse.Namespace) -> pd.Timestamp:
    """``--train-end``, or ``--lead-hours`` before the first route outage after ``--train-days``."""
    if args.train_end != "auto":
        given = pd.Timestamp(args.train_end)
        return given.tz_convert("UTC").tz_localize(None) if given.tzinfo else given
    after = start + pd.Timedelta(days=args.train_days) + pd.Timedelta(hours=args.lead_hours)
    route = outages[(outages["kind"] == "route") & (outages["start_time"] >= after)]
    if route.empty:
        raise SystemExit("no route outage after --train-days: lower it or raise --days")
    return route["start_time"].min() - pd.Timedelta(hours=args.lead_hours)


def fit(history: pd.DataFrame, workdir: Path) -> ModelPackage:
    """Train on ``history`` and save the package (with its feature state) under ``workdir``."""
    start = time.monotonic()
    result = train(history, CONFIG, progress=lambda m: print(f"  train: {m}", flush=True))
    package = ModelPackage.load(save_result(result, workdir / "model"))
    test = package.manifest["metrics"]["test"]
    print(f"trained on {len(history):,} attempts in {time.monotonic() - start:.0f} s: test log "
          f"loss {test['log_loss']:.4f}, ECE {test['ece']:.4f}; state end "
          f"{package.spec.state_end}", flush=True)  # fmt: skip
    return package


def replay_rows(
    attempts: pd.DataFrame, routes: pd.DataFrame, since: str, hours: float
) -> pd.DataFrame:
    """First attempts in ``(since, since + hours]`` whose merchant can use two routes or more."""
    lo = pd.Timestamp(since)
    first = attempts[(attempts["attempt_number"] == 1) & (attempts["event_time"] > lo)
                     & (attempts["event_time"] <= lo + pd.Timedelta(hours=hours))]  # fmt: skip
    options = routes.groupby("attempt_id")["route_id"].agg(list)
    first = first.assign(options=first["attempt_id"].map(options))
    first = first[first["options"].map(len) >= 2]
    return first.sort_values("event_time", kind="stable").reset_index(drop=True)


def _ranking(answer: Any) -> Ranking:
    return [(r.route_id, float(r.p_approve)) for r in answer.routes]


def _progress() -> Progress:
    return Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn())  # fmt: skip


async def frozen_pass(
    target: str, messages: Sequence[Any], options: Sequence[list[str]]
) -> tuple[list[Ranking], int]:
    """RankRoutes for every attempt, nothing reported (calls overlap: nothing changes)."""
    pb, rpc = grpc_stubs()
    gate = asyncio.Semaphore(FROZEN_CONCURRENCY)
    degraded = 0
    with _progress() as bar:
        task = bar.add_task("frozen: RankRoutes", total=len(messages))
        async with grpc.aio.insecure_channel(target) as channel:
            stub = rpc.ApprovalServiceStub(channel)

            async def one(i: int) -> Ranking:
                nonlocal degraded
                request = pb.RankRoutesRequest(attempt=messages[i], route_ids=options[i])
                async with gate:
                    answer = await stub.RankRoutes(request, timeout=CALL_TIMEOUT_S)
                degraded += int(answer.degraded)
                bar.advance(task)
                return _ranking(answer)

            rankings = await asyncio.gather(*(one(i) for i in range(len(messages))))
    return list(rankings), degraded


def live_pass(
    target: str,
    messages: Sequence[Any],
    options: Sequence[list[str]],
    outcome: Callable[[int, str], tuple[bool, str]],
) -> tuple[list[Ranking], int]:
    """Each attempt in turn: RankRoutes, the top route, its outcome reported before the next."""
    pb, rpc = grpc_stubs()
    rankings, degraded = [], 0
    with _progress() as bar, grpc.insecure_channel(target) as channel:
        task = bar.add_task("live: RankRoutes + ReportOutcomes", total=len(messages))
        stub = rpc.ApprovalServiceStub(channel)
        for i, message in enumerate(messages):
            request = pb.RankRoutesRequest(attempt=message, route_ids=options[i])
            answer = stub.RankRoutes(request, timeout=CALL_TIMEOUT_S)
            ranking = _ranking(answer)
            degraded += int(answer.degraded)
            routed = pb.Attempt()
            routed.CopyFrom(message)
            routed.route_id = ranking[0][0]
            approved, code = outcome(i, routed.route_id)
            done = stub.ReportOutcomes(
                pb.ReportOutcomesRequest(
                    outcomes=[pb.Outcome(attempt=routed, approved=approved, response_code=code)]
                ),
                timeout=CALL_TIMEOUT_S,
            )
            if done.applied != 1:
                raise RuntimeError(f"outcome of {message.attempt_id} not applied: {done}")
            rankings.append(ranking)
            bar.advance(task)
    return rankings, degraded


def long_rankings(ids: pd.Series, rankings: Sequence[Ranking]) -> pd.DataFrame:
    """``attempt_id``, ``route_id``, ``p_model``, ``rank`` (0 = chosen) of every ranking."""
    rows = [(a, r, p, k) for a, ranking in zip(ids, rankings, strict=True)
            for k, (r, p) in enumerate(ranking)]  # fmt: skip
    return pd.DataFrame(rows, columns=["attempt_id", "route_id", "p_model", "rank"])


def serve_and_replay(package: ModelPackage, first: pd.DataFrame, cand: pd.DataFrame,
                     workdir: Path) -> dict[str, pd.DataFrame]:  # fmt: skip
    """The frozen and live passes through one service; their rankings."""
    messages = [attempt_message(r) for _, r in first.drop(columns=[*LABELS, "options"]).iterrows()]
    options = first["options"].tolist()
    drawn = cand.set_index(["attempt_id", "route_id"])[["approved", "response_code"]]
    lookup = {key: (bool(ok), str(code)) for key, ok, code in zip(
        drawn.index, drawn["approved"], drawn["response_code"], strict=True)}  # fmt: skip
    ids = first["attempt_id"].tolist()
    stack = LocalStack(workdir / "stack", model_dir=package.path, state=package.state(),
                       env=SERVICE_ENV, log=workdir / "serve.log")  # fmt: skip
    out = {}
    with stack:
        start = time.monotonic()
        frozen, degraded = asyncio.run(frozen_pass(stack.service.grpc, messages, options))
        print(f"frozen pass: {len(first):,} attempts in {time.monotonic() - start:.0f} s, "
              f"{degraded} degraded answers", flush=True)  # fmt: skip
        out["frozen"] = long_rankings(first["attempt_id"], frozen)
        stack.materialize(package.state())  # a fresh version, which only live outcomes reach
        start = time.monotonic()
        live, degraded = live_pass(
            stack.service.grpc, messages, options, lambda i, route: lookup[(ids[i], route)]
        )
        spent = time.monotonic() - start
        print(f"live pass: {len(first):,} attempts in {spent:.0f} s ({spent / len(first) * 1e3:.1f}"
              f" ms per attempt), {degraded} degraded answers", flush=True)  # fmt: skip
        out["live"] = long_rankings(first["attempt_id"], live)
    return out


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Simulate, train, serve, replay, report (see the module's docstring)."""
    began = time.monotonic()
    sim = simulate(args.payments, args.seed, args.days)
    attempts = validate_frame(sim.attempts, labels=True)
    outages = report.naive_utc(sim.outages, ("start_time", "end_time"))
    start = pd.Timestamp(START).tz_convert("UTC").tz_localize(None)
    print(f"simulated {len(attempts):,} attempts, {len(outages):,} outage windows in "
          f"{time.monotonic() - began:.0f} s", flush=True)  # fmt: skip
    end = train_end(outages, start, args)
    package = fit(attempts[attempts["event_time"] < end], workdir)
    assert package.spec.state_end is not None, "a trained package records its state end"
    first = replay_rows(attempts, sim.routes, package.spec.state_end, args.replay_hours)
    u = np.random.default_rng([args.seed, 1]).random(len(first))
    cand = report.candidates(first, sim.routes, outages, u)
    print(f"replaying {len(first):,} first attempts from {package.spec.state_end} "
          f"({len(first) / (args.replay_hours * 60):.1f} a minute)", flush=True)  # fmt: skip
    rankings = serve_and_replay(package, first, cand, workdir)
    costs = load_costs()
    chosen = {name: r[r["rank"] == 0].set_index("attempt_id")["route_id"]
              for name, r in rankings.items()}  # fmt: skip
    chosen["oracle"] = report.oracle_choices(cand, costs)
    chosen["static"] = first.set_index("attempt_id")["route_id"]  # as the data was routed
    exposure = report.exposure_of_attempts(cand)
    results = {name: report.outcomes(c, cand, exposure, costs) for name, c in chosen.items()}
    if args.save is not None:
        save(args.save, cand, rankings, results)
    tables.print_policies({name: report.summary(r) for name, r in results.items()})
    window = outages[(outages["start_time"] > pd.Timestamp(package.spec.state_end))
                     & (outages["start_time"] <= first["event_time"].max())]  # fmt: skip
    tables.print_detection(window, cand, chosen)
    tables.print_route_phases(window, cand, rankings["live"], results["live"])
    tables.print_outage_features(package)
    print(f"\nwhole run {time.monotonic() - began:.0f} s", flush=True)


def save(folder: Path, cand: pd.DataFrame, rankings: dict[str, pd.DataFrame],
         results: dict[str, pd.DataFrame]) -> None:  # fmt: skip
    """The replay's tables as Parquet files, for a closer look."""
    folder.mkdir(parents=True, exist_ok=True)
    cand.drop(columns=["u"]).to_parquet(folder / "candidates.parquet", index=False)
    for name, frame in rankings.items():
        frame.to_parquet(folder / f"rankings_{name}.parquet", index=False)
    for name, frame in results.items():
        frame.to_parquet(folder / f"outcomes_{name}.parquet", index=False)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--payments", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train-days", type=float, default=4.0,
                        help="least training period (with --train-end auto)")  # fmt: skip
    parser.add_argument("--train-end", default="auto",
                        help="UTC time training ends (default: auto, see above)")  # fmt: skip
    parser.add_argument("--lead-hours", type=float, default=2.0)
    parser.add_argument("--replay-hours", type=float, default=12.0)
    parser.add_argument("--save", type=Path, help="write the replay's tables here (Parquet)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="approvals-adaptation-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
