"""Strict YAML configuration files: the user's file, or the default embedded in the package."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from approvals.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def _error_lines(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"key '{key}': {err['msg']}")
    return "; ".join(parts)


def read_config(model: type[Model], path: str | os.PathLike[str] | None, default: str) -> Model:
    """Load a strict YAML config: the user's file, or the file embedded in the package.

    Args:
        model: the pydantic model to validate against.
        path: a YAML file, or ``None`` for the packaged ``approvals/data/<default>``.
        default: file name of the packaged default.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid; the message names the key.
    """
    name = str(path) if path is not None else default
    try:
        if path is None:
            text = resources.files("approvals").joinpath("data", default).read_text()
        else:
            text = Path(path).read_text(encoding="utf-8")
        raw: Any = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of keys at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{name}: {_error_lines(exc)}") from exc
