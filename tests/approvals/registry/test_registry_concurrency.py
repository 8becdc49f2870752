"""Concurrent publishes and promotions never leave a broken or ambiguous state."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from approvals.registry import ModelRegistry, VersionConflictError
from approvals.registry.files import content_hash, scan_package

pytestmark = pytest.mark.servers

WORKERS = 8


def _attempt(registry: ModelRegistry, package: Path) -> str:
    try:
        return "created" if registry.publish(package).created else "same"
    except VersionConflictError:
        return "conflict"


def test_concurrent_publishes_of_one_version_have_one_winner(
    s3_client: Any, bucket: str, make_package, tmp_path: Path
) -> None:
    packages = [make_package("v1", payload=f"candidate-{i}") for i in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda p: _attempt(ModelRegistry(s3_client, bucket), p), packages))
    assert outcomes.count("created") == 1, f"exactly one publisher wins: {outcomes}"
    assert outcomes.count("conflict") == WORKERS - 1, f"the others are told: {outcomes}"
    winner = packages[outcomes.index("created")]
    registry = ModelRegistry(s3_client, bucket)
    assert registry.show("v1").content_hash == content_hash(scan_package(winner)), "winner kept"
    registry.pull("v1", tmp_path / "pulled")
    assert (tmp_path / "pulled" / "booster.txt").read_text() == (
        winner / "booster.txt"
    ).read_text(), "the stored version is complete and is the winner's"


def test_concurrent_identical_publishes_all_succeed(
    s3_client: Any, bucket: str, make_package
) -> None:
    package = make_package("v1")
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(
            pool.map(lambda _: _attempt(ModelRegistry(s3_client, bucket), package), range(WORKERS))
        )
    assert outcomes.count("created") == 1, f"one write creates it: {outcomes}"
    assert outcomes.count("same") == WORKERS - 1, f"retries of the same bytes succeed: {outcomes}"


def test_concurrent_promotions_serialize(s3_client: Any, bucket: str, make_package) -> None:
    registry = ModelRegistry(s3_client, bucket)
    versions = [f"v{i}" for i in range(WORKERS)]
    for version in versions:
        registry.publish(make_package(version, payload=version))
    with ThreadPoolExecutor(WORKERS) as pool:
        states = list(
            pool.map(
                lambda v: ModelRegistry(s3_client, bucket).promote("prod", "champion", v), versions
            )
        )
    log = registry.history("prod", "champion")
    assert [e.seq for e in log] == list(range(1, WORKERS + 1)), "no sequence lost or duplicated"
    assert sorted(e.version for e in log) == versions, "every promotion is in the log once"
    assert {s.txn for s in states} == {e.txn for e in log}, "each caller got its own log entry"
    for before, after in itertools.pairwise(log):
        assert after.previous_version == before.version, f"entry {after.seq} chains to its parent"
    current = registry.resolve("prod", "champion")
    assert current == log[-1], "the alias points at the last logged change, unambiguously"


def test_concurrent_publishes_with_different_images_have_one_winner(
    s3_client: Any, bucket: str, make_package, make_image
) -> None:
    package = make_package("v1")
    images = [make_image(fill=digit) for digit in "01234567"[:WORKERS]]

    def publish(image: str) -> str:
        try:
            registry = ModelRegistry(s3_client, bucket)
            return "created" if registry.publish(package, image=image).created else "same"
        except VersionConflictError:
            return "conflict"

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(publish, images))
    assert outcomes.count("created") == 1, f"exactly one image is paired with v1: {outcomes}"
    assert outcomes.count("conflict") == WORKERS - 1, f"the others are refused: {outcomes}"
    record = ModelRegistry(s3_client, bucket).show("v1")
    winner = images[outcomes.index("created")]
    assert record.image is not None and record.image.reference == winner, "the winner's image"
