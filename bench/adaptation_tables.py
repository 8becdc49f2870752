"""The adaptation benchmark's printed tables (Markdown, as the README quotes them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from approvals.model.package import ModelPackage
from bench import adaptation_report as report

POLICIES = ("frozen", "live", "oracle")  # the uplift share: (live - frozen) / (oracle - frozen)


def print_policies(summaries: dict[str, dict[str, dict[str, float]]]) -> None:
    """The policy table with ratios to frozen, and live's share of the oracle's uplift."""
    print("\n== policies on the same first attempts (in outage windows: a route or issuer x "
          "route outage on one of their routes; hurt: their best route without outages is in "
          "one); value = approved amount x margin - attempt fee")  # fmt: skip
    print("| attempts | policy | approval (expected) | vs frozen | value (expected) | vs frozen |")
    print("|---|---|---|---|---|---|")
    for subset, base in summaries["frozen"].items():
        for name, by_subset in summaries.items():
            s = by_subset[subset]
            print(f"| {subset} ({s['attempts']:,.0f}) | {name} | {s['approval']:.2%} "
                  f"({s['expected_approval']:.2%}) | {s['approval'] / base['approval']:.4f}x | "
                  f"{s['value']:,.0f} ({s['expected_value']:,.0f}) | "
                  f"{s['value'] / base['value']:.4f}x |")  # fmt: skip
    print("\nlive's share of the oracle's uplift over frozen, (live - frozen) / (oracle - frozen),"
          " realised (expected); target: >= 80 % in outage windows")  # fmt: skip
    print("| attempts | approvals | value |")
    print("|---|---|---|")
    for subset in summaries["frozen"]:
        cells = []
        for key in ("approval", "value"):
            share = [report.recovered(*(summaries[p][subset][k] for p in POLICIES))
                     for k in (key, f"expected_{key}")]  # fmt: skip
            cells.append(f"{share[0]:.1%} ({share[1]:.1%})")
        print(f"| {subset} | {cells[0]} | {cells[1]} |")


def print_detection(window: pd.DataFrame, cand: pd.DataFrame, chosen: dict[str, pd.Series]) -> None:
    """Per routable outage starting in the replay: the traffic each policy sent to the failing
    route, and the minutes until it sent significantly less than before."""
    print("\n== routable outages starting in the replay, over the attempts that could use the"
          " failing route: share each policy sent to it in the hour before / during / hour"
          " after; minutes from the start until the share it sent there since the start was"
          f" significantly below the hour before's (Fisher, p < {report.SIGNIFICANCE});"
          " -: never")  # fmt: skip
    print("| outage | kind | route | issuer | start (UTC) | minutes | severity | attempts |"
          " frozen | live | oracle | live: minutes | frozen: minutes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    routable = window[window["kind"].isin(report.ROUTABLE)]
    length = (routable["end_time"] - routable["start_time"]).dt.total_seconds() / 60
    routable = routable.assign(length=length)
    for o in routable.itertuples():
        d = report.detection(o, cand, chosen)
        if not d["attempts"]:
            continue
        shares = [" / ".join(_share(d[f"{p}_{phase}"]) for phase in ("before", "during", "after"))
                  for p in POLICIES]  # fmt: skip
        print(f"| {o.outage_id} | {o.kind} | {o.route_id} | {_text(o.issuer_id)} | "
              f"{o.start_time:%m-%d %H:%M} | {o.length:.0f} | {o.severity:.2f} | {d['attempts']} | "
              f"{' | '.join(shares)} | {_minutes(d['live_minutes'])} | "
              f"{_minutes(d['frozen_minutes'])} |")  # fmt: skip


def _share(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.0%}"


def _minutes(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1f}"


def _text(value: object) -> str:
    return "" if value is None or value is pd.NA else str(value)


def print_route_phases(window: pd.DataFrame, cand: pd.DataFrame, live: pd.DataFrame,
                       reported: pd.DataFrame) -> None:  # fmt: skip
    """What the live model saw of each failing route, before, during and after its outage."""
    for o in window[window["kind"] == "route"].itertuples():
        print(f"\n-- {o.outage_id}: {o.route_id} {o.start_time:%m-%d %H:%M}-{o.end_time:%H:%M}"
              f", severity {o.severity:.2f} (live: median p_approve of the route over the "
              "attempts that could use it; outcomes reported on it, of which 96)")  # fmt: skip
        for name, p, sent, outs in report.route_phases(o, cand, live, reported):
            print(f"   {name:20s} p {p:.3f}   reported {sent:4d}, 96: {outs}")


def print_outage_features(package: ModelPackage) -> None:
    """How much the booster uses the recent outage shares (gain share and rank)."""
    gain = package.booster.feature_importance("gain")
    names = package.booster.feature_name()
    order = np.argsort(-gain)
    rank = {names[i]: k + 1 for k, i in enumerate(order)}
    total = gain.sum()
    used = [f"{n} #{rank[n]} ({g / total:.1%})" for n, g in zip(names, gain, strict=True)
            if "outage" in n]  # fmt: skip
    print(f"\nbooster gain of the outage features (rank of {len(names)}): {', '.join(used)}")
