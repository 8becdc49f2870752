"""S3 model registry: immutable versions, per-environment aliases, audit history.

Python API::

    registry = ModelRegistry.from_settings(RegistrySettings(bucket="my-models"))
    run = workflow_run(None, os.environ)  # the GitHub Actions run, or None
    result = registry.publish(
        Path("models/candidate"), git_sha=sha, image=f"{repo}:{sha}@{digest}",
        gate_report=Path("gate.json"), workflow_run=run,
    )
    registry.plan_rollback("prod", "champion").target.image  # what a rollback would deploy
    registry.promote("staging", "champion", result.record.version)
    registry.pull(registry.resolve("prod", "champion").version, Path("models/champion"))

The command line over it (``approvals registry ...``) lives in :mod:`approvals.cli.registry`.
"""

from __future__ import annotations

from approvals.registry.aliases import RollbackPlan
from approvals.registry.core import ModelRegistry
from approvals.registry.errors import (
    ConcurrentUpdateError,
    GateReportError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    RegistryError,
    RollbackError,
    UnavailableError,
    VersionConflictError,
)
from approvals.registry.names import ALIASES
from approvals.registry.provenance import workflow_run
from approvals.registry.records import (
    AliasState,
    FileEntry,
    GateReportRef,
    GateSummary,
    ImageRef,
    VersionRecord,
    WorkflowRun,
)
from approvals.registry.settings import RegistrySettings
from approvals.registry.versions import PublishResult

__all__ = [
    "ALIASES",
    "AliasState",
    "ConcurrentUpdateError",
    "FileEntry",
    "GateReportError",
    "GateReportRef",
    "GateSummary",
    "ImageRef",
    "IntegrityError",
    "InvalidNameError",
    "ModelRegistry",
    "NotFoundError",
    "PublishResult",
    "RegistryError",
    "RegistrySettings",
    "RollbackError",
    "RollbackPlan",
    "UnavailableError",
    "VersionConflictError",
    "VersionRecord",
    "WorkflowRun",
    "workflow_run",
]
