"""Which release the application stack deploys: the registry reader, with its reads faked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components.release import RegistryReader, Release, ReleaseError, resolve_release

BUCKET = "approvals-dev-artifacts-123456789012-us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/approvals/dev/service:{v}@sha256:" + "0" * 64


def _entry(seq: int, version: str) -> str:
    return json.dumps({"seq": seq, "version": version, "environment": "dev"})


def _record(version: str, image: bool = True) -> str:
    found = {"reference": IMAGE.format(v=version)} if image else None
    return json.dumps({"version": version, "image": found})


def _reader(objects: dict[str, str]) -> tuple[RegistryReader, list[Any]]:
    calls: list[Any] = []

    def list_keys(bucket: str, prefix: str, after: str | None) -> list[str]:
        calls.append(("list", prefix, after))
        return sorted(k for k in objects if k.startswith(prefix) and k > (after or ""))

    def read_text(bucket: str, key: str) -> str:
        calls.append(("read", key))
        return objects[key]

    return RegistryReader(BUCKET, list_keys, read_text), calls


HISTORY = "registry/aliases/dev/champion/history/"


def test_the_champion_is_deployed_with_the_image_of_its_record() -> None:
    reader, _ = _reader({
        "registry/aliases/dev/champion.json": _entry(1, "v1"),
        f"{HISTORY}0000000001.json": _entry(1, "v1"),
        "registry/versions/v1.json": _record("v1"),
    })  # fmt: skip
    release = resolve_release(reader, "dev", None)
    assert release == Release("v1", IMAGE.format(v="v1"), "champion")
    assert release.tag == "v1", "the image tag is the model version"


def test_a_stale_pointer_is_read_past_like_the_registry_does() -> None:
    # a promoter died between appending entry 2 and moving the pointer
    reader, calls = _reader({
        "registry/aliases/dev/champion.json": _entry(1, "v1"),
        f"{HISTORY}0000000001.json": _entry(1, "v1"),
        f"{HISTORY}0000000002.json": _entry(2, "v2"),
        "registry/versions/v1.json": _record("v1"),
        "registry/versions/v2.json": _record("v2"),
    })  # fmt: skip
    assert reader.champion("dev") == "v2"
    assert ("list", HISTORY, f"{HISTORY}0000000001.json") in calls, "only entries past it"


def test_a_named_version_wins_over_the_champion() -> None:
    reader, _ = _reader({
        "registry/aliases/dev/champion.json": _entry(1, "v1"),
        "registry/versions/v1.json": _record("v1"),
        "registry/versions/v2.json": _record("v2"),
    })  # fmt: skip
    assert resolve_release(reader, "dev", "v2") == Release("v2", IMAGE.format(v="v2"), "config")


def test_nothing_is_deployed_before_the_first_release() -> None:
    reader, _ = _reader({})
    assert resolve_release(reader, "dev", None) is None


@pytest.mark.parametrize(
    ("objects", "requested", "message"),
    [
        ({}, "v9", "'v9' is not in the dev registry"),
        ({"registry/versions/v1.json": _record("v1", image=False)}, "v1", "has no image recorded"),
        ({"registry/versions/v1.json": ""}, "v1", "no readable body"),
        ({"registry/versions/v1.json": "{nope"}, "v1", "is not JSON"),
    ],
)
def test_an_undeployable_release_is_refused(
    objects: dict[str, str], requested: str, message: str
) -> None:
    reader, _ = _reader(objects)
    with pytest.raises(ReleaseError, match=message):
        resolve_release(reader, "dev", requested)
