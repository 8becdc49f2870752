"""Calibration of the model's raw score into an approval probability.

Three methods compete on the calibration split: none (the logistic link of the raw score),
Platt (a logistic regression on the raw score) and isotonic regression. The one with the lower
cross-validated log loss wins, is refitted on the whole split, and is stored as plain numbers so
the serving image needs numpy only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Method = Literal["none", "platt", "isotonic"]
EPS = 1e-6


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, numerically stable."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Calibrator:
    """Maps raw scores (log-odds) to calibrated probabilities."""

    method: Method
    slope: float = 1.0
    intercept: float = 0.0
    x: list[float] = field(default_factory=list)  # isotonic knots (raw score)
    y: list[float] = field(default_factory=list)  # isotonic values (probability)
    selection: dict[str, float] = field(default_factory=dict)  # CV log loss per method

    def __call__(self, score: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw scores."""
        score = np.asarray(score, dtype=float)
        if self.method == "isotonic":
            p = np.interp(score, self.x, self.y)
        else:
            p = sigmoid(self.slope * score + self.intercept)
        return np.clip(p, EPS, 1 - EPS)

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        """Load from :meth:`to_json` output."""
        raw: dict[str, Any] = json.loads(text)
        return cls(**raw)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit(method: Method, score: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit one calibration method on raw scores and binary outcomes."""
    if method == "none":
        return Calibrator("none")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=200).fit(score.reshape(-1, 1), y)
        return Calibrator("platt", slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS).fit(score, y)
    return Calibrator("isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())


def choose(score: np.ndarray, y: np.ndarray, folds: int = 2, seed: int = 0) -> Calibrator:
    """Pick the method with the best cross-validated log loss, refit on all rows.

    Folds are contiguous blocks in the given (time) order, so the choice reflects how a
    calibrator fitted on the past behaves on what follows.
    """
    y = np.asarray(y, dtype=float)
    blocks = np.array_split(np.arange(len(y)), folds)
    losses: dict[Method, float] = {}
    methods: tuple[Method, ...] = ("none", "platt", "isotonic")
    for method in methods:
        fold_losses = []
        for i, held in enumerate(blocks):
            fit_idx = np.concatenate([b for j, b in enumerate(blocks) if j != i])
            cal = fit(method, score[fit_idx], y[fit_idx])
            fold_losses.append(_log_loss(y[held], cal(score[held])))
        losses[method] = float(np.mean(fold_losses))
    best = min(methods, key=losses.__getitem__)
    chosen = fit(best, score, y)
    return Calibrator(**{**asdict(chosen), "selection": dict(losses)})
