"""Aliases per environment: promote, rollback, audit history, crash recovery."""

from __future__ import annotations

from typing import Any

import pytest

from approvals.registry import (
    InvalidNameError,
    ModelRegistry,
    NotFoundError,
    RollbackError,
)
from approvals.registry.layout import Layout

pytestmark = pytest.mark.servers


@pytest.fixture
def three(registry: ModelRegistry, make_package) -> ModelRegistry:
    """A registry holding versions v1, v2 and v3."""
    for n in (1, 2, 3):
        registry.publish(make_package(f"v{n}", payload=str(n)), git_sha=f"{n}" * 40)
    return registry


def test_promote_points_alias_and_logs_it(three: ModelRegistry) -> None:
    state = three.promote("staging", "champion", "v2", actor="alice", reason="gate passed")
    assert three.resolve("staging", "champion") == state, "resolve returns the new state"
    assert state.git_sha == "2" * 40, "the alias carries the version's git SHA (image tag)"
    assert three.current("prod", "champion") is None, "other environments are independent"
    assert three.current("staging", "challenger") is None, "other aliases are independent"
    [entry] = three.history("staging", "champion")
    assert (entry.actor, entry.reason, entry.seq) == ("alice", "gate passed", 1), "audit entry"


def test_promoting_the_current_version_is_a_no_op(three: ModelRegistry) -> None:
    first = three.promote("dev", "champion", "v1")
    again = three.promote("dev", "champion", "v1")
    assert again == first, "same state returned"
    assert len(three.history("dev", "champion")) == 1, "no new history entry"


def test_rollback_walks_back_and_keeps_history(three: ModelRegistry) -> None:
    for version in ("v1", "v2", "v3"):
        three.promote("prod", "champion", version)
    assert three.rollback("prod", "champion", reason="p99 regression").version == "v2", "back 1"
    assert three.rollback("prod", "champion").version == "v1", "repeated rollback goes further"
    with pytest.raises(RollbackError, match="no earlier version"):
        three.rollback("prod", "champion")
    assert three.rollback("prod", "champion", to="v3").version == "v3", "explicit target"
    log = three.history("prod", "champion")
    actions = [(e.seq, e.action, e.version, e.previous_version) for e in log]
    assert actions == [
        (1, "promote", "v1", None),
        (2, "promote", "v2", "v1"),
        (3, "promote", "v3", "v2"),
        (4, "rollback", "v2", "v3"),
        (5, "rollback", "v1", "v2"),
        (6, "rollback", "v3", "v1"),
    ], f"append-only audit log of every change: {actions}"


def test_rollback_of_unset_alias_is_refused(three: ModelRegistry) -> None:
    with pytest.raises(RollbackError, match="not set"):
        three.rollback("prod", "champion")


def test_promote_requires_a_published_version(three: ModelRegistry) -> None:
    with pytest.raises(NotFoundError, match="v9"):
        three.promote("prod", "champion", "v9")
    with pytest.raises(InvalidNameError):
        three.promote("Prod", "champion", "v1")
    with pytest.raises(InvalidNameError):
        three.promote("prod", "king", "v1")
    assert three.history("prod", "champion") == [], "bad requests change nothing"


def test_crash_between_log_and_pointer_is_repaired(
    three: ModelRegistry, s3_client: Any, bucket: str
) -> None:
    three.promote("prod", "champion", "v1")
    two = three.promote("prod", "champion", "v2")
    layout = Layout.under("registry/")
    pointer = layout.pointer("prod", "champion")
    one = s3_client.get_object(Bucket=bucket, Key=layout.entry("prod", "champion", 1))
    s3_client.put_object(Bucket=bucket, Key=pointer, Body=one["Body"].read())
    assert three.resolve("prod", "champion") == two, "readers follow the log past a stale pointer"
    three_state = three.promote("prod", "champion", "v3")
    assert three_state.seq == 3, "the next writer continues the sequence"
    assert three_state.lineage == ("v2", "v1"), "lineage is rebuilt from the log, not the pointer"
    s3_client.delete_object(Bucket=bucket, Key=pointer)
    assert three.resolve("prod", "champion") == three_state, "a lost pointer is rebuilt from log"


