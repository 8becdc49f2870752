"""The experiment report's picture: every uplift with its 95% interval, one panel per metric."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from approvals.evaluation.plots import figure, save

__all__ = ["uplift_plot"]

_UNITS = {
    "approval_rate": ("approval rate per attempt", 100.0, "percentage points"),
    "payment_approval_rate": ("approval rate per payment", 100.0, "percentage points"),
    "approved_value": ("approved value per payment", 1.0, "currency units"),
}


def uplift_plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """A forest plot of ``report["uplift"]``: estimate and 95% interval per comparison.

    Returns:
        The path written.
    """
    metrics = [m for m in _UNITS if any(u["metric"] == m for u in report["uplift"])]
    fig = figure(7.0, 1.2 + 1.6 * max(len(metrics), 1))
    axes = fig.subplots(max(len(metrics), 1), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics, strict=False):
        title, scale, unit = _UNITS[metric]
        rows = [u for u in report["uplift"] if u["metric"] == metric]
        for y, row in enumerate(rows):
            lo, hi = (v * scale if v is not None else 0.0 for v in row["ci95"])
            estimate = (row["estimate"] or 0.0) * scale
            colour = "tab:green" if row["significant"] and estimate > 0 else (
                "tab:red" if row["significant"] else "tab:grey"
            )  # fmt: skip
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2)
            ax.plot([estimate], [y], "o", color=colour)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [f"{r['arm']} vs {r['versus']}" for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(f"uplift in {title}", fontsize=10)
        ax.set_xlabel(unit)
    if not metrics:
        axes[0].text(0.5, 0.5, "no comparison: one arm only", ha="center", va="center")
        axes[0].set_axis_off()
    return save(fig, path)
