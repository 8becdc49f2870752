"""Fixtures of the ``approvals`` tests: the session's trained package, registry buckets (moto)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from approvals.evaluation.gate import GateCheck, GateReport
from approvals.model.train import TrainResult
from approvals.registry import ModelRegistry
from tests.conftest import SERVING_CONFIG

# The serving tests' config: one model trained per session serves both (early stopping ends
# this data's training far below either round cap, so a larger cap gave the same model).
SMALL_CONFIG = SERVING_CONFIG


@pytest.fixture(scope="session")
def trained(serving_model: tuple[TrainResult, Path]) -> TrainResult:
    """The model trained once per test session on ``small_data`` (``SMALL_CONFIG``)."""
    return serving_model[0]


@pytest.fixture(scope="session")
def package_dir(serving_model: tuple[TrainResult, Path]) -> Path:
    """The trained model written as a package directory."""
    return serving_model[1]


PackageFactory = Callable[..., Path]


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    """A boto3 S3 client pointed at the moto server."""
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", config=config)


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A new, empty bucket for one test."""
    name = f"models-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def registry(s3_client: Any, bucket: str) -> ModelRegistry:
    """A registry under the default prefix of the test's bucket."""
    return ModelRegistry(s3_client, bucket)


@pytest.fixture
def make_package(tmp_path: Path) -> PackageFactory:
    """Write a model package directory shaped like `approvals train` output."""

    def make(version: str = "v1", payload: str = "booster-1", **manifest: Any) -> Path:
        root = tmp_path / "packages" / f"{version}-{uuid.uuid4().hex[:6]}"
        (root / "state").mkdir(parents=True)
        (root / "booster.txt").write_text(f"tree\n{payload}\n")
        (root / "calibrator.json").write_text(json.dumps({"method": "isotonic"}))
        (root / "state" / "features.parquet").write_bytes(bytes(range(256)) * 4)
        body = {
            "format_version": 1,
            "model_version": version,
            "created_at": "2026-05-09T10:00:00+00:00",
            "training_data_fingerprint": "sha256:" + "ab" * 32,
            "library_versions": {"lightgbm": "4.6.0"},
            "metrics": {"log_loss": 0.41, "ece": 0.004},
            **manifest,
        }
        (root / "manifest.json").write_text(json.dumps(body))
        return root

    return make


ECR_REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/approvals-prod"


@pytest.fixture
def make_image() -> Callable[..., str]:
    """An ECR image reference ``REPOSITORY:TAG@sha256:<64 hex>`` (``fill`` is one hex digit)."""

    def make(tag: str = "abc1234", fill: str = "a") -> str:
        return f"{ECR_REPOSITORY}:{tag}@sha256:{fill * 64}"

    return make


@pytest.fixture
def make_gate_report(tmp_path: Path) -> Callable[..., Path]:
    """Write a gate report the way `approvals gate --report` does (``GateReport.to_dict``)."""

    def make(passed: bool = True) -> Path:
        checks = (
            GateCheck("rows", 12_000, None, 1_000, ">=", True),
            GateCheck("log_loss", 0.412, 0.41, 0.4141, "<=", passed),
        )
        path = tmp_path / "reports" / f"gate-{uuid.uuid4().hex[:6]}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(GateReport(checks, has_champion=True).to_dict(), indent=1))
        return path

    return make
