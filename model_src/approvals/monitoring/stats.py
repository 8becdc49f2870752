"""The tests behind the monitor's alerts: observed against expected approvals, histograms, ECE.

Each gives a p-value; :func:`benjamini_hochberg` turns a family of them (every merchant, or
every issuer, of a window) into q-values, so that testing 200 merchants does not raise ten
alerts by chance.
Approvals are not independent: a declined card retries and is declined again, so the variance
of a segment's ``sum(y - expected)`` is taken over payments (cluster-robust, as the experiment
report's delta method counts payments, not attempts), never below the independent one. The
tests are minimum-effect tests (:func:`beyond_margin`): evidence that a gap exceeds half its
alert threshold, not merely that it is not zero, so a large segment does not alert on a gap
its sampling noise could have pushed across the threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from approvals.model import metrics
from approvals.model.reference import chi_square

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "benjamini_hochberg", "beyond_margin", "ece_consistency", "histogram_test",
    "q_values_by_family", "segment_sums", "z_test",
]  # fmt: skip


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of one family of tests."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(q, 1.0)
    return out


def q_values_by_family(tests: list[dict[str, Any]], family: str = "dimension") -> None:
    """Set every test's ``q_value``: Benjamini-Hochberg within the tests sharing ``family``
    (one family per question: which issuer, which route, which issuer on which route)."""
    for name in {t[family] for t in tests}:
        mine = [t for t in tests if t[family] == name]
        q = benjamini_hochberg(np.array([t["p_value"] for t in mine]))
        for test, q_value in zip(mine, q, strict=True):
            test["q_value"] = float(q_value)


def segment_sums(
    keys: np.ndarray, y: np.ndarray, expected: np.ndarray, payments: np.ndarray
) -> pd.DataFrame:
    """Per segment: rows, observed and expected approvals, and the variance of their gap.

    The variance is the segment's payment-clustered variance of ``sum(y - expected)`` (the
    sum over payments of their squared residual sums), never below the independent one,
    ``sum(e (1 - e))``. Per segment, not pooled: retries cluster very differently from one
    issuer or merchant to the next (a merchant whose cards retry insufficient funds four
    times), and a pooled design effect let those segments alert on chance.

    Returns:
        Indexed by segment: ``n``, ``observed``, ``expected`` (sums) and ``variance``.
    """
    import pandas as pd

    names, segment = np.unique(np.asarray(keys).astype(str), return_inverse=True)
    _, payment = np.unique(np.asarray(payments).astype(str), return_inverse=True)
    pairs, pair = np.unique(segment * (payment.max() + 1) + payment, return_inverse=True)
    residual = np.bincount(pair, y - expected, minlength=pairs.size)
    size = names.size
    out = pd.DataFrame(
        {
            "n": np.bincount(segment, minlength=size),
            "observed": np.bincount(segment, y, minlength=size),
            "expected": np.bincount(segment, expected, minlength=size),
            "robust": np.bincount(pairs // (payment.max() + 1), residual**2, minlength=size),
            "model": np.bincount(segment, expected * (1 - expected), minlength=size),
        },
        index=names,
    )
    out["variance"] = np.maximum(out["robust"], out["model"])
    return out.drop(columns=["robust", "model"])


def z_test(gap: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z of sums ``gap`` with ``variance``, and the two-sided and lower one-sided p-values."""
    se = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 1e-12))
    z = np.asarray(gap, dtype=np.float64) / se
    return z, 2 * stats.norm.sf(np.abs(z)), stats.norm.cdf(z)


def beyond_margin(
    gap: np.ndarray, margin: np.ndarray, variance: np.ndarray, *, drop: bool
) -> np.ndarray:
    """p-values of minimum-effect tests: that a sum ``gap`` is beyond ``margin`` (H0: it is
    within), rather than merely not zero.

    Args:
        gap: observed - expected sums; ``margin`` the sums they must exceed (>= 0).
        drop: test ``gap < -margin`` (one-sided), else ``|gap| > margin``.
    """
    se = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 1e-12))
    gap, margin = np.asarray(gap, dtype=np.float64), np.asarray(margin, dtype=np.float64)
    if drop:
        return np.asarray(stats.norm.cdf((gap + margin) / se))
    return np.asarray(stats.norm.sf((np.abs(gap) - margin) / se))


def histogram_test(
    reference: np.ndarray, observed: np.ndarray, dispersion: float = 1.0
) -> tuple[float, float]:
    """Chi-square test that a window's histogram follows the reference's.

    Args:
        reference, observed: rows per bin.
        dispersion: how much more than sampling noise the column varies on its own (the
            reference chunks' chi-square / df): the statistic is divided by it (quasi-Pearson).

    Returns:
        (chi-square / dispersion, p-value); p = 1 with fewer than two non-empty bins.
    """
    statistic, df = chi_square(reference, observed)
    if df == 0:
        return 0.0, 1.0
    scaled = statistic / max(dispersion, 1.0)
    return scaled, float(stats.chi2.sf(scaled, df))


def ece_consistency(y: np.ndarray, p: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """The ECE and how likely a perfectly calibrated model would score at least as badly.

    Consistency resampling (Bröcker and Smith, 2007): labels are drawn from ``p`` itself, so
    the null distribution carries the ECE's small-sample bias (ten bins of a few dozen rows
    already give 0.02-0.04 by chance).

    Returns:
        (ECE, p-value).
    """
    observed = metrics.ece(y, p)
    rng = np.random.default_rng(seed)
    idx = np.minimum((p * 10).astype(np.int64), 9)
    counts = np.bincount(idx, minlength=10)
    sum_p = np.bincount(idx, p, 10)
    null = np.empty(resamples)
    for i in range(resamples):  # one draw at a time: memory stays at one window
        sum_y = np.bincount(idx, rng.random(p.size) < p, 10)
        null[i] = np.abs(sum_y - sum_p).sum() / counts.sum()
    return observed, float((1 + np.sum(null >= observed)) / (1 + resamples))
