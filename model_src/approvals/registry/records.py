"""The JSON documents the registry stores: version records and alias states.

Both are frozen pydantic models. Unknown fields are ignored when reading, so an older client
can still read what a newer one wrote; fields added later (the image, the gate report, the
workflow run) are optional, so records written before them still load. A record that does not
parse is reported as corrupt.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from approvals.registry.errors import IntegrityError
from approvals.registry.names import check_image

RECORD_SCHEMA = 1
LINEAGE_DEPTH = 20


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_bytes(self) -> bytes:
        """Serialize as compact, key-sorted UTF-8 JSON (stable bytes for equal documents)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1).encode()


class FileEntry(_Document):
    """One file of a model package: its relative POSIX path, SHA-256 and size in bytes."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class ImageRef(_Document):
    """The container image built from a version: the full reference and its three parts."""

    reference: str
    repository: str
    tag: str
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")

    @classmethod
    def parse(cls, reference: str) -> ImageRef:
        """Build from ``REPOSITORY:TAG@sha256:<64 hex>``.

        Raises:
            InvalidNameError: When the reference does not have that shape.
        """
        repository, tag, digest = check_image(reference)
        return cls(reference=reference, repository=repository, tag=tag, digest=digest)

    @model_validator(mode="after")
    def _parts_match(self) -> ImageRef:
        if check_image(self.reference) != (self.repository, self.tag, self.digest):
            raise ValueError("image reference does not match its repository, tag and digest")
        return self


class GateSummary(_Document):
    """The gate's verdict as read from its report (``approvals gate --report``)."""

    passed: bool
    has_champion: bool | None = None
    checks: int | None = Field(default=None, ge=0)
    failures: tuple[str, ...] = ()


class GateReportRef(_Document):
    """A gate report stored as a content-addressed blob, with a summary of its verdict."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    summary: GateSummary


class WorkflowRun(_Document):
    """The GitHub Actions run that published a version."""

    id: int = Field(ge=1)
    attempt: int | None = Field(default=None, ge=1)
    url: str
    repository: str


class VersionRecord(_Document):
    """An immutable published version: what it contains and where it came from."""

    schema_version: int = RECORD_SCHEMA
    version: str
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    files: tuple[FileEntry, ...]
    published_at: str
    publish_id: str
    git_sha: str | None = None
    published_by: str | None = None
    model_version: str | None = None
    format_version: int | None = None
    created_at: str | None = None
    training_data_fingerprint: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, Any] = Field(default_factory=dict)
    image: ImageRef | None = None
    gate_report: GateReportRef | None = None
    workflow_run: WorkflowRun | None = None

    @property
    def size(self) -> int:
        """Total bytes of the package's files."""
        return sum(entry.size for entry in self.files)


class AliasState(_Document):
    """Where an alias of one environment points after the change numbered ``seq``."""

    schema_version: int = RECORD_SCHEMA
    environment: str
    alias: str
    seq: int = Field(ge=1)
    version: str
    content_hash: str
    git_sha: str | None = None
    image: ImageRef | None = None
    action: Literal["promote", "rollback"]
    previous_version: str | None = None
    lineage: tuple[str, ...] = ()
    updated_at: str
    actor: str | None = None
    reason: str | None = None
    txn: str


DocumentT = TypeVar("DocumentT", bound=_Document)


def parse(model: type[DocumentT], body: bytes, key: str) -> DocumentT:
    """Parse a stored document, turning any decoding problem into an IntegrityError.

    Args:
        model: The document class expected at that key.
        body: The raw bytes read from the store.
        key: The object key, named in the error message.

    Raises:
        IntegrityError: When the bytes are not valid JSON of that shape.
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise IntegrityError(f"corrupt registry object {key}: {where}: {first['msg']}") from exc
