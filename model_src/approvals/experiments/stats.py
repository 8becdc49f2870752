"""The statistics of an experiment report: ratio metrics by the delta method, CUPED, SRM.

Units are what was randomised (payments: every attempt of a payment is in its arm), so a
metric is a ratio of per-unit sums, ``sum(num) / sum(den)``: approval rate per attempt
(approved attempts / attempts), per payment (den = 1), approved value per payment. Its
variance comes from the delta method: the estimate moves with the mean of the units'
linearised contributions ``(num - R * den) / mean(den)`` (Deng, Knoblich and Lu, KDD 2018).
CUPED (Deng et al., WSDM 2013) removes from those contributions what pre-treatment covariates
predict, with one least-squares coefficient pooled over the arms: unbiased because assignment
is independent of the covariates, narrower by the share of variance they explain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Arm", "Comparison", "arm_estimates", "compare", "sample_ratio"]

Z95 = float(stats.norm.ppf(0.975))
SRM_ALPHA = 0.001  # the usual threshold: a mismatch this unlikely is a broken split, not luck


@dataclass(frozen=True)
class Arm:
    """One arm's estimate of a metric: raw, CUPED-adjusted, and its standard error."""

    units: int
    raw: float
    adjusted: float
    se: float
    se_raw: float


@dataclass(frozen=True)
class Comparison:
    """``arm`` against ``versus``: the difference of the adjusted estimates and its interval."""

    estimate: float
    se: float
    ci95: tuple[float, float]
    p_value: float
    relative: float | None
    relative_ci95: tuple[float, float] | None
    variance_reduction: float  # 1 - var(adjusted) / var(raw) of the difference


def arm_estimates(
    num: np.ndarray, den: np.ndarray, arm: np.ndarray, covariates: np.ndarray | None
) -> dict[str, Arm]:
    """Each arm's ratio ``sum(num)/sum(den)`` over its units, with and without CUPED.

    Args:
        num, den: per unit sums (den > 0 for every unit).
        arm: per unit the arm's name.
        covariates: units x k pre-treatment covariates (None: no adjustment).
    """
    names = sorted(set(arm.tolist()))
    lin = np.zeros(len(num))
    ratios: dict[str, float] = {}
    for name in names:
        rows = arm == name
        ratio = float(num[rows].sum() / den[rows].sum())
        ratios[name] = ratio
        lin[rows] = (num[rows] - ratio * den[rows]) / den[rows].mean()
    theta, centred, overall = _cuped(lin, arm, names, covariates)
    out = {}
    for name in names:
        rows = arm == name
        n = int(rows.sum())
        residual = lin[rows] - (centred[rows] @ theta if theta is not None else 0.0)
        shift = 0.0
        if theta is not None and covariates is not None:
            shift = float((covariates[rows].mean(axis=0) - overall) @ theta)
        out[name] = Arm(
            units=n, raw=ratios[name], adjusted=ratios[name] - shift,
            se=_se(residual), se_raw=_se(lin[rows]),
        )  # fmt: skip
    return out


def _se(values: np.ndarray) -> float:
    return float(np.sqrt(values.var(ddof=1) / len(values))) if len(values) > 1 else float("nan")


def _cuped(
    lin: np.ndarray, arm: np.ndarray, names: Sequence[str], covariates: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """The pooled coefficient of the linearised metric on the covariates (centred per arm)."""
    if covariates is None or covariates.shape[1] == 0:
        return None, np.zeros((len(lin), 0)), None
    centred = covariates.astype(float).copy()
    for name in names:
        rows = arm == name
        centred[rows] -= centred[rows].mean(axis=0)
    keep = centred.std(axis=0) > 0
    if not keep.any():
        return None, np.zeros((len(lin), 0)), None
    theta = np.zeros(covariates.shape[1])
    theta[keep] = np.linalg.lstsq(centred[:, keep], lin, rcond=None)[0]
    return theta, centred, covariates.mean(axis=0)


def compare(a: Arm, b: Arm) -> Comparison:
    """``a`` minus ``b`` (independent samples), with a normal 95% interval and p-value, and the
    relative difference ``a / b - 1`` with its delta-method interval."""
    estimate = a.adjusted - b.adjusted
    se = float(np.hypot(a.se, b.se))
    p_value = float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else float(estimate == 0)
    relative = relative_ci = None
    if b.adjusted != 0:
        relative = a.adjusted / b.adjusted - 1
        rel_se = float(np.hypot(a.se / b.adjusted, a.adjusted * b.se / b.adjusted**2))
        relative_ci = (relative - Z95 * rel_se, relative + Z95 * rel_se)
    raw_var = a.se_raw**2 + b.se_raw**2
    return Comparison(
        estimate=estimate, se=se, ci95=(estimate - Z95 * se, estimate + Z95 * se),
        p_value=p_value, relative=relative, relative_ci95=relative_ci,
        variance_reduction=float(1 - se**2 / raw_var) if raw_var > 0 else 0.0,
    )  # fmt: skip


def sample_ratio(observed: Mapping[str, int], shares: Mapping[str, float]) -> dict[str, object]:
    """Pearson's chi-square test of the units per arm against the configured shares.

    An arm observed with a configured share of 0 is a mismatch whatever its count.
    """
    names = sorted(set(observed) | set(shares))
    counts = np.array([observed.get(n, 0) for n in names], dtype=float)
    weights = np.array([shares.get(n, 0.0) for n in names], dtype=float)
    expected = counts.sum() * weights / weights.sum()
    if np.any((expected == 0) & (counts > 0)):
        p_value = 0.0
    else:
        used = expected > 0
        p_value = (
            float(stats.chisquare(counts[used], expected[used]).pvalue) if used.sum() > 1 else 1.0
        )
    return {
        "observed": {n: int(c) for n, c in zip(names, counts, strict=True)},
        "expected_shares": {
            n: float(w / weights.sum()) for n, w in zip(names, weights, strict=True)
        },
        "p_value": p_value,
        "threshold": SRM_ALPHA,
        "flagged": p_value < SRM_ALPHA,
    }