@pytest.fixture
def imaged(registry: ModelRegistry, make_package, make_image) -> ModelRegistry:
    """v1, v2, v3 published with images (digests 1..., 2..., 3...), promoted in prod in order."""
    for n in (1, 2, 3):
        package = make_package(f"v{n}", payload=str(n))
        registry.publish(package, git_sha=f"{n}" * 40, image=make_image(f"v{n}", fill=str(n)))
        registry.promote("prod", "champion", f"v{n}")
    return registry


def _bucket(s3_client: Any, bucket: str) -> dict[str, str]:
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listed}


def test_promotion_logs_the_image_it_points_at(imaged: ModelRegistry, make_image) -> None:
    entries = imaged.history("prod", "champion")
    images = [None if entry.image is None else entry.image.reference for entry in entries]
    assert images == [make_image(f"v{n}", fill=str(n)) for n in (1, 2, 3)], f"audit: {images}"


def test_planned_rollback_writes_nothing(
    imaged: ModelRegistry, s3_client: Any, bucket: str, make_image
) -> None:
    layout = Layout.under("registry/")
    stale = s3_client.get_object(Bucket=bucket, Key=layout.entry("prod", "champion", 2))
    s3_client.put_object(  # a pointer left behind: a writer would repair it, a plan must not
        Bucket=bucket, Key=layout.pointer("prod", "champion"), Body=stale["Body"].read()
    )
    before = _bucket(s3_client, bucket)
    plan = imaged.plan_rollback("prod", "champion")
    assert (plan.current.version, plan.target.version) == ("v3", "v2"), "back to the previous"
    assert plan.changes, "the alias would move"
    assert plan.target.image is not None, "the target's record carries its image"
    assert plan.target.image.reference == make_image("v2", fill="2"), "the image to deploy"
    assert _bucket(s3_client, bucket) == before, "not one object written or rewritten"
    assert imaged.resolve("prod", "champion").version == "v3", "the alias has not moved"


def test_rollback_to_the_planned_target_is_the_plain_rollback(imaged: ModelRegistry) -> None:
    planned = imaged.plan_rollback("prod", "champion").target.version
    state = imaged.rollback("prod", "champion", to=planned, reason="smoke test passed")
    assert state.version == planned == "v2", "the real rollback lands on the planned version"
    assert state.lineage == ("v1",), "it walks back the lineage, as a plain rollback does"
    assert imaged.plan_rollback("prod", "champion").target.version == "v1", "the next goes back"
    assert imaged.rollback("prod", "champion", to="v1").lineage == (), "and then nothing is left"
    with pytest.raises(RollbackError, match="no earlier version"):
        imaged.plan_rollback("prod", "champion")


def test_planned_rollback_to_a_version_outside_the_lineage_is_a_jump(
    imaged: ModelRegistry,
) -> None:
    imaged.rollback("prod", "champion", to="v1")
    plan = imaged.plan_rollback("prod", "champion", to="v3")
    assert (plan.current.version, plan.target.version) == ("v1", "v3"), "explicit target"
    assert imaged.rollback("prod", "champion", to="v3").lineage == ("v1",), "jump like a promote"
    same = imaged.plan_rollback("prod", "champion", to="v3")
    assert not same.changes, "a rollback to where the alias already is changes nothing"


def test_planned_rollback_of_unset_alias_is_refused(imaged: ModelRegistry) -> None:
    with pytest.raises(RollbackError, match="not set"):
        imaged.plan_rollback("staging", "champion")
    with pytest.raises(NotFoundError, match="v9"):
        imaged.plan_rollback("prod", "champion", to="v9")
