"""Which model version and image the application stack deploys, read from the registry.

The registry (``approvals.registry``, layout in ``approvals/registry/layout.py``) is the record
of what was released: each version's record holds the image reference it was published with
(``REPOSITORY:TAG@sha256:...``) and each environment's ``champion`` alias names the version
that last passed its rollout. The stack deploys, in this order:

1. ``approvals:release.modelVersion`` when set (the pipeline, for one rollout), else
2. the champion of this environment (so a later manual ``pulumi up`` redeploys what is live,
   never an older release), else
3. nothing that needs an image (a first ``pulumi up`` before any release).

The image always comes from the version's own record, so a version and its image travel as
a pair. Reads are plain invokes (``aws.s3.getObjects`` / ``getObject``), made before any
resource is declared, because whether the Deployment exists depends on them. The alias
pointer is a cache of its append-only history; entries past it (a writer that died between
its two writes) win, as they do for the registry's own readers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REGISTRY = "registry/"
CHAMPION = "champion"
_SEQ_DIGITS = 10  # approvals.registry.layout zero-pads sequence numbers to ten digits

# (bucket, prefix, start_after) -> keys; (bucket, key) -> body text
ListKeys = Callable[[str, str, str | None], list[str]]
ReadText = Callable[[str, str], str]


class ReleaseError(ValueError):
    """The registry cannot name a deployable release; the message says why."""


@dataclass(frozen=True)
class Release:
    """What to deploy."""

    model_version: str
    image: str  # REPOSITORY:TAG@sha256:<hex>
    source: str  # "config" or "champion"

    @property
    def tag(self) -> str:
        """The image tag (the model version the release job tagged it with)."""
        return self.image.split("@", 1)[0].rsplit(":", 1)[1]


class RegistryReader:
    """Reads registry documents through two injected calls (Pulumi invokes, or fakes)."""

    def __init__(self, bucket: str, list_keys: ListKeys, read_text: ReadText) -> None:
        self.bucket, self._list, self._read = bucket, list_keys, read_text

    def document(self, key: str) -> dict[str, Any] | None:
        """The JSON document at ``key``, or None when there is none."""
        if key not in self._list(self.bucket, key, None):
            return None
        body = self._read(self.bucket, key)
        if not body:
            raise ReleaseError(
                f"s3://{self.bucket}/{key} has no readable body (it must be stored as "
                "application/json, as `approvals registry` writes it)"
            )
        try:
            found = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ReleaseError(f"s3://{self.bucket}/{key} is not JSON: {exc}") from None
        if not isinstance(found, dict):
            raise ReleaseError(f"s3://{self.bucket}/{key} is not a JSON object")
        return found

    def champion(self, environment: str, alias: str = CHAMPION) -> str | None:
        """The version the alias names now, following the history past a stale pointer."""
        base = f"{REGISTRY}aliases/{environment}/{alias}"
        pointer = self.document(f"{base}.json")
        seq = int(pointer["seq"]) if pointer else 0
        history = f"{base}/history/"
        later = self._list(self.bucket, history, f"{history}{seq:0{_SEQ_DIGITS}d}.json")
        newest = self.document(max(later)) if later else pointer
        return str(newest["version"]) if newest else None

    def record(self, version: str) -> dict[str, Any] | None:
        """A version's record."""
        return self.document(f"{REGISTRY}versions/{version}.json")


def resolve_release(
    reader: RegistryReader, environment: str, requested: str | None
) -> Release | None:
    """The release to deploy (see the module docstring), or None before the first one.

    Raises:
        ReleaseError: the requested or champion version is unknown, or has no image recorded.
    """
    source = "config" if requested else CHAMPION
    version = requested or reader.champion(environment)
    if version is None:
        return None
    record = reader.record(version)
    if record is None:
        raise ReleaseError(f"model version {version!r} is not in the {environment} registry")
    image = (record.get("image") or {}).get("reference")
    if not image:
        raise ReleaseError(
            f"model version {version!r} has no image recorded in the {environment} registry; "
            "release it through the pipeline (it publishes the version with its image)"
        )
    return Release(version, image, source)


def invoke_reader(bucket: str, opts: Any) -> RegistryReader:
    """A reader over the Pulumi AWS provider's S3 invokes (``opts``: its InvokeOptions)."""
    import pulumi_aws as aws

    def list_keys(bucket: str, prefix: str, start_after: str | None) -> list[str]:
        found = aws.s3.get_objects(
            bucket=bucket, prefix=prefix, start_after=start_after, max_keys=1000, opts=opts
        )
        return list(found.keys)

    def read_text(bucket: str, key: str) -> str:
        return aws.s3.get_object(bucket=bucket, key=key, opts=opts).body

    return RegistryReader(bucket, list_keys, read_text)
