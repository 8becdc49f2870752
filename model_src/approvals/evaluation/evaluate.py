"""Evaluation: metrics JSON and PNG plots for a model package on labelled attempts.

Attempts are scored exactly as ``approvals predict`` (and so the service) would: features from
the package's state plus the labelled attempts replayed as history, each attempt seeing only
outcomes strictly before it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.atomic import atomic_file
from approvals.decisions.costs import CostConfig, choose_threshold
from approvals.errors import UserError
from approvals.model import metrics, predict

if TYPE_CHECKING:
    import pandas as pd

    from approvals.model.package import ModelPackage

SEGMENTS = ("issuer_country", "card_brand", "route_id", "attempt_number")
TRUTH_COLUMNS = ("p_approve", "p_true", "true_p", "probability", "p")


def read_truth(path: Path, attempt_ids: pd.Series) -> np.ndarray:
    """True approval probabilities aligned to ``attempt_ids`` (Parquet or CSV truth file).

    The file needs ``attempt_id`` and one probability column (``p_approve``, ``p_true``, ...).
    """
    import pandas as pd

    truth = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    column = next((c for c in TRUTH_COLUMNS if c in truth.columns), None)
    if "attempt_id" not in truth.columns or column is None:
        raise UserError(
            f"{path}: truth file needs attempt_id and one of {', '.join(TRUTH_COLUMNS)}"
        )
    mapping = truth.drop_duplicates("attempt_id").set_index("attempt_id")[column]
    aligned = mapping.reindex(attempt_ids.astype(str).to_numpy()).to_numpy(dtype=float)
    missing = int(np.isnan(aligned).sum())
    if missing:
        raise UserError(f"{path}: no true probability for {missing} attempts")
    return aligned


def segment_columns(data: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns metrics are broken down by."""
    return {c: data[c].astype(str).to_numpy() for c in SEGMENTS}


def summary(
    package: ModelPackage, data: pd.DataFrame, history: pd.DataFrame | None
) -> tuple[dict[str, Any], np.ndarray]:
    """Overall and per-segment metrics of a package on labelled data, and its predictions."""
    p = predict.score(package, data, history)
    y = data["approved"].to_numpy().astype(float)
    report = {
        "model_version": package.model_version,
        "rows": len(data),
        "overall": metrics.summarize(y, p),
        "segments": metrics.by_segment(segment_columns(data), y, p),
    }
    return report, p


def retry_decision(
    data: pd.DataFrame, y: np.ndarray, p: np.ndarray, costs: CostConfig, threshold: float | None
) -> dict[str, Any] | None:
    """Precision/recall and value of the retry threshold on this data's retries."""
    retries = data["attempt_number"].to_numpy() > 1
    if threshold is None or retries.sum() == 0:
        return None
    yr, pr = y[retries], p[retries]
    acted = pr >= threshold
    best_here = choose_threshold(
        yr, pr, data["amount"].to_numpy()[retries], data["route_id"].to_numpy()[retries], costs
    )
    hits = float(yr[acted].sum())
    return {
        "threshold": threshold,
        "retries": int(retries.sum()),
        "precision": hits / acted.sum() if acted.sum() else None,
        "recall": hits / yr.sum() if yr.sum() else None,
        "share_retried": float(acted.mean()),
        "best_threshold_on_this_data": best_here.to_dict(),
    }


def evaluate(
    package: ModelPackage,
    data: pd.DataFrame,
    out_dir: Path,
    *,
    truth: Path | None = None,
    history: pd.DataFrame | None = None,
    costs: CostConfig,
) -> dict[str, Any]:
    """Score ``data``, write ``metrics.json`` and plots into ``out_dir``; return the report."""
    report, p = summary(package, data, history)
    y = data["approved"].to_numpy().astype(float)
    if truth is not None:
        oracle = read_truth(truth, data["attempt_id"])
        report["oracle"] = {
            "log_loss": metrics.log_loss(y, oracle),
            "ece": metrics.ece(y, oracle),
            "ratio": metrics.oracle_ratio(y, p, oracle),
        }
    threshold = package.manifest.get("decisions", {}).get("retry_threshold", {}).get("threshold")
    report["retry_decision"] = retry_decision(data, y, p, costs, threshold)
    write_report(report, out_dir, data, y, p, threshold)
    return report


def write_report(
    report: dict[str, Any],
    out_dir: Path,
    data: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    threshold: float | None,
) -> None:
    """metrics.json plus reliability, precision-recall and per-segment PNGs."""
    from approvals.evaluation import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    report["plots"] = {
        "reliability": plots.reliability_diagram(y, p, out_dir / "reliability.png").name,
        "precision_recall": plots.precision_recall_curve(
            y, p, out_dir / "precision_recall.png", threshold=threshold
        ).name,
    }
    for column in ("issuer_country", "route_id", "card_brand"):
        path = out_dir / f"approval_by_{column}.png"
        title = f"Approval rate by {column}: observed vs predicted"
        plots.approval_by_segment(data[column].astype(str).to_numpy(), y, p, path, title)
        report["plots"][f"approval_by_{column}"] = path.name
    write_json(report, out_dir / "metrics.json")


def write_json(obj: Any, path: Path) -> None:
    """Write JSON atomically (:func:`approvals.atomic.atomic_file`); parents are created."""
    text = json.dumps(obj, indent=1, default=_jsonable)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
