"""The registry's public facade: one object for versions and aliases."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from approvals.registry.aliases import AliasBook, RollbackPlan
from approvals.registry.layout import Layout
from approvals.registry.records import AliasState, VersionRecord, WorkflowRun
from approvals.registry.settings import RegistrySettings
from approvals.registry.store import ObjectStore, make_client
from approvals.registry.versions import Clock, PublishResult, VersionStore, utc_now

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client


class ModelRegistry:
    """Model versions and their per-environment aliases in one S3 bucket and prefix."""

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "registry/", clock: Clock = utc_now
    ) -> None:
        """Use an existing boto3 S3 client (tests point it at a local endpoint).

        Args:
            client: A boto3 S3 client.
            bucket: The bucket holding the registry.
            prefix: The key prefix under which the registry lives.
            clock: Source of timestamps (UTC).
        """
        store = ObjectStore(client, RegistrySettings(bucket=bucket, prefix=prefix).bucket)
        self.versions = VersionStore(store, Layout.under(prefix), clock)
        self.aliases = AliasBook(store, self.versions, clock)

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> ModelRegistry:
        """Create a registry (and its S3 client) from settings."""
        return cls(make_client(settings.region), settings.bucket, settings.prefix)

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
        """Publish a package directory as an immutable version (see VersionStore.publish)."""
        return self.versions.publish(
            package,
            version=version,
            git_sha=git_sha,
            published_by=published_by,
            image=image,
            gate_report=gate_report,
            workflow_run=workflow_run,
        )

    def list_versions(self, limit: int | None = None) -> list[VersionRecord]:
        """Published versions, newest first."""
        return self.versions.list_versions(limit)

    def show(self, version: str) -> VersionRecord:
        """One version's record; raises NotFoundError when it is not published."""
        return self.versions.show(version)

    def pull(self, version: str, dest: Path) -> VersionRecord:
        """Download and verify a version into ``dest`` (replaced atomically)."""
        return self.versions.pull(version, dest)

    def resolve(self, environment: str, alias: str) -> AliasState:
        """Where an alias points; raises NotFoundError when it is unset."""
        return self.aliases.resolve(environment, alias)

    def current(self, environment: str, alias: str) -> AliasState | None:
        """Where an alias points, or None when it is unset."""
        return self.aliases.current(environment, alias)

    def promote(
        self,
        environment: str,
        alias: str,
        version: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasState:
        """Point an alias at a published version and log the change."""
        return self.aliases.promote(environment, alias, version, actor=actor, reason=reason)

    def rollback(
        self,
        environment: str,
        alias: str,
        *,
        to: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasState:
        """Point an alias back at its previous version (or ``to``) and log the change."""
        return self.aliases.rollback(environment, alias, to=to, actor=actor, reason=reason)

    def plan_rollback(self, environment: str, alias: str, *, to: str | None = None) -> RollbackPlan:
        """Where a rollback would point the alias (and that version's record); writes nothing."""
        return self.aliases.plan_rollback(environment, alias, to=to)

    def history(self, environment: str, alias: str) -> list[AliasState]:
        """The audit log of an alias, oldest first."""
        return self.aliases.history(environment, alias)
