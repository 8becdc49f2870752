"""Point-in-time aggregate features in DuckDB SQL.

For every query attempt at time t and every family window, the count of labelled attempts of
the same key with ``start <= time < t`` is ``C(< t) - C(< start)``, where ``C`` is the
cumulative count of the key's outcomes. Both terms are ASOF joins against one cumulative table
per family, so the work is a sort and a merge, not a quadratic self-join, and DuckDB can spill
to disk for inputs larger than memory.

Events (labelled attempts) are first reduced to one row per key and microsecond; a
:class:`~approvals.features.state.FeatureState` is the same shape with old rows compacted, so
training, batch prediction and materialization run the same SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from approvals import codes
from approvals.features.definitions import COUNTERS, FAMILIES, Family, Window

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

US = 1_000_000


def _sql_list(values: frozenset[str] | set[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def _flags_sql() -> str:
    rules = codes.rules()
    return (
        f"response_code IN ({_sql_list(codes.hard_codes())}) AS is_hard, "
        f"response_code IN ({_sql_list(set(rules.outage_codes))}) AS is_outage, "
        "response_code = '51' AS is_nsf"
    )


@contextmanager
def connect(
    memory_limit: str = "4GB", threads: int | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with a memory cap (larger inputs spill to a temp directory)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    try:
        yield con
    finally:
        con.close()


def _key_cols(family: Family, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{k}" for k in family.keys)


def family_rows_sql(family: Family, source: str) -> str:
    """SQL reducing labelled attempts in ``source`` (see :func:`register_events`) to one row
    per key and microsecond."""
    sums = ", ".join(f"SUM({expr})::DOUBLE AS {name}" for name, expr in COUNTERS.items())
    keys = _key_cols(family)
    return f"""
        SELECT {keys}, us, {sums}, arg_max(response_code, attempt_number) AS last_code
        FROM {source}
        GROUP BY {keys}, us
    """


EVENT_COLUMNS = ("event_time", "amount", "attempt_number", "approved", "response_code")


def register_events(con: duckdb.DuckDBPyConnection, events: pd.DataFrame | str) -> str:
    """Load labelled attempts once into a native table ``ev`` with the columns and outcome
    flags the families need (a DataFrame or a Parquet path/glob)."""
    keys = sorted({k for f in FAMILIES for k in f.keys} | set(EVENT_COLUMNS))
    if isinstance(events, str):
        source = f"read_parquet('{events}')"
    else:
        con.register("ev_df", events[keys])
        source = "ev_df"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE ev AS SELECT {', '.join(keys)}, "
        f"epoch_us(event_time) AS us, {_flags_sql()} FROM {source}"
    )
    return "ev"


def build_family_tables(
    con: duckdb.DuckDBPyConnection,
    source: str,
    state_tables: dict[str, pd.DataFrame] | None = None,
) -> None:
    """Create ``fam_<name>`` tables: per key and microsecond counters (state rows first)."""
    for family in FAMILIES:
        parts = [family_rows_sql(family, source)]
        if state_tables and family.name in state_tables:
            con.register(f"state_{family.name}", state_tables[family.name])
            parts.append(f"SELECT * FROM state_{family.name}")
        union = " UNION ALL ".join(f"({p})" for p in parts)
        keys = _key_cols(family)
        sums = ", ".join(f"SUM({c}) AS {c}" for c in COUNTERS)
        cums = ", ".join(
            f"SUM({c}) OVER (PARTITION BY {keys} ORDER BY us ROWS UNBOUNDED PRECEDING) AS {c}"
            for c in family.counters
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE fam_{family.name} AS
                SELECT {keys}, us, last_code, {cums}
                FROM (SELECT {keys}, us, {sums}, arg_max(last_code, us) AS last_code
                      FROM ({union}) GROUP BY {keys}, us)"""
        )


def _boundary_sql(window: Window) -> str:
    if window.lifetime:
        return "t_us"
    tile = window.tile * US
    return f"(t_us // {tile}) * {tile} - {window.seconds * US}"


def _family_counts(con: duckdb.DuckDBPyConnection, family: Family) -> dict[str, np.ndarray]:
    """Cumulative counters at ``t`` and at every window start, in one statement per family."""
    keys = _key_cols(family)
    bounds = [("t", "t_us")] + [
        (w.name, _boundary_sql(w)) for w in family.windows if not w.lifetime
    ]
    probe = ", ".join(f"{sql} AS b_{name}" for name, sql in bounds)
    selects, joins = ["q.rid"], []
    for name, _ in bounds:
        alias = f"c_{name}"
        on = " AND ".join(f"q.{k} = {alias}.{k}" for k in family.keys)
        joins.append(
            f"ASOF LEFT JOIN fam_{family.name} {alias} ON {on} AND q.b_{name} > {alias}.us"
        )
        selects += [f"COALESCE({alias}.{c}, 0) AS w_{name}__{c}" for c in family.counters]
    if family.name == "card":
        selects += ["c_t.us AS last_us", "c_t.last_code AS last_code"]
    rel = con.execute(
        f"""SELECT {", ".join(selects)}
            FROM (SELECT rid, {keys}, {probe} FROM q) q
            {" ".join(joins)}
            ORDER BY q.rid"""
    )
    return dict(rel.fetchnumpy())  # type: ignore[arg-type]


def _card_last(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    last_us, codes_ = raw["last_us"], raw["last_code"]
    data = np.ma.getdata(codes_).astype(object)
    data[np.ma.getmaskarray(codes_)] = None
    return {
        "card_last_us": np.where(np.ma.getmaskarray(last_us), np.nan, np.ma.filled(last_us, 0)),
        "card_last_code": data,
    }


def query_counts(con: duckdb.DuckDBPyConnection, queries: pd.DataFrame) -> dict[str, np.ndarray]:
    """Window counters for every query attempt, in query order.

    Returns:
        ``{"<family>_<window>_<counter>": array}`` for every family window, plus
        ``card_last_us`` (microseconds, NaN when the card has no earlier outcome) and
        ``card_last_code`` (object array, None when absent).
    """
    keys = sorted({k for family in FAMILIES for k in family.keys} | {"event_time"})
    frame = queries[keys].assign(rid=np.arange(len(queries)))  # explicit order, no guessing
    con.register("q_df", frame)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE q AS SELECT *, epoch_us(event_time) AS t_us FROM q_df"
    )
    out: dict[str, np.ndarray] = {}
    for family in FAMILIES:
        raw = _family_counts(con, family)
        if family.name == "card":
            out.update(_card_last(raw))
        for window in family.windows:
            for c in family.counters:
                now = np.asarray(raw[f"w_t__{c}"], dtype=float)
                if not window.lifetime:
                    now = now - np.asarray(raw[f"w_{window.name}__{c}"], dtype=float)
                out[f"{family.name}_{window.name}_{c}"] = now
    return out


def point_in_time_counts(
    events: pd.DataFrame | str,
    queries: pd.DataFrame,
    state_tables: dict[str, pd.DataFrame] | None = None,
    memory_limit: str = "4GB",
) -> dict[str, np.ndarray]:
    """Counters of each query attempt over the labelled events strictly before it.

    Args:
        events: labelled attempts (contract frame or Parquet path) whose outcomes are known.
        queries: attempts to compute features for (labels, if any, are not read).
        state_tables: per-family compacted history to add to ``events`` (a model's state).
        memory_limit: DuckDB memory cap.
    """
    with connect(memory_limit) as con:
        source = register_events(con, events)
        build_family_tables(con, source, state_tables)
        return query_counts(con, queries)
