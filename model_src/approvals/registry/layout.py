"""Where things live in the bucket, under one key prefix.

```
{prefix}blobs/sha256/<hex>                          file contents and gate reports, by hash
{prefix}versions/<version>.json                     version record, written last, never replaced
{prefix}aliases/<env>/<alias>.json                  alias pointer (a cache of the latest entry)
{prefix}aliases/<env>/<alias>/history/<seq>.json    append-only audit log, one entry per change
```
Content-addressed blobs mean two publishers racing on one version name can never overwrite each
other's files: whichever version record wins points only at bytes that match it.
"""

from __future__ import annotations

from dataclasses import dataclass

from approvals.registry.names import normalize_prefix

_SEQ_DIGITS = 10


@dataclass(frozen=True)
class Layout:
    """Object keys of one registry (bucket prefix already normalized)."""

    prefix: str

    @classmethod
    def under(cls, prefix: str) -> Layout:
        """Build a layout from a user-supplied prefix such as ``registry/``."""
        return cls(prefix=normalize_prefix(prefix))

    def blob(self, sha256: str) -> str:
        """Key of a file's content."""
        return f"{self.prefix}blobs/sha256/{sha256}"

    @property
    def versions(self) -> str:
        """Prefix under which every version record lives."""
        return f"{self.prefix}versions/"

    def version(self, version: str) -> str:
        """Key of a version record."""
        return f"{self.versions}{version}.json"

    def pointer(self, environment: str, alias: str) -> str:
        """Key of an alias pointer."""
        return f"{self.prefix}aliases/{environment}/{alias}.json"

    def history(self, environment: str, alias: str) -> str:
        """Prefix of an alias's audit log."""
        return f"{self.prefix}aliases/{environment}/{alias}/history/"

    def entry(self, environment: str, alias: str, seq: int) -> str:
        """Key of one audit-log entry (zero-padded so keys sort by sequence)."""
        return f"{self.history(environment, alias)}{seq:0{_SEQ_DIGITS}d}.json"
