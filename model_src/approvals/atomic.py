"""Atomic writes: a reader of the target sees the old complete file or directory, or the new one.

Two primitives serve every writer in the library:

- :func:`atomic_file` for one file (reports, predictions, plots): written under a temporary name
  beside the target, flushed to disk, then renamed over it.
- :func:`staged_dir` for a directory (model packages, simulated data, pulled registry versions):
  built beside the target, then swapped in by :func:`replace_dir`.

On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call, so the target path names a
complete directory at every instant. Where the call is missing (not Linux, glibc < 2.28) or the
file system refuses it, the old copy is renamed away and the new one renamed in: still never a
partial directory, but for a moment no directory at all. A failure at any point leaves the
previous good state in place.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

AT_FDCWD = -100
RENAME_EXCHANGE = 2
# errors meaning "this kernel, libc or file system cannot exchange": use the two renames instead
_NO_EXCHANGE = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # glibc < 2.28, or a libc without the wrapper
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns:
        False, with nothing changed, when the system or the file system cannot exchange.

    Raises:
        OSError: the exchange was possible but failed (e.g. a path is missing).
    """
    function = _renameat2()
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def replace_dir(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete ``staging`` directory (same file system).

    ``staging`` is gone afterwards, and so is the old copy of ``target``.

    Raises:
        NotADirectoryError: ``target`` exists and is not a directory.
    """
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a directory")
    if not target.exists():
        staging.replace(target)
    elif exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old copy
    else:
        _replace_by_renames(staging, target)
    _sync_dir(target.parent)


def _replace_by_renames(staging: Path, target: Path) -> None:
    old = _sibling(target, "old")
    target.replace(old)
    try:
        staging.replace(target)
    except OSError:
        old.replace(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh directory beside ``target``; its files are synced and it is swapped in on success.

    On an exception the staging directory is removed and ``target`` is left untouched.

    Raises:
        NotADirectoryError: ``target`` exists and is not a directory.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(target, "tmp")
    staging.mkdir()
    try:
        yield staging
        _sync_tree(staging)
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; synced and renamed over it on success.

    The caller creates the file (any writer that takes a path). On an exception, or when the
    block wrote nothing, the temporary file is removed and ``target`` is left untouched.
    Parent directories are created.

    Raises:
        FileNotFoundError: the block finished without creating the file.
    """
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        _sync_file(tmp)
        tmp.replace(path)
        _sync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _sibling(target: Path, kind: str) -> Path:
    """A hidden unused name beside ``target`` (same directory, so renames stay atomic)."""
    return target.parent / f".{target.name}.{kind}-{uuid.uuid4().hex[:12]}"


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """Flush every file under ``root`` so a crash after the swap cannot leave empty files."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            _sync_dir(path)
        elif path.is_file():
            _sync_file(path)


def _sync_dir(path: Path) -> None:
    """Flush a directory's entries (best effort: some systems cannot open directories)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
