"""S3 model registry: immutable versions, per-environment aliases, audit history.

Python API::

    registry = ModelRegistry.from_settings(RegistrySettings(bucket="my-models"))
    result = registry.publish(Path("models/candidate"), git_sha=sha)
    registry.promote("staging", "champion", result.record.version)
    registry.pull(registry.resolve("prod", "champion").version, Path("models/champion"))

The typer sub-application (``approvals registry ...``) is exposed as ``app`` and imported on
first use, so importing the API does not need typer.
"""

from __future__ import annotations

from typing import Any

from approvals.registry.core import ModelRegistry
from approvals.registry.errors import (
    ConcurrentUpdateError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    PackageError,
    RegistryError,
    RollbackError,
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
    "PackageError",
    "PublishResult",
    "RegistryError",
    "RegistrySettings",
    "RollbackError",
    "VersionConflictError",
    "VersionRecord",
]


def __getattr__(name: str) -> Any:
    if name == "app":
        from approvals.registry.cli import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
