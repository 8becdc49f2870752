"""Experiments on live traffic: decision logs, and the report that measures arms in money.

A decision log has one row per scored attempt: the contract's attempt columns, what was decided
(``p_approve``, ``variant``, ``model_version``, ``decided_at``) and, once reported, the labels
(:mod:`approvals.experiments.log`). :mod:`approvals.experiments.report` compares its arms:
approval rate and approved value per arm, uplift with confidence intervals, sample-ratio checks.
"""

from approvals.experiments.log import DECISION_COLUMNS, read_log, validate_log
from approvals.experiments.report import experiment_report, parse_shares, write_report

__all__ = [
    "DECISION_COLUMNS",
    "experiment_report",
    "parse_shares",
    "read_log",
    "validate_log",
    "write_report",
]
