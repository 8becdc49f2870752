"""``actions/upload-artifact`` and ``actions/download-artifact`` (v4 and later) on local disk.

The rules that decide what a deploy job really receives are the actions' own:

- ``path`` lines are patterns relative to the workspace; ``!pattern`` excludes;
- the artifact's root is the least common ancestor of the patterns' search paths (a single
  literal file: its folder), so ``work/model`` and ``work/report`` arrive as ``model/`` and
  ``report/``, and ``download ... path: work`` puts them back under ``work/``;
- hidden files (a name starting with ``.``) are left out unless ``include-hidden-files``;
- a second upload under the same name fails unless ``overwrite``;
- permissions are not kept: files arrive as 0644, so nothing executable travels this way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

GLOB_CHARS = set("*?[{")


class ArtifactError(RuntimeError):
    """What the actions would fail with (no files, a duplicate name, an unknown artifact)."""


def _search_path(pattern: Path) -> Path:
    """The pattern's longest leading part without glob characters."""
    parts = []
    for part in pattern.parts:
        if GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts)


def _matches(workspace: Path, pattern: str) -> set[Path]:
    """The files a pattern (relative to ``workspace``, or absolute) names; a folder: all below."""
    base, relative = (
        (Path("/"), pattern.lstrip("/")) if pattern.startswith("/") else (workspace, pattern)
    )
    found: set[Path] = set()
    for path in base.glob(relative) if relative else [base]:
        if path.is_dir():
            found |= {item for item in path.rglob("*") if item.is_file()}
        elif path.is_file():
            found.add(path)
    return found


def _hidden(path: Path, search: Path) -> bool:
    inside = path.relative_to(search).parts if path.is_relative_to(search) else path.parts
    return any(part.startswith(".") for part in inside)


def collect(workspace: Path, paths: str, include_hidden: bool = False) -> tuple[list[Path], Path]:
    """The files an upload takes and the root they are stored relative to."""
    lines = [line.strip() for line in paths.splitlines() if line.strip()]
    includes = [line for line in lines if not line.startswith("!")]
    excluded: set[Path] = set()
    for line in lines:
        if line.startswith("!"):
            excluded |= _matches(workspace, line[1:].strip())
    searches = [_search_path(workspace / pattern) for pattern in includes]
    files: set[Path] = set()
    for pattern, search in zip(includes, searches, strict=True):
        matched = _matches(workspace, pattern)
        files |= {f for f in matched if include_hidden or not _hidden(f, search)}
    files -= excluded
    if len(searches) > 1:
        root = Path(os.path.commonpath(searches))
    elif searches and len(files) == 1 and searches[0] in files:
        root = searches[0].parent
    else:
        root = searches[0] if searches else workspace
    return sorted(files), root


def upload(
    store: Path,
    workspace: Path,
    name: str,
    paths: str,
    *,
    if_no_files_found: str = "warn",
    overwrite: bool = False,
    include_hidden: bool = False,
) -> str:
    """Store the files of ``paths`` as artifact ``name``; a line saying what was kept.

    Raises:
        ArtifactError: no files with ``if-no-files-found: error``, or a duplicate name.
    """
    if not name:
        raise ArtifactError("upload-artifact: the artifact name is empty")
    files, root = collect(workspace, paths, include_hidden)
    if not files:
        if if_no_files_found == "error":
            raise ArtifactError(f"no files were found with the provided path: {paths.strip()}")
        return f"no files found for artifact {name}: nothing uploaded ({if_no_files_found})"
    target = store / name
    if target.exists() and not overwrite:
        raise ArtifactError(f"an artifact with the name {name!r} already exists in this run")
    shutil.rmtree(target, ignore_errors=True)
    for file in files:
        copy = target / file.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, copy)
    size = sum(file.stat().st_size for file in files)
    return f"artifact {name}: {len(files)} files, {size / 1e6:.1f} MB, root {root}"


def download(store: Path, name: str, dest: Path) -> str:
    """Put artifact ``name`` (empty: every artifact, each in its own folder) into ``dest``.

    Raises:
        ArtifactError: no artifact of that name in this run.
    """
    if name and not (store / name).is_dir():
        known = sorted(p.name for p in store.iterdir()) if store.is_dir() else []
        raise ArtifactError(f"unable to download artifact {name!r}: not found (run has {known})")
    sources = [(store / name, dest)] if name else [(p, dest / p.name) for p in store.iterdir()]
    count = 0
    for source, target in sources:
        for file in (item for item in source.rglob("*") if item.is_file()):
            copy = target / file.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, copy)
            copy.chmod(0o644)
            count += 1
    return f"downloaded {name or 'all artifacts'}: {count} files into {dest}"
