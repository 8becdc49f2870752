"""Shared pieces of the infra tests: paths, constants and the recorded program runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("pulumi_harness.py")
ENVIRONMENTS = ROOT / "environments"
STACKS = ("dev", "staging", "prod")
ACCOUNT = "123456789012"  # the harness's account
GITHUB_REPO = "acme-payments/approvals"
CONNECTION = (
    f"arn:aws:codeconnections:us-east-1:{ACCOUNT}:connection/0f5e2d6c-aaaa-bbbb-cccc-1234567890ab"
)
EXISTING_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
DIGEST = "sha256:" + "5e" * 32


def stack_file(project: str, stack: str) -> Path:
    """``environments/<project>/Pulumi.<stack>.yaml``."""
    return ENVIRONMENTS / project / f"Pulumi.{stack}.yaml"


def image_of(stack: str, version: str) -> str:
    """The image reference a release of ``version`` publishes in ``stack``'s registry."""
    repo = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/approvals/{stack}/service"
    return f"{repo}:{version}@{DIGEST}"


@dataclass(frozen=True)
class StackRun:
    """What one program run registered, with small lookup helpers."""

    name: str
    resources: list[dict[str, Any]]
    components: dict[str, Any]
    outputs: dict[str, Any]
    invokes: list[dict[str, Any]]

    @property
    def stack(self) -> str:
        """dev, staging or prod (the name without its variant)."""
        return self.name.split("+", 1)[0]

    def of_type(self, token: str) -> list[dict[str, Any]]:
        """Every resource of one type token."""
        return [r for r in self.resources if r["type"] == token]

    def one(self, token: str) -> dict[str, Any]:
        """The only resource of a type token (fails the test otherwise)."""
        found = self.of_type(token)
        assert len(found) == 1, f"{self.name}: expected one {token}, found {len(found)}"
        return found[0]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        """Kubernetes objects of one kind, as the program sent them."""
        return [
            r["inputs"]
            for r in self.resources
            if r["type"].startswith("kubernetes:") and r["inputs"].get("kind") == kind
        ]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        """The Kubernetes object of one kind and name (fails the test if not exactly one)."""
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def urn_of(self, kind: str, name: str) -> str:
        """The URN of the Kubernetes object of one kind and name."""
        found = [
            r["urn"]
            for r in self.resources
            if r["type"].startswith("kubernetes:")
            and r["inputs"].get("kind") == kind
            and r["inputs"]["metadata"]["name"] == name
        ]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def output(self, key: str) -> Any:
        """Resolved value of a stack output."""
        return self.outputs[key]["value"]
