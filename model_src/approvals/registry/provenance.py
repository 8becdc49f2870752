"""Where a version came from, beyond its files: the gate report and the workflow run.

Pure readers: a gate report's bytes become a summary of its verdict, a run URL (or the GitHub
Actions environment) becomes a :class:`WorkflowRun`. Both are checked before any S3 request,
so a bad option fails before anything is uploaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approvals.registry.errors import GateReportError, InvalidNameError
from approvals.registry.files import sha256_bytes
from approvals.registry.records import GateReportRef, GateSummary, WorkflowRun

_RUN_URL = re.compile(
    r"^(?P<server>https?://[A-Za-z0-9.-]+(?::[0-9]+)?)"
    r"/(?P<repository>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)"
    r"/actions/runs/(?P<id>[1-9][0-9]*)(?:/attempts/(?P<attempt>[1-9][0-9]*))?/?$"
)


@dataclass(frozen=True)
class GateReportFile:
    """A gate report's bytes (to store as a blob) and the reference the record keeps."""

    body: bytes
    ref: GateReportRef


def read_gate_report(path: Path) -> GateReportFile:
    """Read a gate report file and summarize its verdict.

    Raises:
        GateReportError: When the file cannot be read or is not a gate report.
    """
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise GateReportError(f"gate report {path}: cannot read it ({exc.strerror})") from exc
    summary = gate_summary(body, str(path))
    return GateReportFile(
        body, GateReportRef(sha256=sha256_bytes(body), size=len(body), summary=summary)
    )


def gate_summary(body: bytes, source: str) -> GateSummary:
    """The verdict of a gate report: ``passed``, ``has_champion``, the count and failed checks.

    Args:
        body: The report's JSON, as :meth:`approvals.evaluation.gate.GateReport.to_dict` writes.
        source: Where it came from, named in errors.

    Raises:
        GateReportError: When it is not a JSON object with a boolean ``passed`` that agrees
            with its checks.
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GateReportError(f"gate report {source} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("passed"), bool):
        raise GateReportError(f"gate report {source} has no verdict: expected a boolean 'passed'")
    rows = _checks(doc)
    failures = tuple(str(row.get("name", "?")) for row in rows or () if row.get("passed") is False)
    if doc["passed"] and failures:
        raise GateReportError(
            f"gate report {source} says passed but {len(failures)} check(s) failed"
        )
    champion = doc.get("has_champion")
    return GateSummary(
        passed=doc["passed"],
        has_champion=champion if isinstance(champion, bool) else None,
        checks=None if rows is None else len(rows),
        failures=failures,
    )


def _checks(doc: dict[str, Any]) -> list[dict[str, Any]] | None:
    checks = doc.get("checks")
    if not isinstance(checks, list):
        return None
    return [row for row in checks if isinstance(row, dict)]


def workflow_run(url: str | None, environ: Mapping[str, str]) -> WorkflowRun | None:
    """The run that publishes: from its URL, else from GitHub Actions' variables, else None.

    Without a URL, ``GITHUB_SERVER_URL``, ``GITHUB_REPOSITORY`` and ``GITHUB_RUN_ID`` must all be
    set (``GITHUB_RUN_ATTEMPT`` is optional); a local shell has none of them.

    Raises:
        InvalidNameError: When the URL is not ``<server>/<owner>/<repo>/actions/runs/<id>``
            (optionally ``/attempts/<n>``).
    """
    if url:
        return parse_run_url(url)
    names = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if not all(environ.get(name) for name in names):
        return None
    server, repository, run_id = (environ[name] for name in names)
    attempt = environ.get("GITHUB_RUN_ATTEMPT")
    built = f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
    return parse_run_url(f"{built}/attempts/{attempt}" if attempt else built)


def parse_run_url(url: str) -> WorkflowRun:
    """A :class:`WorkflowRun` from ``<server>/<owner>/<repo>/actions/runs/<id>[/attempts/<n>]``.

    Raises:
        InvalidNameError: When the URL has another shape.
    """
    match = _RUN_URL.fullmatch(url.strip())
    if match is None:
        raise InvalidNameError(
            f"bad workflow run URL {url!r}: expected "
            "https://<server>/<owner>/<repo>/actions/runs/<id>[/attempts/<n>]"
        )
    attempt = None if match["attempt"] is None else int(match["attempt"])
    canonical = f"{match['server']}/{match['repository']}/actions/runs/{match['id']}"
    return WorkflowRun(
        id=int(match["id"]),
        attempt=attempt,
        url=canonical if attempt is None else f"{canonical}/attempts/{attempt}",
        repository=match["repository"],
    )
