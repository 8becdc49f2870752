"""Promotion gate: may a candidate model replace the champion? Pure comparison, no I/O.

Both models must have been scored on the same labelled data. An ``EvalSummary`` is a mapping
in either of two shapes:

- ``metrics.summarize(y, p)`` plus ``"segments": metrics.by_segment(...)``; or
- the evaluation report: ``{"overall": metrics.summarize(...), "segments": {...}}``.

It must hold ``n``, ``positives``, ``log_loss``, ``ece`` and ``roc_auc``; ``segments`` maps a
column to ``{value: summary}`` and is needed only for segment guardrails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from approvals.config import read_config

DEFAULT_GATE = "gate.yaml"
EvalSummary = Mapping[str, Any]
Share = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RelativeLimits(_Strict):
    """Margins against the champion."""

    max_log_loss_worsening: Share
    max_ece_worsening: Share


class AbsoluteLimits(_Strict):
    """Floors for a first model (or for every model with ``apply_with_champion``)."""

    max_ece: Annotated[float, Field(gt=0, le=1)]
    min_roc_auc: Annotated[float, Field(ge=0, le=1)]
    apply_with_champion: bool = False


class SegmentGuardrails(_Strict):
    """Per-segment log-loss guardrails (``columns: null`` guards every reported column)."""

    columns: list[str] | None
    min_count: Annotated[int, Field(ge=1)]
    max_log_loss_worsening: Share


class GateConfig(_Strict):
    """Promotion gate settings; see ``data/gate.yaml``."""

    min_rows: Annotated[int, Field(ge=1)]
    relative: RelativeLimits
    absolute: AbsoluteLimits
    segments: SegmentGuardrails


def load_gate_config(path: str | os.PathLike[str] | None = None) -> GateConfig:
    """Load gate settings (``None``: the packaged ``data/gate.yaml``).

    Raises:
        approvals.errors.ConfigError: missing, not YAML or invalid file (names the key).
    """
    return read_config(GateConfig, path, DEFAULT_GATE)


@dataclass(frozen=True)
class GateCheck:
    """One row of the report: ``candidate <op> limit`` must hold."""

    name: str
    candidate: float | None
    champion: float | None
    limit: float | None
    op: Literal["<=", ">=", "=="]
    passed: bool


@dataclass(frozen=True)
class GateReport:
    """All checks and the verdict."""

    checks: tuple[GateCheck, ...]
    has_champion: bool

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: verdict, whether a champion existed, and every check."""
        rows = [asdict(c) for c in self.checks]
        return {"passed": self.passed, "has_champion": self.has_champion, "checks": rows}

    def render(self) -> str:
        """A readable table of the checks with the verdict on the last line."""
        head = ("check", "candidate", "champion", "limit", "result")
        rows = [
            (c.name, _fmt(c.candidate), _fmt(c.champion), f"{c.op} {_fmt(c.limit)}", _ok(c))
            for c in self.checks
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([*lines, "", self._verdict()])

    def _verdict(self) -> str:
        against = "against the champion" if self.has_champion else "on absolute thresholds"
        if self.passed:
            return f"PASSED: all {len(self.checks)} checks {against}"
        return f"FAILED: {len(self.failures)} of {len(self.checks)} checks {against}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.5f}"


def _ok(check: GateCheck) -> str:
    return "pass" if check.passed else "FAIL"


def _check(
    name: str,
    candidate: float | None,
    limit: float | None,
    op: Literal["<=", ">=", "=="],
    champion: float | None = None,
) -> GateCheck:
    if candidate is None or limit is None:
        return GateCheck(name, candidate, champion, limit, op, False)
    ok = {"<=": candidate <= limit, ">=": candidate >= limit, "==": candidate == limit}[op]
    return GateCheck(name, candidate, champion, limit, op, bool(ok))


def _overall(summary: EvalSummary) -> Mapping[str, Any]:
    overall = summary.get("overall", summary)
    missing = [k for k in ("n", "positives", "log_loss", "ece", "roc_auc") if k not in overall]
    if missing:
        raise ValueError(f"evaluation summary lacks {', '.join(missing)}")
    return overall


def _worse_by(value: float | None, share: float) -> float | None:
    return None if value is None else value * (1 + share)


def _plus(value: float | None, margin: float) -> float | None:
    return None if value is None else value + margin


def _absolute_checks(cand: Mapping[str, Any], config: GateConfig) -> list[GateCheck]:
    limits = config.absolute
    return [
        _check("ece (absolute)", cand["ece"], limits.max_ece, "<="),
        _check("roc_auc (absolute)", cand["roc_auc"], limits.min_roc_auc, ">="),
    ]


def _relative_checks(
    cand: Mapping[str, Any], champ: Mapping[str, Any], config: GateConfig
) -> list[GateCheck]:
    rel = config.relative
    ll_limit = _worse_by(champ["log_loss"], rel.max_log_loss_worsening)
    return [
        _check("same data: rows", cand["n"], champ["n"], "==", champ["n"]),
        _check(
            "same data: approvals", cand["positives"], champ["positives"], "==", champ["positives"]
        ),
        _check("log_loss", cand["log_loss"], ll_limit, "<=", champ["log_loss"]),
        _check("ece", cand["ece"], _plus(champ["ece"], rel.max_ece_worsening), "<=", champ["ece"]),
    ]


def _segment_checks(
    candidate: EvalSummary, champion: EvalSummary, config: GateConfig
) -> list[GateCheck]:
    guard = config.segments
    cand_segs, champ_segs = candidate.get("segments", {}), champion.get("segments", {})
    columns = guard.columns if guard.columns is not None else sorted(cand_segs)
    checks: list[GateCheck] = []
    for column in columns:
        if column not in cand_segs or column not in champ_segs:
            checks.append(_check(f"segment column {column} reported", None, None, "=="))
            continue
        checks.extend(_column_checks(column, cand_segs[column], champ_segs[column], guard))
    return checks


def _column_checks(
    column: str,
    cand: Mapping[str, Mapping[str, Any]],
    champ: Mapping[str, Mapping[str, Any]],
    guard: SegmentGuardrails,
) -> list[GateCheck]:
    checks = []
    for value, summary in cand.items():
        other = champ.get(value)
        if other is None or min(summary.get("n", 0), other.get("n", 0)) < guard.min_count:
            continue
        limit = _worse_by(other.get("log_loss"), guard.max_log_loss_worsening)
        name = f"log_loss {column}={value}"
        checks.append(_check(name, summary.get("log_loss"), limit, "<=", other.get("log_loss")))
    return checks


def compare(candidate: EvalSummary, champion: EvalSummary | None, config: GateConfig) -> GateReport:
    """Compare a candidate with the champion on the same data (or alone, without champion).

    Args:
        candidate: the candidate's evaluation summary (shape in the module docstring).
        champion: the champion's summary on the same data, or ``None`` for a first model.
        config: margins and thresholds.

    Returns:
        The report; ``report.passed`` is the verdict. A metric that is missing (``None``)
        fails its check: the gate never passes on what it could not measure.

    Raises:
        ValueError: a summary lacks a required key.
    """
    cand = _overall(candidate)
    checks = [_check("rows", cand["n"], config.min_rows, ">=")]
    if champion is None or config.absolute.apply_with_champion:
        checks += _absolute_checks(cand, config)
    if champion is not None:
        checks += _relative_checks(cand, _overall(champion), config)
        checks += _segment_checks(candidate, champion, config)
    return GateReport(tuple(checks), has_champion=champion is not None)
