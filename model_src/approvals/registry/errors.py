"""Errors raised by the model registry, each meant to be shown to a person as one line."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class InvalidNameError(RegistryError, ValueError):
    """A version, alias, environment, path, image reference or run URL the registry refuses."""


class GateReportError(RegistryError, ValueError):
    """A gate report file that cannot be read or holds no verdict."""


class NotFoundError(RegistryError, LookupError):
    """A version or alias that the registry does not hold."""


class VersionConflictError(RegistryError):
    """A version already published with different content (versions are immutable)."""


class IntegrityError(RegistryError):
    """Stored bytes or records that do not match their recorded hashes."""


class UnavailableError(RegistryError):
    """S3 answered with a server-side failure (5xx, throttling) after boto3's own retries."""


class ConcurrentUpdateError(RegistryError):
    """An alias that kept changing under us until the retry budget ran out."""


class RollbackError(RegistryError, ValueError):
    """A rollback that has nowhere to go."""
