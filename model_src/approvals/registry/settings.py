"""Typed settings of the registry: which bucket and key prefix, from options or environment."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from approvals.registry.names import check_bucket, normalize_prefix


class RegistrySettings(BaseSettings):
    """Where the registry lives.

    Read from ``APPROVALS_REGISTRY_BUCKET``, ``APPROVALS_REGISTRY_PREFIX`` and
    ``APPROVALS_REGISTRY_REGION`` unless given explicitly. The S3 endpoint is boto3's own
    business (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``), credentials likewise.
    """

    model_config = SettingsConfigDict(env_prefix="APPROVALS_REGISTRY_", frozen=True, extra="forbid")

    bucket: str
    prefix: str = "registry/"
    region: str | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        return check_bucket(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return normalize_prefix(value)
