"""The experiment report's statistics against the truth, over many simulated experiments.

One command (``make bench-experiments``; ``python bench/experiments.py --help``): for each of
``--seeds`` simulations (``--payments`` over 28 days), the last 14 days are an experiment
(:mod:`approvals.experiments.simulated`: outcomes drawn from the simulator's true
probabilities, so every arm's true approval rate and approved value are known), played three
ways on the same payments and reported with ``experiment_report`` (the first 14 days are the
pre-period):

- **A/B/holdout**: champion (a model with logit noise 0.5), challenger (noise 0.25), holdout
  (the merchant's first route) at 45/45/10. Coverage: the share of runs whose 95% interval
  holds the true uplift, per comparison and metric (target 90-99%);
- **A/A**: champion and challenger the same model: how often the report calls their
  difference significant at 5% (target at most about 5%), and how often the sample-ratio test
  fires on a correct split (expected 0.1%);
- **broken split**: the A/B/holdout run with 5% of the challenger's payments missing from the
  log: how often the sample-ratio test flags it (target: every run).

Also the CUPED variance reduction and the interval half-widths, with the unadjusted ones of
the same runs as the baseline.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from datetime import timedelta

import numpy as np

from approvals.experiments.log import validate_log
from approvals.experiments.report import experiment_report
from approvals.experiments.simulated import simulate_experiment
from approvals.simulate import START, simulate

SHARES = {"champion": 0.45, "challenger": 0.45, "holdout": 0.10}
AB = {"champion": 0.5, "challenger": 0.25, "holdout": None}
AA = {"champion": 0.5, "challenger": 0.5, "holdout": None}
TRUTH_OF = {"approval_rate": "approval_rate", "payment_approval_rate": "approval_rate",
            "approved_value": "approved_value"}  # fmt: skip


def run(seeds: int, payments: int, first_seed: int) -> None:
    """Play and report (see the module docstring), then print the figures."""
    start = (START + timedelta(days=14)).replace(tzinfo=None)
    covered: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    widths: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    aa_significant: dict[str, list[bool]] = defaultdict(list)
    srm_clean, srm_broken = [], []
    began = time.monotonic()
    for seed in range(first_seed, first_seed + seeds):
        sim = simulate(payments, seed=seed, days=28)
        ab = simulate_experiment(sim, start, AB, SHARES, seed=seed)
        report = experiment_report(validate_log(ab.log), shares=SHARES, start=start)
        srm_clean.append(report["srm"]["flagged"])
        for u in report["uplift"]:
            metric = TRUTH_OF[u["metric"]]
            truth = ab.truth[u["arm"]][metric] - ab.truth[u["versus"]][metric]
            lo, hi = u["ci95"]
            covered[u["arm"], u["versus"], u["metric"]].append(lo <= truth <= hi)
            half = (hi - lo) / 2
            widths[u["metric"], u["versus"]].append(
                (half, half / np.sqrt(1 - u["variance_reduction"]))
            )
        aa = simulate_experiment(sim, start, AA, SHARES, seed=seed)
        report = experiment_report(validate_log(aa.log), shares=SHARES, start=start)
        srm_clean.append(report["srm"]["flagged"])
        for u in report["uplift"]:
            if (u["arm"], u["versus"]) == ("challenger", "champion"):
                aa_significant[u["metric"]].append(u["significant"])
        broken = simulate_experiment(sim, start, AB, SHARES, seed=seed, lose={"challenger": 0.05})
        report = experiment_report(validate_log(broken.log), shares=SHARES, start=start)
        srm_broken.append(report["srm"]["flagged"])
        print(f"  seed {seed}: {time.monotonic() - began:5.0f}s", flush=True)
    _print(seeds, payments, covered, widths, aa_significant, srm_clean, srm_broken)


def _print(
    seeds: int, payments: int, covered: dict, widths: dict, aa: dict, clean: list, broken: list
) -> None:  # fmt: skip
    print(f"\n{seeds} simulated experiments, {payments:,} payments each (14-day experiment)")
    print("coverage of the true uplift by the 95% interval (target 90-99%):")
    for (arm, versus, metric), hits in sorted(covered.items()):
        print(f"  {arm:>10} vs {versus:<8} {metric:<22} {_share(hits)}")
    print(
        "A/A: champion and challenger the same model, difference significant at 5% (target <= ~5%):"
    )
    for metric, hits in sorted(aa.items()):
        print(f"  {metric:<22} {np.mean(hits):6.1%} ({sum(hits)}/{len(hits)})")
    print(f"sample-ratio test on correct splits: flagged in {_share(clean)}")
    print(f"sample-ratio test, 5% of the challenger lost: flagged in {np.mean(broken):.1%} "
          f"({sum(broken)}/{len(broken)}; target 100%)")  # fmt: skip
    print("95% interval half-width, CUPED vs unadjusted (same runs), mean:")
    for (metric, versus), pairs in sorted(widths.items()):
        adjusted, raw = np.mean(pairs, axis=0)
        print(
            f"  {metric:<22} vs {versus:<8} {adjusted:10.5f} vs {raw:10.5f}: {adjusted / raw:.2f}x"
        )


def _share(hits: list[bool]) -> str:
    return f"{np.mean(hits):6.1%} ({sum(hits)}/{len(hits)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    run(args.seeds, args.payments, args.first_seed)


if __name__ == "__main__":
    main()
