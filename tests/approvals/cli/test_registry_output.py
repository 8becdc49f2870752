"""How `approvals registry show` words a gate verdict (pure, no registry needed)."""

from __future__ import annotations

import pytest

from approvals.cli.registry_output import gate_text
from approvals.registry import GateReportRef, GateSummary

SHA = "0123456789ab" + "c" * 52


@pytest.mark.parametrize(
    ("summary", "text"),
    [
        (
            GateSummary(passed=True, has_champion=True, checks=7),
            "passed: 7 checks against the champion",
        ),
        (
            GateSummary(passed=True, has_champion=False, checks=3),
            "passed: 3 checks on absolute thresholds",
        ),
        (
            GateSummary(passed=False, has_champion=True, checks=7, failures=("log_loss", "ece")),
            "FAILED: 2 of 7 checks against the champion (log_loss, ece)",
        ),
        (
            GateSummary(passed=False, has_champion=False, checks=1, failures=("rows",)),
            "FAILED: 1 of 1 check on absolute thresholds (rows)",
        ),
        (GateSummary(passed=False), "FAILED"),
        (GateSummary(passed=True), "passed"),
    ],
)
def test_gate_verdict_reads_as_the_gate_prints_it(summary: GateSummary, text: str) -> None:
    report = GateReportRef(sha256=SHA, size=100, summary=summary)
    assert gate_text(report) == f"{text} [report sha256:0123456789ab]", f"wording of {summary}"
