"""The monitor's outputs: ``monitor.json``, PNGs, and the figures as Prometheus metrics.

``monitor.prom`` (text exposition format) is always written beside the report, for a
node-exporter textfile collector or a look by hand; :func:`push` sends the same registry to a
Pushgateway (one PUT per run, so the group holds exactly the latest run: an alert that cleared
disappears). Series stay few: per column PSI, per issuer country and route calibration, per
tested issuer x route approval rate, per alert one series; merchants appear only in alerts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvals.atomic import atomic_file
from approvals.monitoring.alerts import KINDS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PROM_FILE", "REPORT_FILE", "PushError", "push", "registry_of", "write_outputs"]

REPORT_FILE = "monitor.json"
PROM_FILE = "monitor.prom"
PREFIX = "approvals_monitor"


class PushError(RuntimeError):
    """The Pushgateway did not take the metrics (the report and files are written already)."""


def registry_of(report: Mapping[str, Any], now: float | None = None) -> CollectorRegistry:
    """The report's figures as a fresh Prometheus registry (metric names in docs/monitoring.md)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry)

    metrics = report["metrics"]
    window = metrics["window"]
    gauge("info", "the model monitored", ("model_version",)).labels(
        metrics["model"]["version"]).set(1)  # fmt: skip
    gauge("last_run_timestamp_seconds", "when the monitor ran").set(now or time.time())
    rows = gauge("rows", "rows of the window", ("kind",))
    for kind in ("rows", "scored", "labelled"):
        rows.labels(kind).set(window[kind])
    gauge("window_hours", "length of the window").set(window["hours"])
    _psi(report, gauge)
    _calibration(metrics["calibration"], gauge)
    _approval(metrics["approval_rate"], gauge)
    skewed = gauge(
        "skew_share", "share of logged values disagreeing with the recomputed", ("feature",)
    )
    for name, result in (metrics["skew"].get("mismatched") or {}).items():
        skewed.labels(name).set(result["share"])
    counts = gauge("alerts", "alerts of the run by kind", ("kind",))
    for kind in KINDS:
        counts.labels(kind).set(sum(a["kind"] == kind for a in report["alerts"]))
    fired = gauge("alert", "1 per alert of the run", ("kind", "segment"))
    for alert in report["alerts"]:
        fired.labels(alert["kind"], alert["segment"]).set(1)
    return registry


def _psi(report: Mapping[str, Any], gauge: Any) -> None:
    value = gauge("psi", "PSI against the training reference", ("group", "name"))
    limit = gauge("psi_threshold", "PSI that alerts (chunk-adjusted)", ("group", "name"))
    metrics = report["metrics"]
    columns = [("feature", metrics["feature_drift"]["features"]), ("input", metrics["input_drift"]),
               ("prediction", {"p_approve": metrics["prediction_drift"]})]  # fmt: skip
    for group, table in columns:
        for name, result in table.items():
            if result.get("psi") is not None:
                value.labels(group, name).set(result["psi"])
                limit.labels(group, name).set(result["alert"])


def _calibration(result: Mapping[str, Any], gauge: Any) -> None:
    if "ece" not in result:
        return
    gauge("ece", "expected calibration error of the window").set(result["ece"])
    gap = gauge("calibration_gap", "observed - predicted approval rate", ("segment",))
    for test in result["segments"]:
        if not test["segment"].startswith("merchant_id="):
            gap.labels(test["segment"]).set(test["gap"])


def _approval(result: Mapping[str, Any], gauge: Any) -> None:
    rate = gauge("approval_rate", "approval rate of a segment", ("segment", "source"))
    for test in result["segments"]:
        for source in ("observed", "reference", "model"):
            if test[source] is not None:
                rate.labels(test["segment"], source).set(test[source])


def write_outputs(report: Mapping[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    """Write ``monitor.json``, ``monitor.prom`` and the PNGs into ``out`` (each atomically).

    Returns:
        The paths written.
    """
    from prometheus_client import generate_latest

    from approvals.monitoring.plots import approval_plot, calibration_plot, psi_plot

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in ((REPORT_FILE, json.dumps(report, indent=2).encode() + b"\n"),
                       (PROM_FILE, generate_latest(registry_of(report)))):  # fmt: skip
        with atomic_file(directory / name) as tmp:
            Path(tmp).write_bytes(data)
        written.append(directory / name)
    written.append(psi_plot(report, directory / "psi.png"))
    written.append(calibration_plot(report, directory / "calibration.png"))
    written.append(approval_plot(report, directory / "approval.png"))
    return written


def push(report: Mapping[str, Any], gateway: str, job: str, timeout: float = 10.0) -> None:
    """PUT the report's metrics to a Pushgateway, replacing the job's previous group.

    Raises:
        PushError: the gateway could not be reached or refused the metrics.
    """
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(gateway, job=job, registry=registry_of(report), timeout=timeout)
    except OSError as exc:  # URLError, HTTPError and refused connections are all OSErrors
        raise PushError(f"push to the Pushgateway at {gateway} failed: {exc}") from exc
