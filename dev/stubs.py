"""The bento's generated gRPC stubs (``approval.v1``) for development code outside ``bento/``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from dev.stack import BENTO_DIR


def grpc_stubs() -> tuple[ModuleType, ModuleType]:
    """``approval.v1.approval_pb2`` (messages) and ``approval_pb2_grpc`` (the service stub).

    The stubs import their own package by its top-level name ``approval``, as the bento runs
    them. Under pytest (``pythonpath = ["bento"]``) that name is already importable; elsewhere
    the package is registered once under that name from ``bento/approval``, without editing
    ``sys.path`` (which would expose every other flat module of the bento too).
    """
    if "approval" not in sys.modules and importlib.util.find_spec("approval") is None:
        _register("approval")
    messages = importlib.import_module("approval.v1.approval_pb2")
    return messages, importlib.import_module("approval.v1.approval_pb2_grpc")


def _register(name: str) -> None:
    folder = BENTO_DIR / name
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None, f"no package in {folder}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
