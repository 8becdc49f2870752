"""The shape of the tree: no import cycles, stages that import downwards, nothing dev-only shipped.

Imports are read from the source (every ``import`` statement, at module level or inside a
function, TYPE_CHECKING blocks included), so a cycle fails here before it fails at run time.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "model_src"
BENTO = ROOT / "bento"

# Stages of the library, lowest first: a module may import its own stage and the ones before it.
LAYERS = (
    ("errors", "config", "atomic", "codes", "contract"),
    ("simulate", "features"),
    ("decisions",),
    ("model",),
    ("evaluation", "registry", "serving", "experiments", "monitoring"),
    ("cli",),
)


def _modules(root: Path, prefix: str = "") -> dict[str, Path]:
    """Dotted module name -> file, for every Python file under ``root`` (generated stubs too)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[(prefix + ".".join(parts)).rstrip(".")] = path
    return found


def _imported(path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module, names) of every import statement in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module, tuple(alias.name for alias in node.names)


def _graph(modules: dict[str, Path], aliases: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from pkg import sub`` names the submodule)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, names in _imported(path):
            module = aliases.get(imported.split(".")[0], "") + imported
            targets = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            if not targets and module in modules:
                targets = {module}
            graph[name] |= targets - {name}
    return graph


def _project() -> tuple[dict[str, Path], dict[str, set[str]]]:
    library = _modules(LIBRARY)
    # the bento's modules import each other flat (``import grpc_server``), as BentoML runs them
    bento = {k: v for k, v in _modules(BENTO, "bento.").items() if k != "bento"}
    flat = {name.removeprefix("bento.").split(".")[0]: "bento." for name in bento}
    modules = {**library, **bento, **_modules(ROOT / "dev", "dev.")}
    return modules, _graph(modules, flat)


def test_there_are_no_import_cycles() -> None:
    """Given every module of the library, the bento and dev/, when their imports are sorted
    topologically, then no cycle stops the sort."""
    _, graph = _project()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "approvals" or len(parts) < 2:
        return None
    return next(i for i, layer in enumerate(LAYERS) if parts[1] in layer)


def test_every_library_module_belongs_to_a_stage() -> None:
    """Given the package's top-level modules and folders, each is named in LAYERS."""
    named = {name for layer in LAYERS for name in layer}
    found = {p.stem if p.is_file() else p.name for p in (LIBRARY / "approvals").iterdir()}
    found = {n for n in found if not n.startswith(("_", ".")) and n != "data"}
    assert found == named, (
        f"not in a stage: {found - named}; stage without a module: {named - found}"
    )


def test_stages_import_only_their_own_stage_or_lower_ones() -> None:
    """Given the library's import graph, no edge climbs from a lower stage to a higher one
    (features never import the model, the model never imports serving or the CLI)."""
    _, graph = _project()
    upward = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if (low := _stage(source)) is not None
        and (high := _stage(target)) is not None
        and high > low
    ]
    assert not upward, "imports that climb a stage:\n" + "\n".join(sorted(upward))


def test_the_library_never_imports_development_or_test_code() -> None:
    """Given the shipped library and the bento, no import names ``dev``, ``tests`` or ``bench``."""
    modules, _ = _project()
    bad = [
        f"{name}: import {module}"
        for name, path in modules.items()
        if not name.startswith("dev")
        for module, _ in _imported(path)
        if module.split(".")[0] in {"dev", "tests", "bench"}
    ]
    assert not bad, "\n".join(bad)


def test_the_wheel_ships_the_library_only() -> None:
    """Given the build configuration, the wheel holds ``approvals`` and nothing of dev/, tests/."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["model_src/approvals"], wheel


def test_no_code_edits_sys_path() -> None:
    """Given the project's Python outside infra/ (Pulumi runs its program from its own folder),
    no module inserts into ``sys.path``: packaging and pytest's ``pythonpath`` do that."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("model_src", "bento", "dev", "bench", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if "sys.path.insert" in path.read_text() and path != Path(__file__)
    ]
    assert not offenders, f"sys.path edited in: {offenders}"


# What the serving image has (pyproject's core and ``serve`` extra) leaves these out.
TRAINING_ONLY = ("pandas", "sklearn", "matplotlib", "duckdb", "pyarrow", "typer", "boto3")


def test_the_service_imports_no_training_library() -> None:
    """Given every library module the bento reaches through its imports, when they are all
    imported in a fresh interpreter, then none of the training-only libraries is loaded."""
    _, graph = _project()
    reached: set[str] = set()
    todo = [name for name in graph if name.startswith("bento.")]
    while todo:
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    library = sorted(name for name in reached if name.startswith("approvals"))
    assert "approvals.serving.engine" in library and "approvals.contract.table" in library
    code = (
        f"import sys, {', '.join(library)};"
        f"heavy = set({TRAINING_ONLY!r}) & {{m.split('.')[0] for m in sys.modules}};"
        "assert not heavy, sorted(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, f"the service would need training libraries: {done.stderr}"


def test_the_outcome_consumer_imports_no_training_library() -> None:
    """Given the stream consumer the serving image runs (``python -m
    approvals.features.consumer``), when it is imported in a fresh interpreter, then none of the
    training-only libraries is loaded."""
    code = (
        "import sys, approvals.features.consumer;"
        f"heavy = set({TRAINING_ONLY!r}) & {{m.split('.')[0] for m in sys.modules}};"
        "assert not heavy, sorted(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, f"the consumer would need training libraries: {done.stderr}"
