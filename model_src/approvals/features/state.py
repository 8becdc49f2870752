"""Feature state: the labelled history a model (or the online store) needs, compacted.

Rows older than the longest window are summed into one row per key (keeping the time and code
of the key's last outcome), so lifetime counters stay exact and the state stays small. Queries
at or after ``end`` get exactly the counters the full history would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from approvals.features.definitions import COUNTERS, FAMILIES, max_window_seconds
from approvals.features.offline import US, connect, family_rows_sql, register_events

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class FeatureState:
    """Per-family compacted counters of labelled attempts up to ``end`` (naive UTC)."""

    end: datetime | None
    tables: dict[str, pd.DataFrame]

    def save(self, directory: Path) -> None:
        """Write one Parquet file per family into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, table in self.tables.items():
            table.to_parquet(directory / f"{name}.parquet", index=False)

    @classmethod
    def load(cls, directory: Path, end: datetime | None) -> FeatureState:
        """Read a state written by :meth:`save`."""
        import pandas as pd

        tables = {f.name: pd.read_parquet(directory / f"{f.name}.parquet") for f in FAMILIES}
        return cls(end=end, tables=tables)

    @property
    def rows(self) -> int:
        """Total rows over all families."""
        return sum(len(t) for t in self.tables.values())


def _compact_sql(family_sql: str, keys: str, cut_us: int) -> str:
    sums = ", ".join(f"SUM({c}) AS {c}" for c in COUNTERS)
    return f"""
        WITH rows AS ({family_sql})
        SELECT {keys}, MAX(us) AS us, {sums}, arg_max(last_code, us) AS last_code
        FROM rows WHERE us < {cut_us} GROUP BY {keys}
        UNION ALL
        SELECT * FROM rows WHERE us >= {cut_us}
    """


def build_state(events: pd.DataFrame | str, memory_limit: str = "4GB") -> FeatureState:
    """Compact labelled attempts into a :class:`FeatureState` ending at their last outcome."""
    with connect(memory_limit) as con:
        source = register_events(con, events)
        row = con.execute(f"SELECT MAX(event_time), epoch_us(MAX(event_time)) FROM {source}")
        end, end_us = row.fetchone() or (None, None)
        if end is None:
            return empty_state()
        cut_us = int(end_us) - max_window_seconds() * US
        tables = {}
        for family in FAMILIES:
            keys = ", ".join(family.keys)
            sql = _compact_sql(family_rows_sql(family, source), keys, cut_us)
            tables[family.name] = con.execute(sql).df()
        return FeatureState(end=end, tables=tables)


def empty_state() -> FeatureState:
    """A state with no history (every counter zero)."""
    return FeatureState(end=None, tables={})
