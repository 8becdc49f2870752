"""The alert rules file: valid Prometheus rules, on metrics the monitor really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from approvals.monitoring.alerts import KINDS
from approvals.monitoring.export import registry_of

RULES = Path(__file__).resolve().parents[3] / "ops" / "prometheus" / "monitor-rules.yaml"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
REPORT = {
    "alerts": [{"kind": "approval_rate", "segment": "route_id=r1", "value": -0.3,
                "threshold": -0.1}],
    "metrics": {
        "window": {"rows": 10, "scored": 9, "labelled": 8, "hours": 6.0},
        "model": {"version": "v1"},
        "feature_drift": {"features": {"x": {"psi": 0.1, "alert": 0.25}}},
        "input_drift": {"amount": {"psi": 0.01, "alert": 0.25}},
        "prediction_drift": {"psi": 0.02, "alert": 0.25},
        "calibration": {"ece": 0.01, "segments": [{"segment": "all", "gap": 0.0}]},
        "approval_rate": {"segments": [{"segment": "route_id=r1", "observed": 0.5,
                                        "reference": 0.8, "model": 0.78}]},
        "skew": {"mismatched": {"x": {"share": 0.0}}},
    },
}  # fmt: skip


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}, "a rules file holds groups only"
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_file_has_the_structure_prometheus_requires() -> None:
    document = yaml.safe_load(RULES.read_text())
    names = [g["name"] for g in document["groups"]]
    assert len(names) == len(set(names)) and all(names), "groups have unique names"
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.keys()
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule["alert"]
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
            assert "for" not in rule or DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"page", "ticket"}
            assert rule["annotations"]["summary"]


def test_the_rules_use_only_metrics_and_kinds_the_monitor_exports() -> None:
    exported = set(re.findall(r"^# TYPE (\S+)", generate_latest(registry_of(REPORT)).decode(),
                              re.MULTILINE))  # fmt: skip
    for rule in _rules():
        for metric in re.findall(r"approvals_monitor_[a-z_]+", rule["expr"]):
            assert metric in exported, f"{rule['alert']}: {metric} is not exported"
        for kinds in re.findall(r'approvals_monitor_alert\{\s*kind=~?"([^"]+)"', rule["expr"]):
            assert set(kinds.split("|")) <= set(KINDS), f"{rule['alert']}: {kinds}"
    covered = {k for rule in _rules() for k in KINDS if k in rule["expr"]}
    assert covered == set(KINDS), f"kinds without a rule: {set(KINDS) - covered}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
