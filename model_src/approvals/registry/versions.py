"""Publishing, listing, showing and pulling immutable model versions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from approvals.atomic import staged_dir
from approvals.errors import PackageError
from approvals.registry.errors import IntegrityError, NotFoundError, VersionConflictError
from approvals.registry.files import (
    check_destination,
    content_hash,
    read_manifest,
    scan_package,
    sha256_bytes,
)
from approvals.registry.layout import Layout
from approvals.registry.names import check_git_sha, check_relative_path, check_version
from approvals.registry.provenance import GateReportFile, read_gate_report
from approvals.registry.records import FileEntry, ImageRef, VersionRecord, WorkflowRun, parse
from approvals.registry.store import ObjectStore

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class PublishResult:
    """What publish did: the version record now in the registry and whether this call wrote it."""

    record: VersionRecord
    created: bool


class VersionStore:
    """Immutable versions: files uploaded first, the version record written last."""

    def __init__(self, store: ObjectStore, layout: Layout, clock: Clock = utc_now) -> None:
        """Bind to an object store and key layout."""
        self.store, self.layout, self.clock = store, layout, clock

    def publish(
        self,
        package: Path,
        *,
        version: str | None = None,
        git_sha: str | None = None,
        published_by: str | None = None,
        image: str | None = None,
        gate_report: Path | None = None,
        workflow_run: WorkflowRun | None = None,
    ) -> PublishResult:
        """Publish a model package directory as an immutable version.

        Publishing the same content (and the same image, or none) under the same version again
        is a no-op (safe to retry) that keeps the first record, gate report and run included;
        different content, or another image, under a published version is refused.

        Args:
            package: The model package directory (must hold manifest.json).
            version: The version name; defaults to the manifest's ``model_version``.
            git_sha: The commit the model was built from.
            published_by: Who published it (for the record only).
            image: The image built from it, ``REPOSITORY:TAG@sha256:<64 hex>``.
            gate_report: The gate report file (``approvals gate --report``), stored as a blob.
            workflow_run: The CI run that publishes (see :mod:`approvals.registry.provenance`).

        Raises:
            PackageError: When the package cannot be read or names no version.
            InvalidNameError: When the image reference has the wrong shape.
            GateReportError: When the gate report cannot be read or holds no verdict.
            VersionConflictError: When the version exists with different content, with
                another image, or without an image while one is given.
        """
        files = scan_package(package)
        manifest = read_manifest(package)
        name = _version_name(manifest, version)
        origin = _Origin(
            git_sha=check_git_sha(git_sha),
            published_by=published_by,
            image=None if image is None else ImageRef.parse(image),
            gate_report=None if gate_report is None else read_gate_report(gate_report),
            workflow_run=workflow_run,
        )
        digest = content_hash(files)
        existing = self.find(name)
        if existing is not None:
            return _same_or_conflict(existing, digest, origin.image)
        self._upload(package, files)
        if origin.gate_report is not None:
            self._upload_blob(origin.gate_report.ref.sha256, origin.gate_report.body)
        record = _record(name, digest, files, manifest, origin, self.clock())
        return self._commit(record)

    def _upload(self, package: Path, files: tuple[FileEntry, ...]) -> None:
        for entry in files:
            key = self.layout.blob(entry.sha256)
            if self.store.exists(key):
                continue
            data = (package / entry.path).read_bytes()
            if sha256_bytes(data) != entry.sha256:
                raise PackageError(f"{entry.path} changed while it was being published")
            self.store.put_new(key, data)

    def _upload_blob(self, sha256: str, data: bytes) -> None:
        key = self.layout.blob(sha256)
        if not self.store.exists(key):
            self.store.put_new(key, data)

    def _commit(self, record: VersionRecord) -> PublishResult:
        key = self.layout.version(record.version)
        created = self.store.put_new(key, record.to_bytes())
        winner = self.find(record.version)
        if winner is None:
            raise IntegrityError(f"version record {key} vanished right after it was written")
        if created and winner.publish_id == record.publish_id:
            return PublishResult(record=winner, created=True)
        return _same_or_conflict(winner, record.content_hash, record.image)

    def find(self, version: str) -> VersionRecord | None:
        """The record of a version, or None when it is not (completely) published."""
        key = self.layout.version(check_version(version))
        stored = self.store.get(key)
        return None if stored is None else parse(VersionRecord, stored.body, key)

    def show(self, version: str) -> VersionRecord:
        """The record of a published version.

        Raises:
            NotFoundError: When the version is not published.
        """
        record = self.find(version)
        if record is None:
            raise NotFoundError(f"version {version!r} is not published")
        return record

    def names(self) -> list[str]:
        """Names of every published version, sorted."""
        prefix = self.layout.versions
        keys = self.store.keys(prefix)
        return sorted(k[len(prefix) : -len(".json")] for k in keys if k.endswith(".json"))

    def list_versions(self, limit: int | None = None) -> list[VersionRecord]:
        """Records of published versions, newest publication first.

        Args:
            limit: Keep at most this many (after sorting).
        """
        records = [self.show(name) for name in self.names()]
        records.sort(key=lambda record: record.published_at, reverse=True)
        return records if limit is None else records[:limit]

    def pull(self, version: str, dest: Path) -> VersionRecord:
        """Download a version into ``dest``, verifying every file, replacing ``dest`` atomically.

        The files land in a hidden directory beside ``dest`` first; only when every hash matches
        does it replace ``dest``, so a failed pull leaves the previous local copy as it was.

        Raises:
            NotFoundError: When the version is not published.
            IntegrityError: When a stored file is missing or does not match its hash.
            PackageError: When ``dest`` exists and is not a directory.
        """
        record = self.show(version)
        _check_record(record)
        check_destination(dest)
        with staged_dir(dest) as staging:
            for entry in record.files:
                self._download(entry, staging)
        return record

    def _download(self, entry: FileEntry, staging: Path) -> None:
        key = self.layout.blob(entry.sha256)
        stored = self.store.get(key)
        if stored is None:
            raise IntegrityError(f"file {entry.path} is missing from the registry ({key})")
        if len(stored.body) != entry.size or sha256_bytes(stored.body) != entry.sha256:
            raise IntegrityError(f"file {entry.path} is corrupted in the registry ({key})")
        target = staging.joinpath(*check_relative_path(entry.path).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(stored.body)


def _version_name(manifest: dict[str, Any], version: str | None) -> str:
    declared = manifest.get("model_version")
    if version is None and not isinstance(declared, str):
        raise PackageError("manifest.json has no model_version: pass --version")
    if version is not None and isinstance(declared, str) and declared != version:
        raise PackageError(
            f"--version {version!r} differs from manifest model_version {declared!r}"
        )
    return check_version(version if version is not None else str(declared))


def _same_or_conflict(
    existing: VersionRecord, digest: str, image: ImageRef | None
) -> PublishResult:
    """A retry of what is published is a no-op; anything else under its name is refused."""
    if existing.content_hash != digest:
        raise VersionConflictError(
            f"version {existing.version!r} is already published with different content "
            f"({existing.content_hash}); versions are immutable, choose a new version"
        )
    if image is None or existing.image == image:
        return PublishResult(record=existing, created=False)
    if existing.image is None:
        raise VersionConflictError(
            f"version {existing.version!r} is already published without an image and records "
            f"are immutable, so it cannot gain {image.reference}: publish a new version"
        )
    raise VersionConflictError(
        f"version {existing.version!r} is already published with image "
        f"{existing.image.reference}, not {image.reference}: a version keeps its image, "
        "publish a new version"
    )


def _check_record(record: VersionRecord) -> None:
    for entry in record.files:
        check_relative_path(entry.path)
    if content_hash(record.files) != record.content_hash:
        raise IntegrityError(f"version {record.version!r}: file list does not match content hash")


@dataclass(frozen=True)
class _Origin:
    """Where a version comes from, beyond its files (checked before any request)."""

    git_sha: str | None
    published_by: str | None
    image: ImageRef | None
    gate_report: GateReportFile | None
    workflow_run: WorkflowRun | None


def _record(
    version: str,
    digest: str,
    files: tuple[FileEntry, ...],
    manifest: dict[str, Any],
    origin: _Origin,
    now: datetime,
) -> VersionRecord:
    return VersionRecord(
        version=version,
        content_hash=digest,
        files=files,
        published_at=now.isoformat(),
        publish_id=uuid.uuid4().hex,
        git_sha=origin.git_sha,
        published_by=origin.published_by,
        image=origin.image,
        gate_report=None if origin.gate_report is None else origin.gate_report.ref,
        workflow_run=origin.workflow_run,
        model_version=_optional(manifest, "model_version", str),
        format_version=_optional(manifest, "format_version", int),
        created_at=_optional(manifest, "created_at", str),
        training_data_fingerprint=_optional(manifest, "training_data_fingerprint", str),
        metrics=_optional(manifest, "metrics", dict) or {},
        library_versions=_optional(manifest, "library_versions", dict) or {},
    )


def _optional(manifest: dict[str, Any], key: str, kind: type) -> Any:
    value = manifest.get(key)
    if kind is int and isinstance(value, bool):
        return None
    return value if isinstance(value, kind) else None
