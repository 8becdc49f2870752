"""Atomic output: every file goes to a directory beside the target, then swapped in at once."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from approvals.atomic import staged_dir

if TYPE_CHECKING:
    import pandas as pd


FILES = ("attempts", "truth", "routes", "retries", "outages")


@dataclass(frozen=True)
class Simulation:
    """A simulated data set: observed attempts and the generator's truth about them.

    Attributes:
        attempts: contract columns with labels, sorted by ``event_time`` (UTC).
        truth: ``attempt_id``, ``p_approve`` for every attempt.
        routes: ``attempt_id``, ``payment_id``, ``route_id``, ``p_approve`` for every first
            attempt on every route its merchant can use.
        retries: ``attempt_id``, ``payment_id``, ``route_id``, ``delay_hours``, ``p_approve``:
            a second attempt after each declined first attempt.
        outages: the route, issuer and issuer x route outage windows that declined attempts
            96 or 91 (:func:`approvals.simulate.frames.outages_frame`).
        manifest: seed, counts, period, generator version, routes and parameters.
    """

    attempts: pd.DataFrame
    truth: pd.DataFrame
    routes: pd.DataFrame
    retries: pd.DataFrame
    outages: pd.DataFrame
    manifest: dict[str, Any]


def write(sim: Simulation, out_dir: str | os.PathLike[str]) -> Path:
    """Write the simulation's Parquet files and ``manifest.json`` into ``out_dir``.

    The files are written into a temporary directory beside ``out_dir`` which then replaces
    it (:func:`approvals.atomic.staged_dir`); if anything fails, a previous ``out_dir`` is left
    exactly as it was.

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
