"""Tests for approvals.evaluation.gate: config loading, pass/fail cases, report rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from approvals.errors import ConfigError
from approvals.evaluation import gate
from approvals.model import metrics

CONFIG = gate.GateConfig(
    min_rows=1000,
    relative=gate.RelativeLimits(max_log_loss_worsening=0.005, max_ece_worsening=0.002),
    absolute=gate.AbsoluteLimits(max_ece=0.02, min_roc_auc=0.70),
    segments=gate.SegmentGuardrails(
        columns=["card_brand"], min_count=500, max_log_loss_worsening=0.03
    ),
)


@pytest.fixture(scope="module")
def truth() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    p = rng.beta(1.2, 1.2, 6000)  # spread-out probabilities: AUC well above 0.7
    y = (rng.uniform(size=p.size) < p).astype(int)
    brand = np.where(np.arange(p.size) % 3 == 0, "amex", "visa")
    return y, p, brand


def summary(y: np.ndarray, p: np.ndarray, brand: np.ndarray) -> dict[str, Any]:
    return metrics.summarize(y, p) | {"segments": metrics.by_segment({"card_brand": brand}, y, p)}


def test_packaged_config_loads() -> None:
    cfg = gate.load_gate_config()
    assert cfg.relative.max_log_loss_worsening == 0.005, "issue's 0.5 % log-loss margin"
    assert cfg.absolute.min_roc_auc == 0.70 and cfg.absolute.max_ece == 0.02, "first-model bar"


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    raw = gate.load_gate_config().model_dump()
    raw["segments"]["min_count"] = 0
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"key 'segments\.min_count'"):
        gate.load_gate_config(path)


def test_first_model_passes_on_absolute_thresholds(truth: tuple[np.ndarray, ...]) -> None:
    report = gate.compare(summary(*truth), None, CONFIG)
    assert report.passed, report.render()
    assert {c.name for c in report.checks} == {"rows", "ece (absolute)", "roc_auc (absolute)"}, (
        "no champion: absolute checks only"
    )


def test_first_model_fails_when_uninformative(truth: tuple[np.ndarray, ...]) -> None:
    y, _, brand = truth
    report = gate.compare(summary(y, np.full(y.size, y.mean()), brand), None, CONFIG)
    assert not report.passed, "a constant model has AUC 0.5 and must fail"
    assert [c.name for c in report.failures] == ["roc_auc (absolute)"], "AUC is the failure"


def test_equal_candidate_passes_against_champion(truth: tuple[np.ndarray, ...]) -> None:
    s = summary(*truth)
    report = gate.compare(s, s, CONFIG)
    assert report.passed, report.render()
    assert any(c.name == "log_loss card_brand=visa" for c in report.checks), "segments guarded"


def test_worse_candidate_fails_with_readable_report(truth: tuple[np.ndarray, ...]) -> None:
    y, p, brand = truth
    worse = np.clip(p * 0.8 + 0.15, 0, 1)  # miscalibrated: log loss and ECE both worsen
    report = gate.compare(summary(y, worse, brand), summary(y, p, brand), CONFIG)
    names = {c.name for c in report.failures}
    assert not report.passed, "a worse candidate must not be promoted"
    assert {"log_loss", "ece"} <= names, f"overall checks fail: {names}"
    text = report.render()
    assert "FAILED" in text.splitlines()[-1] and "FAIL" in text, "verdict on the last line"
    assert "log_loss card_brand=visa" in text, "segment rows are listed"


def test_segment_guardrail_catches_a_local_regression(truth: tuple[np.ndarray, ...]) -> None:
    # given a candidate that is better overall but much worse on amex
    y, p, brand = truth
    champ = np.clip(p * 0.8 + 0.1, 0, 1)
    cand = np.where(brand == "amex", np.clip(p * 0.6 + 0.2, 0, 1), p)
    report = gate.compare(summary(y, cand, brand), summary(y, champ, brand), CONFIG)
    failed = [c.name for c in report.failures]
    assert failed == ["log_loss card_brand=amex"], f"only the amex guardrail fails: {failed}"


def test_different_data_fails(truth: tuple[np.ndarray, ...]) -> None:
    y, p, brand = truth
    half = summary(y[:3000], p[:3000], brand[:3000])
    report = gate.compare(half, summary(y, p, brand), CONFIG)
    assert "same data: rows" in {c.name for c in report.failures}, "different rows are caught"


def test_too_few_rows_fail(truth: tuple[np.ndarray, ...]) -> None:
    y, p, brand = truth
    report = gate.compare(summary(y[:500], p[:500], brand[:500]), None, CONFIG)
    assert report.failures[0].name == "rows", "500 rows are below min_rows"


def test_missing_metric_or_segment_column_fails(truth: tuple[np.ndarray, ...]) -> None:
    s = summary(*truth)
    no_auc = s | {"roc_auc": None}
    assert not gate.compare(no_auc, None, CONFIG).passed, "an unmeasured AUC never passes"
    no_segments = {k: v for k, v in s.items() if k != "segments"}
    report = gate.compare(no_segments, s, CONFIG)
    assert [c.name for c in report.failures] == ["segment column card_brand reported"], (
        "a configured guardrail that cannot run fails"
    )


def test_accepts_evaluation_report_shape(truth: tuple[np.ndarray, ...]) -> None:
    s = summary(*truth)
    report_shape = {"overall": metrics.summarize(*truth[:2]), "segments": s["segments"]}
    assert gate.compare(report_shape, s, CONFIG).passed, "the metrics.json shape is accepted"
    with pytest.raises(ValueError, match="lacks log_loss"):
        gate.compare({"n": 1, "positives": 1, "ece": 0.1, "roc_auc": 0.7}, None, CONFIG)


def test_absolute_checks_can_apply_with_champion(truth: tuple[np.ndarray, ...]) -> None:
    floor = gate.AbsoluteLimits(max_ece=0.02, min_roc_auc=0.99, apply_with_champion=True)
    strict = CONFIG.model_copy(update={"absolute": floor})
    s = summary(*truth)
    report = gate.compare(s, s, strict)
    assert [c.name for c in report.failures] == ["roc_auc (absolute)"], "floor applies too"


def test_to_dict_is_json(truth: tuple[np.ndarray, ...]) -> None:
    s = summary(*truth)
    out = gate.compare(s, s, CONFIG).to_dict()
    parsed = json.loads(json.dumps(out, allow_nan=False))
    assert parsed["passed"] is True and parsed["has_champion"] is True, "verdict in the dict"
    assert parsed["checks"][0]["name"] == "rows", "checks in order"
