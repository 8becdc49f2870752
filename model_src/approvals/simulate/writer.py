"""Atomic output: every file goes to a temporary directory beside the target, then one rename."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from approvals.atomic import staged_dir

if TYPE_CHECKING:
    from approvals.simulate import Simulation

FILES = ("attempts", "truth", "routes", "retries")


def write(sim: Simulation, out_dir: str | os.PathLike[str]) -> Path:
    """Write the simulation's Parquet files and ``manifest.json`` into ``out_dir``.

    The files are written into a temporary directory beside ``out_dir`` which then replaces
    it; if anything fails, a previous ``out_dir`` is left exactly as it was.

    Args:
        sim: the simulation.
        out_dir: the directory to create or replace.

    Returns:
        The directory written.

    Raises:
        NotADirectoryError: ``out_dir`` exists and is a file.
    """
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"not a directory: {target}")
    with staged_dir(target) as tmp:
        _write_files(sim, tmp)
    return target


def _write_files(sim: Simulation, directory: Path) -> None:
    for name in FILES:
        table = pa.Table.from_pandas(getattr(sim, name), preserve_index=False)
        pq.write_table(table, directory / f"{name}.parquet", compression="zstd")
    (directory / "manifest.json").write_text(json.dumps(sim.manifest, indent=2) + "\n")
