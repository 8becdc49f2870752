"""S3 model registry: immutable versions, per-environment aliases, audit history.

Python API::

    registry = ModelRegistry.from_settings(RegistrySettings(bucket="my-models"))
    result = registry.publish(Path("models/candidate"), git_sha=sha)
    registry.promote("staging", "champion", result.record.version)
    registry.pull(registry.resolve("prod", "champion").version, Path("models/champion"))

The command line over it (``approvals registry ...``) lives in :mod:`approvals.cli.registry`.
"""

from __future__ import annotations

from approvals.registry.core import ModelRegistry
from approvals.registry.errors import (
    ConcurrentUpdateError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    RegistryError,
    RollbackError,
    UnavailableError,
    VersionConflictError,
)
from approvals.registry.names import ALIASES
from approvals.registry.records import AliasState, FileEntry, VersionRecord
from approvals.registry.settings import RegistrySettings
from approvals.registry.versions import PublishResult

__all__ = [
    "ALIASES",
    "AliasState",
    "ConcurrentUpdateError",
    "FileEntry",
    "IntegrityError",
    "InvalidNameError",
    "ModelRegistry",
    "NotFoundError",
    "PublishResult",
    "RegistryError",
    "RegistrySettings",
    "RollbackError",
    "UnavailableError",
    "VersionConflictError",
    "VersionRecord",
]
