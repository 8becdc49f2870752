"""Kubernetes objects the program sends, rendered to YAML: schema-valid and clean under checkov."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from infra_testkit import STACKS, StackRun, stack_file

# Each skipped checkov check, with the reason it does not apply here.
CHECKOV_SKIPS = {
    "CKV_K8S_35": "the service contract (APPROVALS_REDIS_URL / APPROVALS_REDIS_PASSWORD) reads "
    "env vars; they come from a Secret via secretKeyRef, never from the image or the spec",
    "CKV_K8S_40": "uid 1034 is the bento image's own user (BentoML Dockerfile template); the pod "
    "is non-root, restricted PSS, no host namespaces, so a high uid adds nothing",
}


def _manifests(run: StackRun) -> list[dict[str, Any]]:
    return [
        r["inputs"]
        for r in run.resources
        if r["type"].startswith("kubernetes:") and r["custom"] and "kind" in r["inputs"]
    ]


def _kubernetes_version(stack: str) -> str:
    config = yaml.safe_load(stack_file("platform", stack).read_text())["config"]
    return f"{config['approvals:cluster']['kubernetesVersion']}.0"


@pytest.fixture(scope="module")
def rendered(app_runs: dict[str, StackRun], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev, staging and prod objects as multi-document YAML files in one folder."""
    folder = tmp_path_factory.mktemp("manifests")
    for stack in STACKS:
        text = yaml.safe_dump_all(_manifests(app_runs[stack]), sort_keys=False)
        (folder / f"{stack}.yaml").write_text(text)
    return folder


def test_every_kind_is_rendered(app: StackRun) -> None:
    run = app
    kinds = sorted(m["kind"] for m in _manifests(run))
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "Secret",
            "Deployment",
            "Deployment",
            "Deployment",
            "Service",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "Job",
        ]
    ), f"{run.name}: the service's, the outcome consumer's and the decision sink's objects"


def test_objects_match_the_cluster_schema(app: StackRun, rendered: Path) -> None:
    run = app
    version = _kubernetes_version(run.name)
    documents = list(yaml.safe_load_all((rendered / f"{run.name}.yaml").read_text()))
    assert len(documents) == 16, "all objects rendered"
    for document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{run.name} {document['kind']} invalid for {version}: {error.message}")


def test_schema_validation_can_fail(app_runs: dict[str, StackRun]) -> None:
    deployment = app_runs["dev"].named("Deployment", "approvals")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["revisionHistoryLimit"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, _kubernetes_version("dev"), strict=True)


def test_checkov_finds_nothing(rendered: Path, harness_env: dict[str, str]) -> None:
    command = [
        sys.executable,
        "-m",
        "checkov.main",
        "--directory",
        str(rendered),
        "--framework",
        "kubernetes",
        "--skip-download",  # no network: no Bridgecrew guideline or policy download
        "--output",
        "json",
        "--skip-check",
        ",".join(CHECKOV_SKIPS),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=harness_env, check=False)
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [], f"checkov findings: {failed}"
    assert summary["parsing_errors"] == 0, "checkov parsed every file"
    assert summary["passed"] >= 200, f"checkov ran its Kubernetes checks: {summary}"
