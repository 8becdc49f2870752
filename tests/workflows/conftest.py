"""Shared helpers for workflow tests: the repository's .github tree, parsed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONS = sorted((GITHUB / "actions").glob("*/action.yml"))


def load(path: Path) -> dict[str, Any]:
    """Parse a workflow; YAML 1.1 reads the key `on` as True, so it is renamed back."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is a mapping"
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="session")
def workflows() -> dict[str, dict[str, Any]]:
    """Every workflow file, parsed, by file name."""
    assert WORKFLOWS, "the repository has workflows"
    return {path.name: load(path) for path in WORKFLOWS}
