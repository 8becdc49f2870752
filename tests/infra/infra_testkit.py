"""Shared pieces of the infra tests: paths, constants and the recorded program run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("pulumi_harness.py")
ENVIRONMENTS = ROOT / "environments"
STACKS = ("dev", "staging", "prod")
GITHUB_REPO = "acme-payments/approvals"
EXISTING_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


@dataclass(frozen=True)
class StackRun:
    """What one program run registered, with small lookup helpers."""

    name: str
    resources: list[dict[str, Any]]
    components: dict[str, Any]
    outputs: dict[str, Any]

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

    def output(self, key: str) -> Any:
        """Resolved value of a stack output."""
        return self.outputs[key]["value"]
