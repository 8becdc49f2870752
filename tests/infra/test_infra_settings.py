"""Stack files: every real one loads; a bad one fails with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import (
    ApplicationSettings,
    PlatformSettings,
    SettingsError,
    parse_settings,
    stack_file_to_raw,
)

ENVIRONMENTS = Path(__file__).resolve().parents[2] / "environments"
MODELS = {"platform": PlatformSettings, "application": ApplicationSettings}
STACKS = ("dev", "staging", "prod")


def _raw(stack: str, project: str = "platform") -> dict[str, Any]:
    path = ENVIRONMENTS / project / f"Pulumi.{stack}.yaml"
    return stack_file_to_raw(yaml.safe_load(path.read_text()))


def _broken(stack: str, path: tuple[str, ...], value: Any, project: str) -> dict[str, Any]:
    raw = copy.deepcopy(_raw(stack, project))
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DELETE = object()


def test_every_stack_file_loads() -> None:
    for project, model in MODELS.items():
        files = sorted((ENVIRONMENTS / project).glob("Pulumi.*.yaml"))
        assert {f.name for f in files} == {f"Pulumi.{s}.yaml" for s in STACKS}, (
            f"environments/{project}/ holds exactly the three stack files"
        )
        for file in files:
            settings = parse_settings(stack_file_to_raw(yaml.safe_load(file.read_text())), model)
            assert settings.environment == file.name.split(".")[1], f"{file}: environment key"
    assert not list(ENVIRONMENTS.glob("Pulumi.*.yaml")), "no stack file outside a project"


def test_every_stack_encrypts_secrets_with_the_state_key() -> None:
    for project in MODELS:
        for stack in STACKS:
            document = yaml.safe_load((ENVIRONMENTS / project / f"Pulumi.{stack}.yaml").read_text())
            provider = document.get("secretsprovider", "")
            assert provider.startswith("awskms://alias/approvals-pulumi?region="), (
                f"{project}/{stack}: secrets encrypted with the bootstrap's KMS key"
            )


def test_application_references_its_own_platform() -> None:
    for stack in STACKS:
        app = parse_settings(_raw(stack, "application"), ApplicationSettings)
        assert app.platform_stack == f"organization/approvals-platform/{stack}", stack
        assert app.release is None, "no release is pinned in a committed stack file"


def test_environments_differ_as_data() -> None:
    dev, prod = (parse_settings(_raw(s), PlatformSettings) for s in ("dev", "prod"))
    assert len(prod.network.availability_zones) == 3, "prod spans three zones"
    assert len(dev.network.availability_zones) == 2, "dev spans two zones"
    assert not prod.cluster.endpoint_public_access, "prod API endpoint is private"
    assert prod.feature_store.multi_az and not dev.feature_store.multi_az, (
        "Multi-AZ only beyond dev"
    )
    service = parse_settings(_raw("prod", "application"), ApplicationSettings).service
    assert service.min_replicas >= 2, "prod keeps at least two replicas"


@pytest.mark.parametrize(
    ("project", "path", "value", "named"),
    [
        ("platform", ("cluster", "minSize"), _DELETE, "approvals:cluster.minSize"),
        ("platform", ("cluster", "minSize"), "two", "approvals:cluster.minSize"),
        ("platform", ("featureStore", "multiAz"), "sometimes", "approvals:featureStore.multiAz"),
        ("platform", ("network", "availabilityZones"), ["us-east-1a"],
         "approvals:network.availabilityZones"),
        ("platform", ("cluster", "publicAccessCidrs"), ["0.0.0.0/0"],
         "approvals:cluster.publicAccessCidrs"),
        ("platform", ("network", "cidrBlock"), "8.8.0.0/16", "approvals:network.cidrBlock"),
        ("platform", ("environment",), "qa", "approvals:environment"),
        ("platform", ("region",), _DELETE, "aws:region"),
        ("platform", ("featureStore",), _DELETE, "approvals:featureStore"),
        ("platform", ("state", "keyArn"), "alias/approvals-pulumi", "approvals:state.keyArn"),
        ("platform", ("github", "repository"), "approvals", "approvals:github.repository"),
        ("platform", ("cluster", "adminRoleArns"), _DELETE, "approvals:cluster.adminRoleArns"),
        ("platform", ("cluster", "adminRoleArns"), [], "approvals:cluster.adminRoleArns"),
        ("platform", ("cluster", "adminRoleArns"), ["approvals-admin"],
         "approvals:cluster.adminRoleArns"),
        ("application", ("service", "logLevel"), "LOUD", "approvals:service.logLevel"),
        ("application", ("service", "surprise"), 1, "approvals:service.surprise"),
        ("application", ("service", "imageTag"), "0.1.0", "approvals:service.imageTag"),
        ("application", ("release", "modelVersion"), "v 1", "approvals:release.modelVersion"),
        ("application", ("platformStack",), "dev", "approvals:platformStack"),
        ("application", ("outcomes", "replicas"), 0, "approvals:outcomes.replicas"),
        ("application", ("outcomes", "batch"), 5000, "approvals:outcomes.batch"),
        ("application", ("outcomes", "memoryLimit"), "lots", "approvals:outcomes.memoryLimit"),
        ("application", ("decisions", "flushSeconds"), 0, "approvals:decisions.flushSeconds"),
        ("application", ("decisions", "maxRows"), 10**9, "approvals:decisions.maxRows"),
        ("application", ("experiment", "mode"), "canary", "approvals:experiment.mode"),
        ("application", ("experiment", "holdoutShare"), 0.7, "approvals:experiment.holdoutShare"),
        ("application", ("experiment", "salt"), "a b", "approvals:experiment.salt"),
    ],
)  # fmt: skip
def test_bad_value_names_the_key(
    project: str, path: tuple[str, ...], value: Any, named: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(_broken("prod", path, value, project), MODELS[project])
    assert named in str(caught.value), f"message should name {named}: {caught.value}"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("featureStore", "numCacheClusters"), 1, "numCacheClusters >= 2"),
        (("cluster", "desiredSize"), 99, "minSize <= desiredSize <= maxSize"),
        (("network", "natGateways"), 4, "natGateways cannot exceed"),
        (
            ("network", "availabilityZones"),
            ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
            "network.availabilityZones: 'eu-west-1a' is not in aws:region",
        ),
        (("cluster", "endpointPublicAccess"), True, "staging and prod keep the API private"),
    ],
)
def test_inconsistent_values_are_refused(path: tuple[str, ...], value: Any, reason: str) -> None:
    raw = _broken("prod", path, value, "platform")
    if path == ("cluster", "endpointPublicAccess"):
        raw["cluster"]["publicAccessCidrs"] = ["198.51.100.0/24"]
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, PlatformSettings)
    assert reason in str(caught.value), f"message should explain {reason!r}: {caught.value}"


def test_outcome_consumers_default_to_one_in_dev_and_two_beyond() -> None:
    for stack, replicas in (("dev", 1), ("staging", 2), ("prod", 2)):
        raw = _broken(stack, ("outcomes",), _DELETE, "application")
        app = parse_settings(raw, ApplicationSettings)
        assert app.consumer_replicas == replicas, f"{stack}: default consumer replicas"
        assert app.outcomes.batch == 500, "the worker's default batch"
    raw = _broken("prod", ("outcomes", "replicas"), 4, "application")
    assert parse_settings(raw, ApplicationSettings).consumer_replicas == 4, "the stack's own"


@pytest.mark.parametrize(
    ("experiment", "reason"),
    [
        ({"mode": "ab"}, "mode ab needs challengerShare above 0"),
        ({"mode": "shadow", "challengerShare": 0.2}, "challengerShare applies to mode ab only"),
        ({"mode": "ab", "challengerShare": 0.6, "holdoutShare": 0.4}, "leave the champion"),
    ],
)
def test_impossible_experiments_are_refused(experiment: dict[str, Any], reason: str) -> None:
    raw = _broken("prod", ("experiment",), experiment, "application")
    with pytest.raises(SettingsError, match=reason):
        parse_settings(raw, ApplicationSettings)


def test_pdb_must_let_nodes_drain() -> None:
    raw = _broken("prod", ("service", "pdbMinAvailable"), 3, "application")
    with pytest.raises(SettingsError, match="pdbMinAvailable must be below minReplicas"):
        parse_settings(raw, ApplicationSettings)


def test_public_endpoint_needs_a_cidr_list() -> None:
    raw = _broken("dev", ("cluster", "publicAccessCidrs"), _DELETE, "platform")
    with pytest.raises(SettingsError, match="publicAccessCidrs") as caught:
        parse_settings(raw, PlatformSettings)
    assert "approvals:cluster" in str(caught.value), "the message names the cluster key"


def test_file_without_config_is_refused() -> None:
    with pytest.raises(SettingsError, match="no `config:` mapping"):
        stack_file_to_raw({"environment": "dev"})


def test_settings_are_frozen() -> None:
    settings = parse_settings(_raw("dev"), PlatformSettings)
    with pytest.raises(ValueError, match="frozen"):
        settings.cluster.min_size = 5  # type: ignore[misc]
