"""The Pulumi project's declared toolchain works with the virtual environment `make` builds.

The engine runs the program with the venv's interpreter and discovers the providers' plugins
with that interpreter's ``python -m pip list --format json -v`` (pulumi/pulumi,
sdk/python/toolchain: pip.go and uv.go; uv's fallback is an isolated pip that cannot see this
venv). A uv-built venv has no pip unless the lock asks for it: the engine then stopped with
"failed to discover package requirements".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = {name: ROOT / "infra" / name / "Pulumi.yaml" for name in ("platform", "application")}
PLUGINS = ("pulumi_aws", "pulumi_kubernetes", "pulumi_random")
MIN_UV = (0, 4, 26)  # the engine's minimum for the uv toolchain (toolchain/uv.go)


def _project(name: str) -> dict[str, Any]:
    document = yaml.safe_load(PROJECTS[name].read_text())
    assert document["runtime"]["name"] == "python", "a Python program"
    return document


def _venv(name: str = "platform") -> Path:
    return (PROJECTS[name].parent / _project(name)["runtime"]["options"]["virtualenv"]).resolve()


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_each_project_uses_the_venv_make_install_builds(name: str) -> None:
    document = _project(name)
    options = document["runtime"]["options"]
    assert options["toolchain"] == "uv", "uv builds the venv, so the engine uses uv's toolchain"
    assert _venv(name) == ROOT / ".venv", "the venv `make install` syncs from uv.lock"
    assert (_venv(name) / "pyvenv.cfg").is_file(), "it is a virtual environment"
    assert document["name"] == f"approvals-{name}", "the deploy role's state paths use it"
    config = (PROJECTS[name].parent / document["stackConfigDir"]).resolve()
    assert config == ROOT / "environments" / name, "stack files live under environments/"
    assert (PROJECTS[name].parent / "__main__.py").is_file(), "the program is beside it"


def test_the_policy_pack_runs_in_the_same_venv() -> None:
    pack = ROOT / "infra" / "policy" / "PulumiPolicy.yaml"
    options = yaml.safe_load(pack.read_text())["runtime"]["options"]
    assert options["toolchain"] == "uv"
    assert (pack.parent / options["virtualenv"]).resolve() == ROOT / ".venv"


def test_uv_is_where_make_puts_it_and_new_enough() -> None:
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    out = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"uv (\d+)\.(\d+)\.(\d+)", out)
    assert found, out
    assert tuple(int(part) for part in found.groups()) >= MIN_UV, out


def test_the_engine_finds_every_provider_plugin_in_the_venv() -> None:
    python = _venv() / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "-v"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"pip list failed as the engine would see it: {result.stderr}"
    packages = {p["name"].replace("-", "_").lower(): p for p in json.loads(result.stdout)}
    for module in PLUGINS:
        package = packages.get(module)
        assert package is not None, f"{module} is listed"
        plugin = Path(package["location"]) / module / "pulumi-plugin.json"
        assert plugin.is_file(), f"{module}: the engine reads {plugin}"
        meta = json.loads(plugin.read_text())
        assert meta.get("resource") is True and meta.get("name"), f"{module} is a resource plugin"
