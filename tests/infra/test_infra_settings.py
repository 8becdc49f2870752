"""Stack files: every real one loads; a bad one fails with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import SettingsError, parse_settings, stack_file_to_raw

ENVIRONMENTS = Path(__file__).resolve().parents[2] / "environments"


def _raw(stack: str) -> dict[str, Any]:
    return stack_file_to_raw(yaml.safe_load((ENVIRONMENTS / f"Pulumi.{stack}.yaml").read_text()))


def _broken(stack: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(_raw(stack))
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DELETE = object()


def test_every_stack_file_loads() -> None:
    files = sorted(ENVIRONMENTS.glob("Pulumi.*.yaml"))
    assert {f.name for f in files} == {f"Pulumi.{s}.yaml" for s in ("dev", "staging", "prod")}, (
        "environments/ holds exactly the three stack files"
    )
    for file in files:
        settings = parse_settings(stack_file_to_raw(yaml.safe_load(file.read_text())))
        assert settings.environment == file.name.split(".")[1], f"{file.name}: environment key"


def test_environments_differ_as_data() -> None:
    dev, prod = parse_settings(_raw("dev")), parse_settings(_raw("prod"))
    assert len(prod.network.availability_zones) == 3, "prod spans three zones"
    assert len(dev.network.availability_zones) == 2, "dev spans two zones"
    assert not prod.cluster.endpoint_public_access, "prod API endpoint is private"
    assert prod.feature_store.multi_az and not dev.feature_store.multi_az, (
        "Multi-AZ only beyond dev"
    )
    assert prod.service.min_replicas >= 2, "prod keeps at least two replicas"


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("cluster", "minSize"), _DELETE, "approvals:cluster.minSize"),
        (("cluster", "minSize"), "two", "approvals:cluster.minSize"),
        (("featureStore", "multiAz"), "sometimes", "approvals:featureStore.multiAz"),
        (("network", "availabilityZones"), ["us-east-1a"], "approvals:network.availabilityZones"),
        (("service", "imageTag"), "latest", "approvals:service.imageTag"),
        (("service", "logLevel"), "LOUD", "approvals:service.logLevel"),
        (("cluster", "publicAccessCidrs"), ["0.0.0.0/0"], "approvals:cluster.publicAccessCidrs"),
        (("network", "cidrBlock"), "8.8.0.0/16", "approvals:network.cidrBlock"),
        (("service", "surprise"), 1, "approvals:service.surprise"),
        (("environment",), "qa", "approvals:environment"),
        (("region",), _DELETE, "aws:region"),
        (("featureStore",), _DELETE, "approvals:featureStore"),
        (("cluster", "adminRoleArns"), _DELETE, "approvals:cluster.adminRoleArns"),
        (("cluster", "adminRoleArns"), [], "approvals:cluster.adminRoleArns"),
        (("cluster", "adminRoleArns"), ["approvals-admin"], "approvals:cluster.adminRoleArns"),
    ],
)
def test_bad_value_names_the_key(path: tuple[str, ...], value: Any, named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(_broken("prod", path, value))
    assert named in str(caught.value), f"message should name {named}: {caught.value}"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("featureStore", "numCacheClusters"), 1, "numCacheClusters >= 2"),
        (("cluster", "desiredSize"), 99, "minSize <= desiredSize <= maxSize"),
        (("service", "pdbMinAvailable"), 3, "pdbMinAvailable must be below minReplicas"),
        (("network", "natGateways"), 4, "natGateways cannot exceed"),
        (
            ("network", "availabilityZones"),
            ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
            "network.availabilityZones: 'eu-west-1a' is not in aws:region",
        ),
    ],
)
def test_inconsistent_values_are_refused(path: tuple[str, ...], value: Any, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(_broken("prod", path, value))
    assert reason in str(caught.value), f"message should explain {reason!r}: {caught.value}"


def test_public_endpoint_needs_a_cidr_list() -> None:
    raw = _broken("dev", ("cluster", "publicAccessCidrs"), _DELETE)
    with pytest.raises(SettingsError, match="publicAccessCidrs") as caught:
        parse_settings(raw)
    assert "approvals:cluster" in str(caught.value), "the message names the cluster key"


def test_file_without_config_is_refused() -> None:
    with pytest.raises(SettingsError, match="no `config:` mapping"):
        stack_file_to_raw({"environment": "dev"})


def test_settings_are_frozen() -> None:
    settings = parse_settings(_raw("dev"))
    with pytest.raises(ValueError, match="frozen"):
        settings.cluster.min_size = 5  # type: ignore[misc]
