"""Atomic replacement of directories: readers see the old complete copy or the new one.

Everything that writes a directory a user relies on (model packages, simulated data, pulled
registry versions) builds it beside the target and swaps it in here, so a failure at any point
leaves the previous good state in place.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def replace_dir(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete ``staging`` directory (same filesystem).

    The old copy is moved aside first and restored if the final rename fails.

    Raises:
        NotADirectoryError: ``target`` exists and is not a directory.
    """
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a directory")
    if not target.exists():
        staging.replace(target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    target.replace(old)
    try:
        staging.replace(target)
    except OSError:
        old.replace(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh directory beside ``target``; swapped in when the block succeeds.

    On an exception the staging directory is removed and ``target`` is left untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary directory
    try:
        yield staging
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
