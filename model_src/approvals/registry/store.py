"""A thin S3 layer with the few operations the registry needs, conditional writes included.

S3 (since 2024) honours ``If-None-Match: *`` and ``If-Match: <etag>`` on PutObject and answers
412 PreconditionFailed (or 409 ConditionalRequestConflict while another conditional write to the
key is in flight) when the condition fails. A store that answers 501 NotImplemented to the
header gets a safe fallback: a HEAD before the write, and the caller reads the object back to
confirm who won. boto3 is imported lazily so the CLI starts fast and serving never needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from approvals.registry.errors import NotFoundError, RegistryError, UnavailableError

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})
_UNAVAILABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
)


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes and the ETag they were read with."""

    body: bytes
    etag: str


def make_client(region: str | None = None) -> S3Client:
    """Create an S3 client with standard retries (``AWS_ENDPOINT_URL_S3`` is honoured by boto3)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5)
    return boto3.client("s3", region_name=region, config=config)


def _code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _server_side(exc: Exception) -> bool:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if _code(exc) in _UNSUPPORTED_CODES:
        return False
    return _code(exc) in _UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500)


class ObjectStore:
    """Objects under one bucket, read and written with the registry's rules."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        """Wrap a boto3 S3 client bound to one bucket."""
        self.client, self.bucket = client, bucket
        self._conditional_supported = True

    def get(self, key: str) -> StoredObject | None:
        """Read an object, or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise self._explain(exc, key) from exc
        return StoredObject(body=response["Body"].read(), etag=response["ETag"])

    def exists(self, key: str) -> bool:
        """Whether an object exists (HEAD)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES:
                return False
            raise self._explain(exc, key) from exc
        return True

    def put_new(self, key: str, body: bytes) -> bool:
        """Create an object only if the key is free; False when it already exists."""
        from botocore.exceptions import ClientError

        if not self._conditional_supported:
            return self._put_new_fallback(key, body)
        try:
            self.client.put_object(**_put(self.bucket, key, body), IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) in _CONFLICT_CODES:
                return False
            if _code(exc) in _UNSUPPORTED_CODES:
                self._conditional_supported = False
                return self._put_new_fallback(key, body)
            raise self._explain(exc, key) from exc
        return True

    def _put_new_fallback(self, key: str, body: bytes) -> bool:
        if self.exists(key):
            return False
        self.client.put_object(**_put(self.bucket, key, body))
        return True

    def replace(self, key: str, body: bytes, etag: str | None) -> bool:
        """Overwrite an object only if its ETag is still ``etag`` (create it when None).

        Returns:
            False when someone changed the object since it was read.
        """
        from botocore.exceptions import ClientError

        if etag is None:
            return self.put_new(key, body)
        if not self._conditional_supported:
            current = self.get(key)
            if current is None or current.etag != etag:
                return False
            self.client.put_object(**_put(self.bucket, key, body))
            return True
        try:
            self.client.put_object(**_put(self.bucket, key, body), IfMatch=etag)
        except ClientError as exc:
            if _code(exc) in _CONFLICT_CODES | _MISSING_CODES:
                return False
            raise self._explain(exc, key) from exc
        return True

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under a prefix, in lexicographic order."""
        from botocore.exceptions import ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except ClientError as exc:
            raise self._explain(exc, prefix) from exc

    def _explain(self, exc: Exception, key: str) -> RegistryError:
        code = _code(exc)
        if code == "NoSuchBucket":
            return NotFoundError(f"registry bucket {self.bucket!r} does not exist")
        if code in {"AccessDenied", "403", "InvalidAccessKeyId", "ExpiredToken"}:
            return RegistryError(f"access denied to s3://{self.bucket}/{key} ({code})")
        if _server_side(exc):
            return UnavailableError(f"S3 request for s3://{self.bucket}/{key} failed: {code}")
        return RegistryError(f"S3 request for s3://{self.bucket}/{key} failed: {code or exc}")


def _put(bucket: str, key: str, body: bytes) -> dict[str, Any]:
    """PutObject arguments; records and aliases say they are JSON, so readers that show only
    text bodies (the Pulumi AWS provider's ``aws.s3.getObject``) can read them."""
    args: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
    if key.endswith(".json"):
        args["ContentType"] = "application/json"
    return args
