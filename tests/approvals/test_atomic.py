"""Atomic writes: readers never see a missing or partial target, failures keep the old one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from approvals import atomic
from approvals.atomic import atomic_file, exchange, replace_dir, staged_dir

REPLACEMENTS = 150
READS_MAX = 2_000_000
SECONDS_MAX = 30.0


def _write_version(directory: Path, n: int) -> None:
    (directory / "version.txt").write_text(f"{n}\n" + "complete\n")
    (directory / "payload.bin").write_bytes(bytes(1000))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _can_exchange(tmp_path: Path) -> bool:
    first, second = tmp_path / "probe-a", tmp_path / "probe-b"
    first.mkdir()
    second.mkdir()
    return exchange(first, second)


class _Reader(threading.Thread):
    """Polls the target until told to stop, counting every moment it is missing or partial."""

    def __init__(self, target: Path) -> None:
        super().__init__(daemon=True)
        self.target, self.stop = target, threading.Event()
        self.reads = self.missing = self.partial = 0

    def run(self) -> None:
        deadline = time.monotonic() + SECONDS_MAX
        while not self.stop.is_set() and self.reads < READS_MAX and time.monotonic() < deadline:
            self.reads += 1
            if not self.target.is_dir():
                self.missing += 1
                continue
            try:
                text = (self.target / "version.txt").read_text()
            except FileNotFoundError:
                self.missing += 1
                continue
            if not text.endswith("complete\n"):
                self.partial += 1


def test_a_concurrent_reader_never_sees_the_target_missing(tmp_path: Path) -> None:
    # given a target directory that exists, and the exchange available on this file system
    if not _can_exchange(tmp_path):
        pytest.skip("this file system cannot exchange paths atomically")
    target = tmp_path / "model"
    with staged_dir(target) as tmp:
        _write_version(tmp, 0)
    reader = _Reader(target)
    reader.start()
    # when it is replaced many times while a thread keeps reading it
    try:
        for n in range(1, REPLACEMENTS + 1):
            with staged_dir(target) as tmp:
                _write_version(tmp, n)
    finally:
        reader.stop.set()
        reader.join(timeout=SECONDS_MAX)
    # then the reader always found a complete directory, and only the last version remains
    assert reader.reads > REPLACEMENTS, f"the reader ran alongside: {reader.reads} reads"
    assert reader.missing == 0, f"target missing in {reader.missing} of {reader.reads} reads"
    assert reader.partial == 0, f"target partial in {reader.partial} of {reader.reads} reads"
    assert (target / "version.txt").read_text() == f"{REPLACEMENTS}\ncomplete\n"
    assert _leftovers(tmp_path) == [], "no staging or old copies left behind"


def test_a_failed_build_leaves_the_previous_directory(tmp_path: Path) -> None:
    # given a good directory
    target = tmp_path / "model"
    with staged_dir(target) as tmp:
        _write_version(tmp, 1)
    # when a rebuild fails half way
    with pytest.raises(RuntimeError, match="build failed"), staged_dir(target) as tmp:
        (tmp / "version.txt").write_text("2\n")
        raise RuntimeError("build failed")
    # then the previous directory is untouched and nothing is left beside it
    assert (target / "version.txt").read_text() == "1\ncomplete\n", "old copy kept"
    assert sorted(p.name for p in target.iterdir()) == ["payload.bin", "version.txt"]
    assert _leftovers(tmp_path) == [], "the staging directory is removed"


def test_without_the_exchange_the_two_renames_still_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a system without renameat2 (not Linux, old glibc)
    monkeypatch.setattr(atomic, "exchange", lambda first, second: False)
    target = tmp_path / "data"
    for n in (1, 2):
        # when the directory is built and swapped in
        with staged_dir(target) as tmp:
            _write_version(tmp, n)
    # then the new copy replaced the old one and nothing else is left
    assert (target / "version.txt").read_text() == "2\ncomplete\n"
    assert _leftovers(tmp_path) == [], "old copy removed by the fallback"


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "from-a").touch()
    if not exchange(first, second):
        pytest.skip("this file system cannot exchange paths atomically")
    assert [p.name for p in second.iterdir()] == ["from-a"], "contents swapped"
    assert list(first.iterdir()) == [], "and the other way round"
    with pytest.raises(FileNotFoundError):
        exchange(first, tmp_path / "missing")


def test_replace_dir_refuses_a_file_target(tmp_path: Path) -> None:
    staging, target = tmp_path / "new", tmp_path / "target"
    staging.mkdir()
    target.write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        replace_dir(staging, target)
    assert target.read_text() == "not a directory", "the file is left alone"


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_failure(
    tmp_path: Path,
) -> None:
    # given an existing file, in a directory the helper has to create
    target = tmp_path / "reports" / "metrics.json"
    with atomic_file(target) as tmp:
        tmp.write_text("old")
    # when a later write fails half way
    with pytest.raises(ValueError, match="boom"), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise ValueError("boom")
    # then the old content is intact and no temporary file is left
    assert target.read_text() == "old"
    assert _leftovers(target.parent) == [], "temporary file removed"
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new", "a successful write replaces it"


def test_atomic_file_makes_an_ordinary_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_file(tmp_path / "atomic.txt") as tmp:
        tmp.write_text("x")
    mode = (tmp_path / "atomic.txt").stat().st_mode & 0o777
    assert mode == plain.stat().st_mode & 0o777, f"same permissions as a plain write: {mode:o}"


def test_atomic_file_that_writes_nothing_fails_and_keeps_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    target.write_text("old")
    with pytest.raises(FileNotFoundError), atomic_file(target):
        pass
    assert target.read_text() == "old", "nothing replaced by nothing"
