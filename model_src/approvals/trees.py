"""The booster's raw scores through LightGBM's C API, without ``Booster.predict``'s per-call work.

``Booster.predict`` builds a predictor object, copies its parameters, validates the input and
asks the library how many outputs to expect on every call: about 30 us before a single tree is
walked, more than the trees of a small model cost for one row. :class:`RawTrees` calls the same
library functions ``Booster.predict`` ends in, with the same iteration range and parameters,
so the numbers are the same to the last bit (``tests/approvals/test_trees.py``):
``LGBM_BoosterPredictForMat`` for many rows, and for one row the library's prepared
single-row path (``LGBM_BoosterPredictForMatSingleRowFast``, its configuration parsed once).

Not thread-safe (the single-row configuration holds one row's buffers): one instance per
thread. The serving process scores on its event loop thread only.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm as lgb

PARAMETERS = b"num_threads=1"


class RawTrees:
    """Raw scores (log-odds) of a LightGBM binary booster, as ``predict(raw_score=True)``."""

    def __init__(self, booster: lgb.Booster) -> None:
        """Prepare the single-row configuration once for ``booster``.

        Raises:
            ValueError: the booster is not a single-output model.
        """
        from lightgbm import basic

        if booster.num_model_per_iteration() != 1:
            raise ValueError("RawTrees scores single-output (binary) boosters only")
        self._lib: Any = basic._LIB  # the library Booster.predict calls
        self._check = basic._safe_call
        self._booster = booster  # keeps the handle alive as long as this object
        self._handle = booster._handle
        self._ncol = booster.num_feature()
        # What Booster.predict(num_iteration=None) uses: the best iteration when one was kept.
        self._iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        self._raw = basic._C_API_PREDICT_RAW_SCORE
        self._float64 = basic._C_API_DTYPE_FLOAT64
        self._fast = ctypes.c_void_p()
        self._check(
            self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._handle, ctypes.c_int(self._raw), ctypes.c_int(0),
                ctypes.c_int(self._iterations), ctypes.c_int(self._float64),
                ctypes.c_int32(self._ncol), ctypes.c_char_p(PARAMETERS),
                ctypes.byref(self._fast),
            )
        )  # fmt: skip

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of the rows of ``x`` (features in the booster's order).

        Raises:
            ValueError: ``x`` is not a 2-D matrix with the booster's number of features.
        """
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self._ncol:
            raise ValueError(f"expected a matrix of {self._ncol} features, got shape {x.shape}")
        out = np.empty(len(x), dtype=np.float64)
        if not len(x):
            return out
        written = ctypes.c_int64(0)
        result = out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        if len(x) == 1:
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._fast, x.ctypes.data_as(ctypes.c_void_p), ctypes.byref(written), result
                )
            )
        else:
            self._check(
                self._lib.LGBM_BoosterPredictForMat(
                    self._handle, x.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(self._float64),
                    ctypes.c_int32(len(x)), ctypes.c_int32(self._ncol), ctypes.c_int(1),
                    ctypes.c_int(self._raw), ctypes.c_int(0), ctypes.c_int(self._iterations),
                    ctypes.c_char_p(PARAMETERS), ctypes.byref(written), result,
                )
            )  # fmt: skip
        if written.value != len(x):
            raise RuntimeError(f"LightGBM wrote {written.value} scores for {len(x)} rows")
        return out

    def __del__(self) -> None:
        fast, self._fast = getattr(self, "_fast", None), ctypes.c_void_p()
        if fast:
            self._lib.LGBM_FastConfigFree(fast)
