"""What ``pulumi up`` would check first: the stack's config, with the run's ``--config`` values,
read by the program's own settings model.

The stack file is ``<stackConfigDir>/Pulumi.<stack>.yaml`` of the project (``Pulumi.yaml``);
``--config KEY=VALUE`` sets ``KEY`` (with ``--config-path``, ``ns:a.b`` sets ``b`` inside
``ns:a``). The model is ``<Project>Settings`` in the checkout's ``infra/settings.py`` (project
folder ``application``: ``ApplicationSettings``), parsed as the program parses it
(``stack_file_to_raw``, ``parse_settings``). Without such a model nothing is checked, and the
note says so.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from dev.dry_run.shim_args import ShimError


def stack_file(project: Path, stack: str) -> Path:
    """Where ``Pulumi.<stack>.yaml`` of the project folder ``project`` lives."""
    manifest = yaml.safe_load((project / "Pulumi.yaml").read_text()) or {}
    return project / str(manifest.get("stackConfigDir") or ".") / f"Pulumi.{stack}.yaml"


def save(project: Path, stack: str, document: dict[str, Any]) -> None:
    """Write the stack file back, as ``pulumi up --config`` saves its values."""
    stack_file(project, stack).write_text(yaml.safe_dump(document, sort_keys=False))


def stack_document(project: Path, stack: str) -> dict[str, Any]:
    """The parsed stack file of ``stack`` in the project folder ``project``.

    Raises:
        ShimError: there is no stack file (the program would find no config at all).
    """
    path = stack_file(project, stack)
    if not path.is_file():
        raise ShimError(f"stack file {path} not found: the program would read no config")
    return dict(yaml.safe_load(path.read_text()) or {})


def apply(document: dict[str, Any], overrides: dict[str, str], as_paths: bool) -> None:
    """Set ``--config`` values in the document's ``config:`` mapping."""
    config = document.setdefault("config", {})
    for key, value in overrides.items():
        namespace, _, rest = key.partition(":")
        if not as_paths or "." not in rest:
            config[key] = value
            continue
        head, *path = rest.split(".")
        node = config.setdefault(f"{namespace}:{head}", {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value


def _settings_module(project: Path) -> ModuleType | None:
    path = project.parent / "settings.py"
    spec = importlib.util.spec_from_file_location("dry_run_stack_settings", path)
    if not path.is_file() or spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


def check(project: Path, stack: str, overrides: dict[str, str], as_paths: bool) -> str:
    """Validate the config ``pulumi up`` would run with; a line saying what was checked.

    Raises:
        ShimError: the program's settings refuse it (the message names the keys).
    """
    document = stack_document(project, stack)
    apply(document, overrides, as_paths)
    module = _settings_module(project)
    model = getattr(module, f"{project.name.capitalize()}Settings", None) if module else None
    if module is None or model is None or not hasattr(module, "stack_file_to_raw"):
        return f"config of {project.name}/{stack} not checked (no settings model found)"
    try:
        module.parse_settings(module.stack_file_to_raw(document), model)
    except ValueError as exc:  # the program's SettingsError
        raise ShimError(f"the {project.name} program would refuse stack {stack}: {exc}") from exc
    return f"config of {project.name}/{stack} checked by {model.__name__}"
