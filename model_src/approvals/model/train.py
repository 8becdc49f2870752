"""Training: time-based split, point-in-time features, linear stack + LightGBM, calibration.

The data is split by time into train / validation (early stopping) / calibration / test. The
features of every attempt are computed from the outcomes strictly before it, over the whole file
at once, which is what an online system replaying the same stream would have seen.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from approvals import features
from approvals.decisions.costs import CostConfig, choose_threshold, load_costs
from approvals.features.derive import FeatureSpec, categorical_values, feature_columns, fit_vocab
from approvals.model import calibrate, metrics
from approvals.model.package import FORMAT_VERSION, ModelPackage
from approvals.model.reference import REFERENCE_FILE, TrainingReference, build_reference
from approvals.model.stacking import LinearStack, fit_stack

if TYPE_CHECKING:
    import lightgbm as lgb
    import pandas as pd

Progress = Callable[[str], None]


class TrainConfig(BaseModel):
    """Training settings (YAML via ``--config``); every field has a sensible default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_share: float = Field(0.70, gt=0, lt=1)
    valid_share: float = Field(0.10, gt=0, lt=1)
    calib_share: float = Field(0.10, gt=0, lt=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(63, ge=2)
    min_data_in_leaf: int = Field(200, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(5.0, ge=0)
    max_rounds: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    linear_c: float = Field(0.3, gt=0)
    # After early stopping picks the number of rounds on the validation split, train the chosen
    # booster again on train + validation with that many rounds: the model then knows the most
    # recent labelled weeks. Calibration and the test split stay untouched.
    refit: bool = True
    # Linear model under the booster: True, False, or "auto" (both, the lower validation log
    # loss wins; it helps most where latent per-entity effects dominate).
    stack: bool | Literal["auto"] = "auto"
    seed: int = 7
    threads: int = Field(0, ge=0)  # 0: LightGBM's default (all cores)
    memory_limit: str = "4GB"

    @model_validator(mode="after")
    def _shares_leave_a_test_split(self) -> TrainConfig:
        if self.train_share + self.valid_share + self.calib_share >= 1:
            raise ValueError("train_share + valid_share + calib_share must leave a test split")
        return self

    @classmethod
    def load(cls, path: Path | None) -> TrainConfig:
        """Read a YAML config file, or the defaults when ``path`` is None."""
        if path is None:
            return cls()
        return cls.model_validate(yaml.safe_load(path.read_text()) or {})


@dataclass(frozen=True)
class Splits:
    """Row index arrays of the time-ordered splits."""

    train: np.ndarray
    valid: np.ndarray
    calib: np.ndarray
    test: np.ndarray


def time_splits(n: int, config: TrainConfig) -> Splits:
    """Contiguous splits of ``n`` time-ordered rows."""
    edges = np.cumsum([config.train_share, config.valid_share, config.calib_share]) * n
    a, b, c = (round(e) for e in edges)
    idx = np.arange(n)
    return Splits(idx[:a], idx[a:b], idx[b:c], idx[c:])


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of a data frame (row order and values)."""
    import pandas as pd

    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that define the model's behaviour."""
    names = ("lightgbm", "numpy", "scikit-learn", "duckdb", "pandas", "approvals")
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


@dataclass
class TrainResult:
    """A trained package with the data needed to report on it."""

    package: ModelPackage
    state_data: pd.DataFrame
    test: pd.DataFrame
    test_p: np.ndarray
    calib_p: np.ndarray
    calib: pd.DataFrame
    reference: TrainingReference | None = None  # what approvals.monitoring compares with


def build_spec(
    counts: dict[str, np.ndarray], attempts: dict[str, np.ndarray], y: np.ndarray
) -> FeatureSpec:
    """Global prior, vocabularies and feature order from the training rows."""
    vocab = fit_vocab(categorical_values(attempts, counts))
    spec = FeatureSpec(global_rate=float(np.mean(y)), vocab=vocab)
    names = sorted(feature_columns(counts, attempts, spec))
    return FeatureSpec(global_rate=spec.global_rate, vocab=vocab, names=names)


def _take(columns: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in columns.items()}


def fit_booster(
    x: np.ndarray,
    y: np.ndarray,
    init: np.ndarray,
    splits: Splits,
    spec: FeatureSpec,
    config: TrainConfig,
    rounds: int | None = None,
) -> lgb.Booster:
    """LightGBM on the train split, early-stopped on the validation split.

    With ``rounds``: exactly that many rounds on train + validation, no early stopping.
    """
    import lightgbm as lgb

    params: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": config.lambda_l2,
        "cat_smooth": 20.0,
        "min_data_per_group": 100,
        "max_cat_to_onehot": 8,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    if config.threads:
        params["num_threads"] = config.threads

    def dataset(rows: np.ndarray) -> lgb.Dataset:
        return lgb.Dataset(
            x[rows], y[rows], init_score=init[rows], feature_name=spec.names,
            categorical_feature=spec.categorical, free_raw_data=False,
        )  # fmt: skip

    if rounds is not None:
        rows = np.concatenate([splits.train, splits.valid])
        return lgb.train(params, dataset(rows), num_boost_round=rounds)
    train, valid = dataset(splits.train), dataset(splits.valid)
    valid.reference = train
    return lgb.train(
        params, train, num_boost_round=config.max_rounds, valid_sets=[valid],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )  # fmt: skip


def train(
    data: pd.DataFrame,
    config: TrainConfig,
    costs: CostConfig | None = None,
    progress: Progress = lambda _: None,
) -> TrainResult:
    """Train, calibrate and evaluate a package on contract-valid labelled attempts."""
    data = data.sort_values("event_time", kind="stable").reset_index(drop=True)
    splits = time_splits(len(data), config)
    if min(len(splits.train), len(splits.valid), len(splits.calib), len(splits.test)) < 50:
        raise ValueError(f"too few rows to split by time ({len(data)}); need at least 500")
    y = data["approved"].to_numpy().astype(float)
    progress("features: point-in-time counters (DuckDB)")
    counts = features.counts_for(data, data, memory_limit=config.memory_limit)
    attempts = features.frame_columns(data)
    spec = build_spec(_take(counts, splits.train), _take(attempts, splits.train), y[splits.train])
    x = features.matrix(counts, attempts, spec)
    progress("linear stack")
    linear = fit_stack(x[splits.train], y[splits.train], spec.names, c=config.linear_c)
    linear, booster, stacking = fit_stacked(x, y, linear, splits, spec, config, progress)
    init = linear.score(x, spec.names)
    if config.refit:
        rounds = int(booster.best_iteration or booster.current_iteration())
        progress(f"LightGBM refit on train + validation ({rounds} rounds)")
        booster = fit_booster(x, y, init, splits, spec, config, rounds=rounds)
        stacking["refit_rounds"] = rounds
    raw = init + booster.predict(x, raw_score=True)
    progress("calibration")
    calibrator = calibrate.choose(raw[splits.calib], y[splits.calib])
    state_rows = np.concatenate([splits.train, splits.valid, splits.calib])
    state_end = data["event_time"].iloc[state_rows[-1]]
    spec = FeatureSpec(spec.global_rate, spec.vocab, spec.names, state_end.isoformat())
    p = calibrator(raw)
    manifest = _manifest(data, config, booster, calibrator, splits, y, p)
    manifest["stacking"] = stacking
    manifest["decisions"] = retry_threshold_choice(data.iloc[splits.calib], p[splits.calib], costs)
    package = ModelPackage(booster, linear, calibrator, spec, manifest)
    progress("training reference for monitoring (calibration + test splits)")
    reference = build_reference(
        data, x, spec.names, spec.categorical, p,
        np.concatenate([splits.calib, splits.test]), splits.test,
    )  # fmt: skip
    return TrainResult(
        package, data.iloc[state_rows], data.iloc[splits.test].reset_index(drop=True),
        p[splits.test], p[splits.calib], data.iloc[splits.calib].reset_index(drop=True),
        reference,
    )  # fmt: skip


def fit_stacked(
    x: np.ndarray,
    y: np.ndarray,
    linear: LinearStack,
    splits: Splits,
    spec: FeatureSpec,
    config: TrainConfig,
    progress: Progress,
) -> tuple[LinearStack, lgb.Booster, dict[str, Any]]:
    """The booster on top of the linear model, without it, or both ("auto": best on valid)."""
    options = {"stacked": linear, "trees_only": replace(linear, coef=[0.0] * len(linear.coef),
                                                        intercept=0.0)}  # fmt: skip
    if config.stack != "auto":
        options = {k: v for k, v in options.items() if (k == "stacked") == bool(config.stack)}
    fitted, losses = {}, {}
    for name, candidate in options.items():
        progress(f"LightGBM ({name.replace('_', ' ')})")
        init = candidate.score(x, spec.names)
        booster = fit_booster(x, y, init, splits, spec, config)
        valid = init[splits.valid] + booster.predict(x[splits.valid], raw_score=True)
        fitted[name] = (candidate, booster)
        losses[name] = metrics.log_loss(y[splits.valid], calibrate.sigmoid(valid))
    chosen = min(losses, key=losses.__getitem__)
    return *fitted[chosen], {"chosen": chosen, "valid_log_loss": losses}


def retry_threshold_choice(
    calib: pd.DataFrame, p: np.ndarray, costs: CostConfig | None
) -> dict[str, Any]:
    """The value-maximising retry threshold, chosen on the calibration split's retries."""
    costs = costs or load_costs()
    retries = calib["attempt_number"].to_numpy() > 1
    if retries.sum() < 50:
        return {"retry_threshold": None, "reason": "fewer than 50 retries in the calibration split"}
    choice = choose_threshold(
        calib["approved"].to_numpy()[retries].astype(float), p[retries],
        calib["amount"].to_numpy()[retries], calib["route_id"].to_numpy()[retries], costs,
    )  # fmt: skip
    return {"retry_threshold": choice.to_dict(), "costs": costs.model_dump()}


def _manifest(
    data: pd.DataFrame,
    config: TrainConfig,
    booster: lgb.Booster,
    calibrator: calibrate.Calibrator,
    splits: Splits,
    y: np.ndarray,
    p: np.ndarray,
) -> dict[str, Any]:
    created = datetime.now(UTC).replace(microsecond=0)
    data_hash = fingerprint(data)
    times = data["event_time"]
    return {
        "format_version": FORMAT_VERSION,
        "model_version": f"{created:%Y%m%d%H%M%S}-{data_hash[:8]}",
        "created_at": created.isoformat(),
        "training_data_fingerprint": data_hash,
        "training_rows": len(data),
        "time_range": [times.iloc[0].isoformat(), times.iloc[-1].isoformat()],
        "splits": {k: len(v) for k, v in splits.__dict__.items()},
        "best_iteration": int(booster.best_iteration or booster.current_iteration()),
        "calibration": {"method": calibrator.method, "cv_log_loss": calibrator.selection},
        "config": config.model_dump(),
        "library_versions": library_versions(),
        "metrics": {
            "test": metrics.summarize(y[splits.test], p[splits.test]),
            "calibration": metrics.summarize(y[splits.calib], p[splits.calib]),
        },
    }


def save_result(result: TrainResult, out: Path) -> Path:
    """Write the package with its feature state, metrics and model card (atomically)."""
    import json

    from approvals.features.state import build_state
    from approvals.model.package import model_card, save

    state = build_state(
        result.state_data, memory_limit=result.package.manifest["config"]["memory_limit"]
    )
    extras = {
        "metrics.json": json.dumps(result.package.manifest["metrics"], indent=1),
        "MODEL_CARD.md": model_card(result.package.manifest),
    }
    if result.reference is not None:
        extras[REFERENCE_FILE] = result.reference.to_json()
    return save(result.package, out, state, extras)
