"""The monitor's thresholds: one strict settings model, defaults a payments team can start with.

Every alert needs two things: an effect large enough to matter (a PSI, a gap in approval
rate) and, where rows are few, evidence that it is not chance (a test whose p-values are
adjusted over the segments of the window by Benjamini-Hochberg). A YAML file passed with
``--config`` overrides any of them; unknown keys are refused.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from approvals.config import read_config

__all__ = ["MonitorSettings", "load_settings"]


class MonitorSettings(BaseModel):
    """Thresholds of :func:`approvals.monitoring.monitor.monitor_window` (docs/monitoring.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psi_warn: float = Field(0.10, gt=0)  # the usual convention: 0.1 moderate, 0.25 major shift
    psi_alert: float = Field(0.25, gt=0)
    # a feature alerts only above mean + k sd of its PSI over reference chunks of the window's
    # length, when that is higher than the convention (NannyML's default, k = 3)
    chunk_sigmas_warn: float = Field(2.0, ge=0)
    chunk_sigmas_alert: float = Field(3.0, ge=0)
    min_rows: int = Field(100, ge=10)  # rows a window needs before its distributions count
    # Benjamini-Hochberg false discovery rate of each family of tests of a window: run hourly,
    # the monitor makes ~720 runs a month, so 0.001 keeps chance alerts under one a month
    # per family (0.01 would give about seven)
    fdr: float = Field(0.001, gt=0, lt=1)
    min_segment_rows: int = Field(30, ge=5)  # rows a segment needs before it is tested
    segment_psi: float = Field(0.25, gt=0)  # effect size of a merchant's amount shift
    missing_increase: float = Field(0.10, gt=0, le=1)  # share of rows newly missing a feature
    calibration_gap: float = Field(0.05, gt=0, le=1)  # |observed - predicted| approval rate
    # the share of the calibration gap and the rate drop the tests must rule out: H0 is "the
    # gap is at most margin x threshold", not "the gap is zero"
    margin: float = Field(0.5, ge=0, lt=1)
    ece_increase: float = Field(0.02, gt=0, le=1)  # above the training test split's ECE
    ece_resamples: int = Field(1999, ge=19)  # its p-value is at least 1 / (resamples + 1)
    rate_drop: float = Field(0.10, gt=0, le=1)  # approval rate below the reference by this much
    skew_rtol: float = Field(1e-4, ge=0)
    skew_atol: float = Field(1e-6, ge=0)
    skew_share: float = Field(0.01, ge=0, le=1)  # share of rows whose logged value disagrees
    seed: int = 0  # of the ECE's resampling: the same log gives the same report


def load_settings(path: str | os.PathLike[str] | None) -> MonitorSettings:
    """The settings of a YAML file, or the defaults when ``path`` is None.

    Raises:
        approvals.errors.ConfigError: missing, not YAML or invalid file (names the key).
    """
    if path is None:
        return MonitorSettings()
    return read_config(MonitorSettings, path, "")
