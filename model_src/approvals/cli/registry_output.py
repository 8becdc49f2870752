"""How ``approvals registry`` shows a version record and a rollback plan (pure functions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from approvals.registry.aliases import RollbackPlan
    from approvals.registry.records import GateReportRef, VersionRecord

_WIDTH = 10


def record_lines(record: VersionRecord) -> list[str]:
    """Every line of ``show``: identity, origin, image, gate verdict and workflow run."""
    published = record.published_at + (f" by {record.published_by}" if record.published_by else "")
    files = f"{_count(len(record.files), 'file')}, {record.size:,} bytes"
    return [
        _line("version", record.version),
        _line("content", f"{record.content_hash} ({files})"),
        _line("published", published),
        _line("git_sha", record.git_sha),
        *provenance_lines(record),
    ]


def provenance_lines(record: VersionRecord) -> list[str]:
    """The image, gate and run lines (``-`` where the record has none)."""
    image = None if record.image is None else record.image.reference
    return [
        _line("image", image),
        _line("gate", None if record.gate_report is None else gate_text(record.gate_report)),
        _line("run", None if record.workflow_run is None else record.workflow_run.url),
    ]


def gate_text(report: GateReportRef) -> str:
    """``passed: 5 checks against the champion`` or ``FAILED: 2 of 5 checks ... (a, b)``."""
    summary = report.summary
    against = {True: "against the champion", False: "on absolute thresholds", None: ""}
    counted = "" if summary.checks is None else _count(summary.checks, "check")
    if not summary.passed and counted:
        counted = f"{len(summary.failures)} of {counted}"
    detail = " ".join(part for part in (counted, against[summary.has_champion]) if part)
    verdict = ("passed" if summary.passed else "FAILED") + (f": {detail}" if detail else "")
    names = f" ({', '.join(summary.failures)})" if summary.failures else ""
    return f"{verdict}{names} [report sha256:{report.sha256[:12]}]"


def plan_lines(plan: RollbackPlan) -> list[str]:
    """What ``rollback --dry-run`` prints: the move, then the target's record."""
    where = f"{plan.current.environment}/{plan.current.alias}"
    if plan.changes:
        head = f"{where}: a rollback would move {plan.current.version} -> {plan.target.version}"
    else:
        head = f"{where}: already at {plan.target.version}, a rollback would change nothing"
    return [f"{head} (dry run, nothing written)", *record_lines(plan.target)]


def plan_json(plan: RollbackPlan) -> dict[str, Any]:
    """What ``rollback --dry-run --json`` prints: the target's record (as ``show --json``
    prints it, so ``.version``, ``.git_sha``, ``.image.reference`` read the same) and the move."""
    return {
        **plan.target.model_dump(mode="json"),
        "dry_run": True,
        "environment": plan.current.environment,
        "alias": plan.current.alias,
        "current_version": plan.current.version,
        "changes": plan.changes,
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _line(key: str, value: str | None) -> str:
    return f"{key:<{_WIDTH}} {value if value else '-'}"
