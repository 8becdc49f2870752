"""The local side: scanning a model package directory, hashing it, checking a pull destination.

The registry treats a package as an opaque directory of files; only ``manifest.json`` is read,
for metadata, and every key in it is optional.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from approvals.errors import PackageError
from approvals.registry.records import FileEntry

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(entries: tuple[FileEntry, ...] | list[FileEntry]) -> str:
    """The package's content hash: SHA-256 over every file's path, hash and size, path-sorted.

    Two packages with the same files (names and bytes) have the same hash, wherever they were
    written and whatever their timestamps.
    """
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda item: item.path):
        digest.update(f"{entry.path}\0{entry.sha256}\0{entry.size}\n".encode())
    return "sha256:" + digest.hexdigest()


def scan_package(root: Path) -> tuple[FileEntry, ...]:
    """List and hash every file of a package directory.

    Raises:
        PackageError: When the directory is missing, has no manifest.json, or holds symlinks or
            special files (they would not survive a round trip unchanged).
    """
    if not root.is_dir():
        raise PackageError(f"model package {root} is not a directory")
    entries = [_entry(root, path) for path in sorted(root.rglob("*")) if not path.is_dir()]
    if not any(entry.path == MANIFEST for entry in entries):
        raise PackageError(f"model package {root} has no {MANIFEST}")
    return tuple(entries)


def _entry(root: Path, path: Path) -> FileEntry:
    relative = path.relative_to(root).as_posix()
    if path.is_symlink() or not path.is_file():
        raise PackageError(f"model package holds a symlink or special file: {relative}")
    return FileEntry(path=relative, sha256=sha256_file(path), size=path.stat().st_size)


def read_manifest(root: Path) -> dict[str, Any]:
    """Read the package's manifest.json as a dict (keys are optional; shape is checked).

    Raises:
        PackageError: When it is not valid JSON or not a JSON object.
    """
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PackageError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def check_destination(dest: Path) -> None:
    """Refuse a pull destination that exists and is not a directory (before any download).

    Raises:
        PackageError: When ``dest`` exists and is not a directory.
    """
    if dest.exists() and not dest.is_dir():
        raise PackageError(f"pull destination {dest} exists and is not a directory")
