"""Evaluation plots as PNG files: reliability, precision-recall, approval by segment.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch),
so the module has no import side effects and is safe in threads. Every file is written through
:func:`approvals.atomic.atomic_file`, so a failure leaves the previous plot intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from approvals.atomic import atomic_file
from approvals.model import metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def figure(width: float = 6.4, height: float = 4.8) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    with atomic_file(target) as tmp:
        fig.savefig(tmp, format="png")
    return target


def reliability_diagram(
    y: npt.ArrayLike, p: npt.ArrayLike, path: str | os.PathLike[str], bins: int = 10
) -> Path:
    """Observed approval rate against mean probability per bin, over a count histogram.

    Returns:
        The path written.
    """
    ya, pa = metrics.as_arrays(y, p)
    table = [r for r in metrics.reliability_table(ya, pa, bins) if r["count"]]
    fig = figure(6.4, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.plot([r["mean_p"] for r in table], [r["rate"] for r in table], "o-", label="model")
    ece = metrics.ece(ya, pa, bins) if ya.size else float("nan")
    top.set(ylabel="observed approval rate", xlim=(0, 1), ylim=(0, 1))
    top.set_title(f"Reliability (n={ya.size:,}, ECE={ece:.4f})")
    top.legend(loc="upper left")
    bottom.hist(pa, bins=np.linspace(0, 1, bins + 1), color="tab:blue", alpha=0.7)
    bottom.set(xlabel="predicted approval probability", ylabel="attempts")
    return save(fig, path)


def _point_at(ya: np.ndarray, pa: np.ndarray, threshold: float) -> tuple[float, float] | None:
    acted = pa >= threshold
    if not acted.any() or not ya.any():
        return None
    return float(ya[acted].sum() / ya.sum()), float(ya[acted].mean())


def precision_recall_curve(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    path: str | os.PathLike[str],
    threshold: float | None = None,
) -> Path:
    """Precision against recall, with the chosen threshold marked when given.

    Returns:
        The path written.
    """
    from sklearn.metrics import precision_recall_curve as pr_curve

    ya, pa = metrics.as_arrays(y, p)
    fig = figure()
    ax = fig.subplots()
    if ya.any():
        precision, recall, _ = pr_curve(ya, pa)
        ap = metrics.json_float(metrics.pr_auc(ya, pa))
        ax.plot(recall, precision, label=f"model (AP={ap if ap is None else round(ap, 4)})")
    ax.axhline(float(ya.mean()) if ya.size else 0.0, color="grey", ls="--", label="base rate")
    point = _point_at(ya, pa, threshold) if threshold is not None else None
    if point is not None:
        ax.plot(*point, "o", color="tab:red", ms=9, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"Precision-recall (n={ya.size:,})")
    ax.legend(loc="lower left")
    return save(fig, path)


def _top_segments(
    values: npt.ArrayLike, ya: np.ndarray, pa: np.ndarray, top_n: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(values, dtype=object).ravel()
    if labels.size != ya.size:
        raise ValueError(f"segment values have {labels.size} rows, expected {ya.size}")
    text = np.array([metrics.MISSING if v is None else str(v) for v in labels], dtype=object)
    names, inverse, counts = np.unique(text, return_inverse=True, return_counts=True)
    keep = np.argsort(-counts, kind="stable")[:top_n]
    observed = np.bincount(inverse, ya, names.size)[keep] / counts[keep]
    predicted = np.bincount(inverse, pa, names.size)[keep] / counts[keep]
    return [str(n) for n in names[keep]], counts[keep], observed, predicted


def approval_by_segment(
    segment_values: npt.ArrayLike,
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    path: str | os.PathLike[str],
    title: str,
    top_n: int = 15,
) -> Path:
    """Observed vs mean predicted approval rate for the ``top_n`` largest segments.

    Returns:
        The path written.
    """
    ya, pa = metrics.as_arrays(y, p)
    names, counts, observed, predicted = _top_segments(segment_values, ya, pa, top_n)
    fig = figure(max(6.4, 0.55 * len(names) + 2), 4.8)
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x - 0.2, observed, width=0.4, label="observed")
    ax.bar(x + 0.2, predicted, width=0.4, label="predicted (mean p)")
    ax.set_xticks(x, [f"{n}\n(n={c:,})" for n, c in zip(names, counts, strict=True)], fontsize=7)
    ax.set(ylabel="approval rate", ylim=(0, 1.05))
    ax.set_title(title)
    ax.legend(loc="lower right")
    return save(fig, path)
