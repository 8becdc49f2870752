"""The monitor against planted incidents: detection delay, and false alerts on a clean month.

One command (``make bench-monitoring``; ``python bench/monitoring.py --help``): a simulation of
``--days`` days (``approvals.simulate``); a model trained on the first ``--train-days`` with its
training reference; the rest is a month of decision log (:mod:`approvals.monitoring.simulated`:
arms by payment hash, the model's point-in-time answers, logged features), played five ways:

- **clean**: as simulated;
- **issuer falls**: from the onset, 35% of the approvals of one issuer country become 05s;
- **merchant amounts shift**: from the onset, the amounts of one of the 2nd to 4th busiest
  merchants x 2.5 (smaller ones have fewer than the 30 payments a 6 h window needs to test);
- **route outage**: for 8 hours from the onset, 80% of a route's attempts are declined 96;
- **stale feature**: from the onset, the logged ``bin_route_24h_rate`` is a default on 30% of
  the rows (a serving cache answering defaults; the model's inputs are right).

Each log is cut into consecutive ``--window-hours`` windows from its start (as a CronJob would)
and monitored window by window, with the features recomputed offline once per log. For each
scenario: the first window raising the alert that names the incident (delay in windows: 0 is
the window holding the onset, 1 the first full window after it; and in hours from onset to
that window's end), and the alerts the incident does not explain (global ones, those naming
its entity, and those on a segment holding its rows that did not alert in the same window of
the clean log are the incident's), sorted by the simulator's truth.
The simulated world has incidents of its own (hundreds of issuer and route outages a month,
``Simulation.outages``) and a model that is not perfect: an approval-rate alert whose
segment's true approval probability (``Simulation.truth``) fell by at least half the alerted
drop, or a calibration alert where the model's answers are off the true probabilities by at
least half the gap, is *confirmed by the truth* (a true incident, correctly raised), and so is
a drift of the retry context (``prev_code``, ``attempt_number``: the retries of outage
declines) in a window whose attempts the simulator's outages declined by 3 %;
the rest are false alerts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from approvals.contract import validate_frame
from approvals.experiments.log import validate_log
from approvals.model.package import ModelPackage
from approvals.model.train import TrainConfig, save_result, train
from approvals.monitoring import simulated
from approvals.monitoring.monitor import monitor_window, recompute_features, select_window
from approvals.simulate import START, simulate
from bench import monitoring_truth as truth

CONFIG = TrainConfig(learning_rate=0.1, max_rounds=300, min_data_in_leaf=100, threads=2)
TRAFFIC = truth.TRAFFIC_KINDS


@dataclass(frozen=True)
class Scenario:
    """An incident: how to plant it, from when, and which alerts name it."""

    name: str
    onset: datetime
    plant: Callable[[pd.DataFrame], pd.DataFrame] | None  # on attempts (before scoring)
    names: Callable[[dict], bool]  # does this alert name the incident?
    entity: str  # "column=value" the incident is about (alerts mentioning it are its own)
    on_log: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # on the log (after scoring)


def _scenarios(month: pd.DataFrame, t0: datetime, seed: int) -> list[Scenario]:
    rng = np.random.default_rng(seed)
    onset = [t0 + timedelta(days=float(d)) for d in rng.uniform(5, 25, 4)]
    # a merchant busy enough to be tested in a 6 h window (30 payments: the 2nd to 4th busiest)
    merchant = str(month["merchant_id"].value_counts().index[int(rng.integers(1, 4))])
    # the second busiest issuer country (11% of attempts: about 80 a window) and a route of 15%
    issuer, route = str(month["issuer_country"].value_counts().index[1]), "acq_nl_1"
    return [
        Scenario("clean", t0 + timedelta(days=99), None, lambda _: False, "none"),
        Scenario(
            f"issuer falls ({issuer}, 35% of approvals -> 05)", onset[0],
            lambda a: simulated.issuer_falls(a, issuer, onset[0], 0.35, seed),
            lambda al: al["kind"] in TRAFFIC and f"issuer_country={issuer}" in al["segment"],
            f"issuer_country={issuer}",
        ),
        Scenario(
            f"merchant amounts shift ({merchant}, x2.5)", onset[1],
            lambda a: simulated.merchant_amounts_shift(a, merchant, onset[1], 2.5),
            lambda al: al["kind"] == "segment_drift" and f"={merchant}," in al["segment"],
            f"merchant_id={merchant}",
        ),
        Scenario(
            f"route outage ({route}, 8 h, 80% declined 96)", onset[2],
            lambda a: simulated.route_outage(a, route, onset[2], 8.0, 0.8, seed),
            lambda al: al["kind"] in TRAFFIC and f"route_id={route}" in al["segment"],
            f"route_id={route}",
        ),
        Scenario(
            "stale feature (bin_route_24h_rate default on 30%)", onset[3], None,
            lambda al: al["kind"] == "skew" and al["segment"] == "feature=bin_route_24h_rate",
            "feature=bin_route_24h_rate",
            lambda log: simulated.stale_feature(log, "bin_route_24h_rate", onset[3], 0.3, 0.5,
                                                seed),
        ),
    ]  # fmt: skip


def _play(
    scenario: Scenario, month: pd.DataFrame, package: ModelPackage, world: tuple,
    t0: datetime, hours: float, seed: int, clean: dict,
) -> dict:  # fmt: skip
    """Plant the incident, log and monitor the month; ``clean`` caches the unplanted log and
    its recomputed features (a scenario that changes only the log's features reuses them)."""
    if scenario.plant is None and not clean:
        raw = simulated.decision_log(month, package, seed=seed)
        log = _log(raw)
        clean.update(raw=raw, recomputed=recompute_features(package, log, log))
    if scenario.plant is None:
        raw, recomputed = clean["raw"], clean["recomputed"]
    else:
        raw = simulated.decision_log(scenario.plant(month), package, seed=seed)
        log = _log(raw)
        recomputed = recompute_features(package, log, log)
    log = _log(scenario.on_log(raw) if scenario.on_log else raw)
    played = _monitor(scenario, log, recomputed, package, world, t0, hours, clean.get("alerts"))
    clean.setdefault("alerts", played["alerts"])
    return played


def _log(raw: pd.DataFrame) -> pd.DataFrame:
    return select_window(validate_log(raw), None, None)


def _monitor(
    scenario: Scenario, log: pd.DataFrame, recomputed: np.ndarray, package: ModelPackage,
    world: tuple, t0: datetime, hours: float, clean: dict | None,
) -> dict:  # fmt: skip
    """Monitor the log window by window; sort the alerts. ``world``: per attempt the severity
    of the simulator's outage it fell in, and its true approval probability; ``clean``: the
    clean log's alerts by window (None: this is the clean log)."""
    natural, true_p = world
    out: dict = {"detected": None, "false": [], "explained": Counter(), "windows": 0,
                 "natural": [0, 0],
                 "alerts": {}}  # fmt: skip
    reference, step = package.reference(), timedelta(hours=hours)
    assert reference is not None, "a package trained here has its reference"
    for k in range(int((log["decided_at"].max() - np.datetime64(t0)) // step) + 1):
        start, end = t0 + k * step, t0 + (k + 1) * step
        inside = ((log["decided_at"] >= np.datetime64(start))
                  & (log["decided_at"] < np.datetime64(end))).to_numpy()  # fmt: skip
        rows = log[inside].reset_index(drop=True)
        if rows.empty:
            continue
        out["windows"] += 1
        report = monitor_window(
            rows, reference, model_version=package.model_version,
            feature_names=package.spec.names, recomputed=recomputed[inside], start=start, end=end,
        )  # fmt: skip
        out["alerts"][k] = {(a["kind"], a["segment"]) for a in report["alerts"]}
        for alert in report["alerts"]:
            if scenario.names(alert) and out["detected"] is None and end > scenario.onset:
                out["detected"] = (k - int((scenario.onset - t0) // step), end - scenario.onset)
            if truth.own(
                alert,
                scenario.onset,
                scenario.entity,
                rows,
                start,
                hours,
                (clean or {}).get(k, set()),
            ):
                continue
            if truth.confirmed(alert, rows, natural, true_p):
                out["explained"][alert["kind"]] += 1
            else:
                out["false"].append((start, alert))
        if scenario.name == "clean":
            found, total = truth.natural_recall(rows, natural, report["alerts"])
            out["natural"] = [out["natural"][0] + found, out["natural"][1] + total]
    return out


def run(payments: int, days: int, train_days: int, hours: float, seeds: list[int]) -> None:
    """Simulate, train, plant, monitor (see the module docstring), then print the figures."""
    began = time.monotonic()
    results: dict[str, list[dict]] = {}
    for seed in seeds:
        sim = simulate(payments, seed=seed, days=days)
        t0 = (START + timedelta(days=train_days)).replace(tzinfo=None)
        attempts, at = sim.attempts, pd.Timestamp(t0, tz="UTC")
        end = pd.Timestamp(START + timedelta(days=days))  # later retries: past the month
        history = validate_frame(attempts[attempts["event_time"] < at], labels=True)
        month = attempts[(attempts["event_time"] >= at) & (attempts["event_time"] < end)]
        month = validate_frame(month.reset_index(drop=True), labels=True)
        with tempfile.TemporaryDirectory() as tmp:
            package = ModelPackage.load(save_result(train(history, CONFIG), Path(tmp) / "m"))
            world = (
                truth.natural(month, sim.outages),
                sim.truth.set_index("attempt_id")["p_approve"],
            )
            took = time.monotonic() - began
            print(f"seed {seed}: trained on {len(history):,} attempts, monitoring {len(month):,}"
                  f" in {hours:g} h windows ({took:.0f}s)", flush=True)  # fmt: skip
            clean: dict = {}
            for scenario in _scenarios(month, t0, seed):
                played = _play(scenario, month, package, world, t0, hours, seed, clean)
                results.setdefault(scenario.name.split(" (")[0], []).append(played | {
                    "name": scenario.name})  # fmt: skip
            print(f"  played ({time.monotonic() - began:.0f}s)", flush=True)
    _print(results, time.monotonic() - began)


def _print(results: dict[str, list[dict]], seconds: float) -> None:
    print(
        "\n| scenario | detected | windows after the onset's (0: the onset's own) | hours from "
        "onset to the alerting window's end | false alerts | alerts the truth confirms |"
    )
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        found = [r["detected"] for r in runs if r["detected"] is not None]
        windows = ", ".join(str(w) for w, _ in found) or "-"
        delays = ", ".join(f"{d.total_seconds() / 3600:.1f}" for _, d in found) or "-"
        detected = "-" if name == "clean" else f"{len(found)}/{len(runs)}"
        false = sum(len(r["false"]) for r in runs)
        kinds: Counter[str] = sum((r["explained"] for r in runs), Counter())
        explained = f"{kinds.total()} ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})"
        print(f"| {name} | {detected} | {windows} | {delays} | {false} | {explained} |")
    for runs in results.values():
        for r in runs:
            for start, alert in r["false"][:5]:
                print(f"  false alert, {r['name']}, window {start:%Y-%m-%d %H:%M}: {alert}")
    clean = results.get("clean", [])
    found, total = (sum(r["natural"][i] for r in clean) for i in (0, 1))
    windows = sum(r["windows"] for r in clean)
    print(
        f"\nclean months: {windows} windows; routes the simulator's own outages cut by "
        f"{truth.NATURAL_ROUTE:.0%}+ in a window: {found}/{total} alerted"
    )
    print(f"{seconds:.0f}s in all")


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--payments", type=int, default=150_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--train-days", type=int, default=30)
    parser.add_argument("--window-hours", type=float, default=6.0)
    parser.add_argument("--seeds", type=int, default=3, help="simulations, seeds 7, 8, ...")
    args = parser.parse_args()
    seeds = list(range(7, 7 + args.seeds))
    run(args.payments, args.days, args.train_days, args.window_hours, seeds)


if __name__ == "__main__":
    main()
