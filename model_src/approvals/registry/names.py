"""Validation of the names that become parts of S3 keys and local paths.

Names are checked before any request is made, so a typo fails fast with a clear message and
nothing unexpected (``..``, ``/``, spaces) ever reaches an object key.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from approvals.registry.errors import InvalidNameError

ALIASES: tuple[str, ...] = ("champion", "challenger")

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_ENVIRONMENT = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_GIT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9._-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Docker's reference grammar, narrowed to what a deploy by digest needs: a repository (optional
# registry host and port, lower-case path components), a tag and a sha256 digest, all three.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?P<repository>(?:{_HOST}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
_MAX_REPOSITORY = 255


def check_version(version: str) -> str:
    """Return the version if it is a valid registry version name.

    Args:
        version: A name such as ``2026.05.09-a1b2c3d``: letters, digits, ``. _ + -``, at most 128
            characters, starting with a letter or digit, never containing ``..``.

    Raises:
        InvalidNameError: When the name breaks those rules.
    """
    if not _VERSION.fullmatch(version) or ".." in version:
        raise InvalidNameError(
            f"bad version name {version!r}: use 1-128 letters, digits or . _ + - "
            "(starting with a letter or digit, no '..')"
        )
    return version


def check_environment(environment: str) -> str:
    """Return the environment if it is a valid name (``dev``, ``staging``, ``prod``, ...).

    Raises:
        InvalidNameError: When it is not lower-case letters, digits and dashes (at most 32).
    """
    if not _ENVIRONMENT.fullmatch(environment):
        raise InvalidNameError(
            f"bad environment name {environment!r}: use 1-32 lower-case letters, digits or '-', "
            "starting with a letter"
        )
    return environment


def check_alias(alias: str) -> str:
    """Return the alias if it is one the registry knows (``champion`` or ``challenger``).

    Raises:
        InvalidNameError: For any other alias, so a typo never creates a new pointer.
    """
    if alias not in ALIASES:
        raise InvalidNameError(f"bad alias {alias!r}: expected one of {', '.join(ALIASES)}")
    return alias


def check_git_sha(git_sha: str | None) -> str | None:
    """Return a lower-case git commit SHA (7-40 hex digits), or None when absent.

    Raises:
        InvalidNameError: When the value is not a hexadecimal commit id.
    """
    if git_sha is None or git_sha == "":
        return None
    sha = git_sha.strip().lower()
    if not _GIT_SHA.fullmatch(sha):
        raise InvalidNameError(f"bad git SHA {git_sha!r}: expected 7-40 hexadecimal digits")
    return sha


def check_image(reference: str) -> tuple[str, str, str]:
    """Split an image reference ``REPOSITORY:TAG@sha256:<64 hex>`` into its three parts.

    The tag says which build it is to a person; the digest is what gets deployed, so both are
    required: a reference without a digest could point at other bytes tomorrow.

    Raises:
        InvalidNameError: When the reference lacks a part or a part breaks Docker's grammar.
    """
    match = _IMAGE.fullmatch(reference)
    if match is None or len(match["repository"]) > _MAX_REPOSITORY:
        raise InvalidNameError(
            f"bad image reference {reference!r}: expected REPOSITORY:TAG@sha256:<64 hex digits>"
        )
    return match["repository"], match["tag"], match["digest"]


def check_bucket(bucket: str) -> str:
    """Return the bucket name if it follows S3's naming rules.

    Raises:
        InvalidNameError: When it does not.
    """
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidNameError(
            f"bad bucket name {bucket!r}: use 3-63 lower-case letters, digits, '.' or '-'"
        )
    return bucket


def normalize_prefix(prefix: str) -> str:
    """Return the key prefix with exactly one trailing ``/`` (or ``""`` for the bucket root).

    Raises:
        InvalidNameError: When a part of it is empty, ``.``/``..`` or has unusual characters.
    """
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    for part in stripped.split("/"):
        if part in {".", ".."} or not _PREFIX_PART.fullmatch(part):
            raise InvalidNameError(
                f"bad key prefix {prefix!r}: use parts of letters, digits, '.', '_', '-'"
            )
    return stripped + "/"


def check_relative_path(path: str) -> PurePosixPath:
    """Return a package file path if it is relative and stays inside the package.

    A version record read from S3 is data, not trust: a path such as ``../../.bashrc`` in it
    must never be written.

    Raises:
        InvalidNameError: For absolute paths, ``..`` parts, backslashes or empty parts.
    """
    pure = PurePosixPath(path)
    parts = path.split("/")
    if (
        not path
        or pure.is_absolute()
        or "\\" in path
        or any(part in {"", ".", ".."} for part in parts)
    ):
        raise InvalidNameError(f"unsafe file path in package: {path!r}")
    return pure
