"""The monitor's pictures: PSI per column, calibration against training, approval rates."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from approvals.evaluation.plots import figure, save

__all__ = ["approval_plot", "calibration_plot", "psi_plot"]

COLOURS = {"alert": "tab:red", "warn": "tab:orange", "ok": "tab:green"}
TOP = 30  # columns shown, highest PSI first


def _columns(report: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    metrics = report["metrics"]
    rows = [(f"feature {n}", r) for n, r in metrics["feature_drift"]["features"].items()]
    rows += [(f"input {n}", r | {"alerting": True}) for n, r in metrics["input_drift"].items()]
    rows.append(("prediction p_approve", metrics["prediction_drift"] | {"alerting": True}))
    rows = [(n, r) for n, r in rows if r.get("psi") is not None]
    return sorted(rows, key=lambda item: -item[1]["psi"])[:TOP]


def psi_plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Horizontal PSI bars of the most moved columns, coloured by status, each with its alert
    threshold; hatched bars are measured only (history and calendar features).

    Returns:
        The path written.
    """
    rows = _columns(report)
    fig = figure(8.0, 1.5 + 0.28 * max(len(rows), 1))
    ax = fig.subplots()
    for y, (_, r) in enumerate(reversed(rows)):
        colour = COLOURS.get(r["status"], "tab:grey") if r["alerting"] else "lightgrey"
        ax.barh(y, r["psi"], color=colour, hatch=None if r["alerting"] else "//")
        ax.plot([r["alert"], r["alert"]], [y - 0.4, y + 0.4], color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), [n for n, _ in reversed(rows)], fontsize=7)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel("PSI (black tick: alert threshold; hatched: measured, never alerts)")
    window = report["metrics"]["window"]
    ax.set_title(f"Drift {window['start']} to {window['end']} ({window['rows']:,} rows)",
                 fontsize=9)  # fmt: skip
    if not rows:
        ax.text(0.5, 0.5, "too few rows for a PSI", ha="center", va="center")
    return save(fig, path)


def calibration_plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Reliability of the window against the training test split, and per issuer country and
    route the gap between observed and predicted approval rate (alerts in red).

    Returns:
        The path written.
    """
    result = report["metrics"]["calibration"]
    fig = figure(10.0, 4.8)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.3))
    left.plot([0, 1], [0, 1], linestyle="--", color="grey")
    for key, label in (("reference_reliability", "training (test split)"),
                       ("reliability", "this window")):  # fmt: skip
        table = [b for b in result.get(key, []) if b["count"]]
        left.plot([b["mean_p"] for b in table], [b["rate"] for b in table], "o-", label=label)
    left.set(xlabel="predicted approval probability", ylabel="observed approval rate",
             xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    ece = result.get("ece")
    left.set_title("Reliability" + (f" (window ECE {ece:.3f})" if ece is not None else ""))
    left.legend(loc="upper left", fontsize=8)
    flagged = {a["segment"] for a in report["alerts"] if a["kind"] == "calibration"}
    tests = [t for t in result.get("segments", []) if not t["segment"].startswith("merchant_id")]
    for y, test in enumerate(tests):
        colour = "tab:red" if test["segment"] in flagged else "tab:blue"
        right.barh(y, 100 * test["gap"], color=colour)
    right.set_yticks(range(len(tests)), [t["segment"] for t in tests], fontsize=7)
    right.axvline(0, color="black", linewidth=0.8)
    right.set(xlabel="observed - predicted approval rate (percentage points)")
    right.set_title("Calibration by segment (red: alert)")
    return save(fig, path)


def approval_plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Per tested segment the window's approval rate against its reference (red: alert).

    Returns:
        The path written.
    """
    tests = report["metrics"]["approval_rate"]["segments"]
    flagged = {a["segment"] for a in report["alerts"] if a["kind"] == "approval_rate"}
    fig = figure(6.4, 6.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="as in training")
    for test in tests:
        colour = "tab:red" if test["segment"] in flagged else "tab:blue"
        ax.scatter(test["reference"], test["observed"], s=8 + test["rows"] ** 0.5, color=colour,
                   alpha=0.6)  # fmt: skip
        if test["segment"] in flagged:
            ax.annotate(test["segment"], (test["reference"], test["observed"]), fontsize=6)
    ax.set(xlabel="reference approval rate (training)", ylabel="approval rate in the window",
           xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    ax.set_title(f"Approval rate by issuer, route, issuer x route ({len(tests)} tested)")
    ax.legend(loc="upper left", fontsize=8)
    return save(fig, path)
