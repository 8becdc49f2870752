"""Live outcomes: apply throughput and memory of ``approvals.features.outcomes``.

Simulates payments, materializes the first half of their period, then reports the second half's
outcomes in event-time order in batches of ``--batch`` through one client, against a throwaway
redis-server (or ``--redis-url``). Prints, each with its ratio to a floor measured in the same
run on the same connection:

- outcomes/s of ``apply_outcomes`` and ms per batch (Python validation and arguments apart),
  against one EVAL of a script that only reads its arguments (the round trip and the transfer
  of the same bytes: what no apply can beat);
- ms per batch of the same outcomes reported again (all duplicates: marker checks only, one
  script call), and of a batch half of which repeats outcomes applied before (the script finds
  them, writes nothing, and a second call applies the rest);
- bytes per key of each family after the replay (``MEMORY USAGE``), and per dedup marker.

Usage: ``make bench-outcomes`` (``python bench/outcomes.py [--payments N] [--batch 500]``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis

from approvals.contract import validate_frame
from approvals.features.definitions import FAMILIES
from approvals.features.materialize import materialize
from approvals.features.outcomes import MARKER_TTL, apply_outcomes, script_args, validate_outcomes
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import build_state
from approvals.simulate import simulate
from dev.redis_server import RedisServer

FLOOR = "local n = 0 for i = 1, #ARGV do n = n + #ARGV[i] end return n"


def _rows(payments: int, seed: int) -> tuple[Any, list[dict[str, Any]]]:
    data = validate_frame(simulate(payments, seed=seed, days=21).attempts, labels=True)
    data = data.sort_values("event_time", kind="stable").reset_index(drop=True)
    cut = data["event_time"].iloc[len(data) // 2]
    history, live = data[data.event_time < cut], data[data.event_time >= cut]
    rows = live.to_dict("records")
    for row in rows:
        row["event_time"] = row["event_time"].to_pydatetime()
        for key in ("previous_response_code", "merchant_advice_code"):
            if not isinstance(row.get(key), str):
                row[key] = None
    return history, rows


def run(url: str, payments: int, batch: int, seed: int) -> None:
    """Measure and print (see the module docstring)."""
    history, rows = _rows(payments, seed)
    settings = RedisSettings(url=url, prefix=f"bench{uuid.uuid4().hex[:6]}", timeout_ms=5000)
    version = materialize(build_state(history), settings).version
    conn = redis.Redis.from_url(url)
    floor = conn.register_script(FLOOR)
    batches = [rows[i : i + batch] for i in range(0, len(rows) - batch + 1, batch)]
    print(f"{len(history):,} attempts materialized, {len(batches) * batch:,} reported "
          f"in {len(batches)} batches of {batch}")  # fmt: skip
    spent = {"python": 0.0, "apply": 0.0, "floor": 0.0}
    for outcomes in batches:
        start = time.perf_counter()
        args = script_args(validate_outcomes(outcomes), settings.prefix, MARKER_TTL)
        spent["python"] += time.perf_counter() - start
        start = time.perf_counter()
        floor(keys=[f"{settings.prefix}:current"], args=args)
        spent["floor"] += time.perf_counter() - start
        start = time.perf_counter()
        result = apply_outcomes(conn, outcomes, prefix=settings.prefix)
        spent["apply"] += time.perf_counter() - start
        assert result.applied + result.late == len(outcomes), result
    n = len(batches) * batch
    per = {k: 1000 * v / len(batches) for k, v in spent.items()}
    ratio = per["apply"] / per["floor"]
    print(f"apply: {n / spent['apply']:,.0f} outcomes/s, {per['apply']:.1f} ms per batch "
          f"(validation and arguments {per['python']:.1f} ms); round-trip floor "
          f"{per['floor']:.2f} ms per batch: {ratio:.1f}x the floor")  # fmt: skip
    start = time.perf_counter()
    again = apply_outcomes(conn, batches[0], prefix=settings.prefix)
    repeat = 1000 * (time.perf_counter() - start)
    print(f"the same batch again: {again.duplicates} duplicates in {repeat:.1f} ms "
          f"({repeat / per['floor']:.1f}x the floor)")  # fmt: skip
    _half_repeats(conn, settings.prefix, batches[-1])
    base = f"{settings.prefix}:{version}:"
    for family in FAMILIES:
        keys = list(conn.scan_iter(match=f"{base}{family.name}:*", count=5000))
        if keys:
            used = np.array([conn.memory_usage(k, samples=0) for k in keys])
            print(f"  {family.name:14s} {len(keys):7,} keys  bytes/key mean {used.mean():6.0f} "
                  f"max {used.max():6d}")  # fmt: skip
    markers = list(conn.scan_iter(match=f"{base}seen:*", count=5000))[:2000]
    print(f"  dedup marker   bytes/key mean "
          f"{np.mean([conn.memory_usage(k, samples=0) for k in markers]):.0f}")  # fmt: skip


def _half_repeats(conn: redis.Redis, prefix: str, applied: list[dict[str, Any]]) -> None:
    """Time a batch whose first half was applied before and whose second half is new."""
    half = len(applied) // 2
    fresh = [{**row, "attempt_id": f"{row['attempt_id']}-again"} for row in applied[half:]]
    start = time.perf_counter()
    result = apply_outcomes(conn, applied[:half] + fresh, prefix=prefix)
    spent = 1000 * (time.perf_counter() - start)
    print(f"half repeats: {result.applied} applied, {result.duplicates} duplicates in "
          f"{spent:.1f} ms (two script calls)")  # fmt: skip


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="an existing Redis (default: a throwaway one)")
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.redis_url:
        run(args.redis_url, args.payments, args.batch, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        run(server.url, args.payments, args.batch, args.seed)


if __name__ == "__main__":
    main()
