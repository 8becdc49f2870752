"""Settings of the release dry run: GitHub's variables, secrets and context, and the fake AWS.

Read once from ``dev/dry_run/settings.yaml`` (or another file), with ``--var NAME=VALUE``
overrides, into a frozen model that refuses unknown keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_SETTINGS = Path(__file__).with_name("settings.yaml")


class SettingsError(ValueError):
    """A settings file that is missing or invalid (named in the message)."""


class GithubContext(BaseModel):
    """The parts of the ``github`` context that do not change from run to run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    actor: str
    ref: str
    event_name: str
    server_url: str


class ServiceHosts(BaseModel):
    """The Kubernetes Services of the inference service, ``<svc>.<namespace>.svc...:<port>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    http: str = Field(pattern=r"^[a-z0-9-]+\.[a-z0-9-]+\.svc\.[a-z.]+:\d+$")
    grpc: str = Field(pattern=r"^[a-z0-9-]+\.[a-z0-9-]+\.svc\.[a-z.]+:\d+$")


class DryRunSettings(BaseModel):
    """Everything the dry run pretends GitHub and AWS hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vars: dict[str, str]
    environments: dict[str, dict[str, str]] = Field(min_length=1)
    secrets: dict[str, str]
    github: GithubContext
    account: str = Field(pattern=r"^\d{12}$")
    service_hosts: ServiceHosts

    @property
    def region(self) -> str:
        """The AWS region (``vars.AWS_REGION``, which the workflows pass to the actions)."""
        return self.vars.get("AWS_REGION") or "us-east-1"

    def environment_vars(self, environment: str | None) -> dict[str, str]:
        """``vars`` as a job in ``environment`` sees them (environment variables win)."""
        if environment is None:
            return dict(self.vars)
        if environment not in self.environments:
            raise SettingsError(
                f"environment {environment!r} is not in the dry-run settings "
                f"({', '.join(self.environments)})"
            )
        return {**self.vars, **self.environments[environment]}


def load_settings(
    path: Path = DEFAULT_SETTINGS, overrides: Mapping[str, str] | None = None
) -> DryRunSettings:
    """Read and validate the settings; ``overrides`` replace repository variables.

    Raises:
        SettingsError: the file is missing, not YAML, or does not match the model.
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"dry-run settings {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise SettingsError(f"dry-run settings {path}: not a mapping")
    doc["vars"] = {**(doc.get("vars") or {}), **(overrides or {})}
    try:
        return DryRunSettings.model_validate(doc)
    except ValidationError as exc:
        raise SettingsError(f"dry-run settings {path}:\n{exc}") from exc


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` strings as a mapping.

    Raises:
        SettingsError: one without ``=`` or with an empty name.
    """
    parsed = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise SettingsError(f"--var {pair!r}: expected NAME=VALUE")
        parsed[name] = value
    return parsed
