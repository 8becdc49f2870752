"""Cut one attempts file in time: the earlier part to train on, the later part held out.

Held-out attempts must come after the model's feature state (the gate and the evaluation say
so when they do not): two simulations of the same period with different seeds overlap in time,
so the release cuts one simulation instead.

Usage: ``python split-attempts.py ATTEMPTS --train OUT --holdout OUT [--holdout-fraction F]``
(F of the period, by ``event_time``, default 0.2). Exits 2 naming the problem when a side
would be empty or the file has no ``event_time``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("attempts", type=Path)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--holdout", type=Path, required=True)
    parser.add_argument("--holdout-fraction", type=float, default=0.2)
    args = parser.parse_args(argv)
    if not 0 < args.holdout_fraction < 1:
        print("error: --holdout-fraction must be between 0 and 1", file=sys.stderr)
        return 2
    import pandas as pd

    frame = pd.read_parquet(args.attempts)
    if "event_time" not in frame:
        print(f"error: {args.attempts} has no event_time column", file=sys.stderr)
        return 2
    times = pd.to_datetime(frame["event_time"], utc=True)
    cut = times.min() + (times.max() - times.min()) * (1 - args.holdout_fraction)
    train, holdout = frame[times < cut], frame[times >= cut]
    if train.empty or holdout.empty:
        print(f"error: cutting {args.attempts} at {cut} leaves a side empty", file=sys.stderr)
        return 2
    for part, path in ((train, args.train), (holdout, args.holdout)):
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(path, index=False)
    print(f"cut at {cut.isoformat()}: {len(train):,} attempts to train, {len(holdout):,} held out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
