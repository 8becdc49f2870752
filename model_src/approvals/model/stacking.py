"""A regularised logistic model stacked under the booster.

The linear model sees the log-odds of the shrunk rates, volumes and one-hot categories; its
log-odds are the booster's starting score (``init_score``), so the trees only learn what the
linear view misses. Smooth, additive effects of high-cardinality rates extrapolate better this
way than from trees alone. Prediction is numpy only (no scikit-learn in the serving image).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from approvals.features.derive import logit

ONE_HOT = ("card_brand", "card_type", "channel", "three_ds", "prev_class", "route_id")
MAX_LEVELS = 30


@dataclass(frozen=True)
class _Layout:
    """Where the linear model's inputs sit in a feature matrix with given column names."""

    numeric: np.ndarray  # column of each numeric feature
    rates: np.ndarray  # position among ``numeric`` of each rate column
    hot: np.ndarray  # column of each one-hot indicator
    codes: np.ndarray  # category code of each one-hot indicator


@dataclass(frozen=True)
class LinearStack:
    """Standardised numeric features plus one-hot categories, logistic link."""

    numeric: list[str]
    rate_columns: list[str]
    one_hot: dict[str, list[float]]  # categorical feature -> category codes kept
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    def design(self, x: np.ndarray, names: list[str]) -> np.ndarray:
        """The linear model's design matrix from the feature matrix.

        Columns: standardised numeric features (rates as log-odds, missing as the mean), their
        missing indicators, then one indicator per kept category code.
        """
        layout = self._layout(tuple(names))
        mean, scale = self._arrays["mean"], self._arrays["scale"]
        k = len(layout.numeric)
        out = np.empty((len(x), 2 * k + len(layout.codes)))
        cols = x[:, layout.numeric]
        cols[:, layout.rates] = logit(cols[:, layout.rates])
        missing = np.isnan(cols, out=out[:, k : 2 * k])  # written as 0.0 / 1.0
        out[:, :k] = (np.where(missing, mean, cols) - mean) / scale
        np.equal(x[:, layout.hot], layout.codes, out=out[:, 2 * k :])
        return out

    def score(self, x: np.ndarray, names: list[str]) -> np.ndarray:
        """Log-odds of approval (zeros, without building the design, for a trees-only model)."""
        if self.intercept == 0 and not self._arrays["coef"].any():
            used = x[:, self._layout(tuple(names)).numeric]
            if not np.isinf(used).any():  # then the design is finite: design @ 0 + 0 == 0
                return np.zeros(len(x))
        return self.design(x, names) @ self._arrays["coef"] + self.intercept

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        # Converted once: per-call list -> array conversions cost more than the arithmetic.
        return {
            k: np.asarray(getattr(self, k), dtype=np.float64) for k in ("mean", "scale", "coef")
        }

    @cached_property
    def _layouts(self) -> dict[tuple[str, ...], _Layout]:
        return {}

    def _layout(self, names: tuple[str, ...]) -> _Layout:
        layout = self._layouts.get(names)
        if layout is None:
            index = {n: i for i, n in enumerate(names)}
            pairs = [(index[n], c) for n, codes_ in self.one_hot.items() for c in codes_]
            layout = self._layouts[names] = _Layout(
                numeric=np.array([index[n] for n in self.numeric], dtype=np.intp),
                rates=np.array([self.numeric.index(n) for n in self.rate_columns], dtype=np.intp),
                hot=np.array([i for i, _ in pairs], dtype=np.intp),
                codes=np.array([c for _, c in pairs], dtype=np.float64),
            )
        return layout

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LinearStack:
        """Load from :meth:`to_json` output."""
        raw: dict[str, Any] = json.loads(text)
        return cls(**raw)


def fit_stack(
    x: np.ndarray, y: np.ndarray, names: list[str], c: float = 0.3, max_rows: int = 400_000
) -> LinearStack:
    """Fit the linear model (L2, scikit-learn) on at most ``max_rows`` rows."""
    from sklearn.linear_model import LogisticRegression

    categorical = set(ONE_HOT)
    numeric = [n for n in names if n not in categorical and not _is_code(n)]
    rate_columns = [n for n in numeric if n.endswith("_rate")]
    index = {n: i for i, n in enumerate(names)}
    one_hot = {
        name: sorted(float(v) for v in np.unique(x[:, index[name]]) if not np.isnan(v))[:MAX_LEVELS]
        for name in ONE_HOT
        if name in index
    }
    cols = x[:, [index[n] for n in numeric]].copy()
    rates = [numeric.index(n) for n in rate_columns]
    cols[:, rates] = logit(cols[:, rates])
    mean = np.nanmean(cols, axis=0)
    scale = np.nanstd(cols, axis=0)
    mean, scale = np.nan_to_num(mean), np.where(np.nan_to_num(scale) > 0, np.nan_to_num(scale), 1)
    empty = LinearStack(numeric, rate_columns, one_hot, mean.tolist(), scale.tolist(), [], 0.0)
    rows = np.random.default_rng(0).permutation(len(y))[:max_rows]
    design = empty.design(x[rows], names)
    lr = LogisticRegression(C=c, max_iter=300).fit(design, y[rows])
    return LinearStack(
        numeric, rate_columns, one_hot, mean.tolist(), scale.tolist(),
        lr.coef_[0].tolist(), float(lr.intercept_[0]),
    )  # fmt: skip


def _is_code(name: str) -> bool:
    from approvals.features.definitions import CATEGORICALS

    return name in CATEGORICALS
