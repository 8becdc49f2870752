"""Name validation: what may become part of an S3 key or a local path."""

from __future__ import annotations

import pytest

from approvals.registry import InvalidNameError
from approvals.registry.names import (
    check_alias,
    check_environment,
    check_git_sha,
    check_relative_path,
    check_version,
    normalize_prefix,
)


@pytest.mark.parametrize("name", ["v1", "2026.05.09-a1b2c3d", "1.2.3+build.7", "A_b"])
def test_good_versions_pass(name: str) -> None:
    assert check_version(name) == name, f"{name!r} should be a valid version"


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "a/b", "a..b", "v 1", "x" * 129, "v1\n", "../v1", "ü"]
)
def test_bad_versions_are_refused(name: str) -> None:
    with pytest.raises(InvalidNameError, match="bad version name"):
        check_version(name)


@pytest.mark.parametrize("name", ["Prod", "", "1dev", "dev/x", "d" * 33, "dev_1"])
def test_bad_environments_are_refused(name: str) -> None:
    with pytest.raises(InvalidNameError, match="bad environment"):
        check_environment(name)


def test_aliases_are_a_closed_set() -> None:
    assert check_alias("champion") == "champion", "champion is an alias"
    with pytest.raises(InvalidNameError, match="champion, challenger"):
        check_alias("champoin")


def test_git_sha_is_lowercased_and_checked() -> None:
    assert check_git_sha("ABCDEF1") == "abcdef1", "short SHAs are lower-cased"
    assert check_git_sha(None) is None, "absent SHA stays absent"
    with pytest.raises(InvalidNameError, match="git SHA"):
        check_git_sha("main")


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../b", "a\\b", "a//b", "", "./a"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidNameError, match="unsafe file path"):
        check_relative_path(path)


def test_prefix_is_normalized() -> None:
    assert normalize_prefix("registry") == "registry/", "a trailing slash is added"
    assert normalize_prefix("/a/b/") == "a/b/", "leading slashes are dropped"
    assert normalize_prefix("") == "", "empty prefix means the bucket root"
    with pytest.raises(InvalidNameError, match="bad key prefix"):
        normalize_prefix("a/../b")
