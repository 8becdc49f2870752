"""An alert of the monitor, and how segments are named in alerts, metrics and Prometheus labels."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "Alert", "segment_name"]

# Every kind of alert, what it compares, and where docs/monitoring.md explains it.
KINDS = {
    "feature_drift": "PSI of a model feature against its reference bins",
    "input_drift": "PSI of a contract input column against its reference bins",
    "prediction_drift": "PSI of p_approve against the training-time predictions",
    "missing_values": "share of rows missing a model feature, against the reference",
    "segment_drift": "a merchant's amounts against its own reference quintiles",
    "calibration": "observed against predicted approval rate (all rows, or a segment)",
    "ece": "expected calibration error beyond what chance gives a calibrated model",
    "approval_rate": "approval rate below the reference of an issuer, route or both",
    "skew": "logged feature values that disagree with the ones recomputed offline",
}


@dataclass(frozen=True)
class Alert:
    """One alert: what fired, where, by how much, and the line it crossed.

    Attributes:
        kind: one of :data:`KINDS`.
        segment: ``all``, ``feature=<name>``, ``issuer_country=FR,route_id=acq_gb_1``, ...
        value: the measured value (a PSI, a gap in approval rate, a share of rows).
        threshold: the value it crossed (for gaps and drops, their size).
    """

    kind: str
    segment: str
    value: float
    threshold: float


def segment_name(**parts: str) -> str:
    """``column=value`` pairs joined by commas, in the order given (``all`` when none)."""
    return ",".join(f"{k}={v}" for k, v in parts.items()) or "all"
