"""Batch prediction with the features an online system would have had.

Features come from the feature state carried in the model package (outcomes up to the end of
training) plus, optionally, a labelled history whose outcomes were known strictly before each
scored attempt. The history may overlap the scored rows in time (replay): a scored row's own
label never reaches its own features because only strictly earlier outcomes count.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from approvals import features

if TYPE_CHECKING:
    import pandas as pd

    from approvals.model.package import ModelPackage


def usable_history(package: ModelPackage, history: pd.DataFrame | None) -> pd.DataFrame | None:
    """History rows after the package's state ends (earlier ones are already in the state)."""
    if history is None or package.spec.state_end is None:
        return history
    import pandas as pd

    end = pd.Timestamp(package.spec.state_end)
    return history.loc[history["event_time"] > end]


def feature_matrix(
    package: ModelPackage, data: pd.DataFrame, history: pd.DataFrame | None = None
) -> np.ndarray:
    """The model's feature matrix for ``data`` (rows in input order)."""
    state = package.state()
    _warn_if_inside_state(package, data)
    counts = features.counts_for(data, usable_history(package, history), state)
    return features.matrix(counts, features.frame_columns(data), package.spec)


def score(
    package: ModelPackage, data: pd.DataFrame, history: pd.DataFrame | None = None
) -> np.ndarray:
    """Calibrated approval probabilities for every row of ``data``, in input order."""
    if len(data) == 0:
        return np.array([], dtype=float)
    return package.predict(feature_matrix(package, data, history))


def _warn_if_inside_state(package: ModelPackage, data: pd.DataFrame) -> None:
    if package.spec.state_end is None:
        return
    import pandas as pd

    inside = int((data["event_time"] <= pd.Timestamp(package.spec.state_end)).sum())
    if inside:
        print(
            f"warning: {inside} rows are not later than the model's feature state "
            f"({package.spec.state_end}); their features may include outcomes after them",
            file=sys.stderr,
        )


def predictions_frame(data: pd.DataFrame, p: np.ndarray) -> pd.DataFrame:
    """The output table of ``approvals predict``: attempt_id and p_approve, input order."""
    import pandas as pd

    return pd.DataFrame({"attempt_id": data["attempt_id"].to_numpy(), "p_approve": p})
