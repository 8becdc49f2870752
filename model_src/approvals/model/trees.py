"""The booster's raw scores through LightGBM's C API, without ``Booster.predict``'s per-call work.

``Booster.predict`` builds a predictor object, copies its parameters, validates the input and
asks the library how many outputs to expect on every call: about 30 us before a single tree is
walked, more than the trees of a small model cost for one row. :class:`RawTrees` calls the same
library functions ``Booster.predict`` ends in, with the same iteration range and parameters,
so the numbers are the same to the last bit (``tests/approvals/model/test_trees.py``):
``LGBM_BoosterPredictForMat`` for many rows, and for one row the library's prepared
single-row path (``LGBM_BoosterPredictForMatSingleRowFast``, its configuration parsed once).

Not thread-safe (the single-row configuration holds one row's buffers): one instance per
thread. The serving process scores on its event loop thread only.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import platform
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm as lgb

PARAMETERS = b"num_threads=1"
log = logging.getLogger("approvals.model.trees")


def feature_matrix(x: np.ndarray, width: int) -> np.ndarray:
    """``x`` as the C-contiguous float64 matrix the tree scorers read.

    Raises:
        ValueError: ``x`` is not a 2-D matrix of ``width`` features.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"expected a matrix of {width} features, got shape {x.shape}")
    return x


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
        x = feature_matrix(x, self._ncol)
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


# Compiled trees (lleaves): built once per model into the bento, checked against the booster.
COMPILED_DIR = "compiled"
TARGET_CPU = "x86-64"  # the baseline x86-64 instruction set: the object runs on any x86-64 node
ZERO_BAND = 1e-34  # LightGBM takes |x| <= kZeroThreshold (1e-35 as float32) as zero
TOLERANCE = 1e-6  # largest difference to Booster.predict's raw score a compiled model may show


def probe_rows(booster: lgb.Booster, rows: int = 2000, seed: int = 0) -> np.ndarray:
    """Feature rows that take every split both ways: thresholds and their neighbours, NaN,
    categories in and out of each split's set."""
    width = booster.num_feature()
    values: list[set[float]] = [{0.0} for _ in range(width)]
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        column, threshold = values[node["split_feature"]], node["threshold"]
        if node.get("decision_type") == "==":
            for code in str(threshold).split("||"):
                column.update({float(code), float(code) + 1})
        else:
            t = float(threshold)
            column.update({t - 1, t + 1})
            if abs(t) > ZERO_BAND:  # LightGBM takes |x| <= 1e-35 as zero; features never are
                column.update({t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)})
        stack.extend([node["left_child"], node["right_child"]])
    rng = np.random.default_rng(seed)
    out = np.empty((rows, width))
    for j, column in enumerate(values):
        out[:, j] = rng.choice(np.array([*sorted(column), np.nan]), size=rows)
    return out


def _largest_difference(model: Any, booster: lgb.Booster, x: np.ndarray) -> float:
    """Largest absolute difference of a compiled model's raw scores to the booster's."""
    return float(np.max(np.abs(model.predict(x, n_jobs=1) - RawTrees(booster)(x))))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_trees(model_dir: Path) -> dict[str, Any]:
    """Compile ``model_dir/booster.txt`` with lleaves into ``model_dir/compiled/``.

    The object targets the baseline x86-64 CPU (portable across nodes) and returns raw scores;
    it is kept only if it matches ``Booster.predict`` within :data:`TOLERANCE` on
    :func:`probe_rows`.

    Returns:
        The metadata written beside the object (versions, target, largest difference).

    Raises:
        ValueError: the compiled model disagrees with the booster (nothing is kept).
    """
    import lightgbm as lgb
    import lleaves
    import llvmlite

    booster_file = model_dir / "booster.txt"
    out = model_dir / COMPILED_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    model = lleaves.Model(model_file=str(booster_file))
    model.compile(
        cache=str(out / "trees.o"), raw_score=True, target_cpu=TARGET_CPU, target_cpu_features=""
    )
    booster = lgb.Booster(model_file=str(booster_file))
    x = probe_rows(booster)
    diff = _largest_difference(model, booster, x)
    if not diff <= TOLERANCE:
        shutil.rmtree(out)
        raise ValueError(f"compiled trees differ from the booster by {diff:.3g} > {TOLERANCE}")
    meta = {
        "booster_sha256": _sha256(booster_file), "machine": platform.machine(),
        "target_cpu": TARGET_CPU, "lleaves": version("lleaves"), "llvmlite": llvmlite.__version__,
        "probe_rows": len(x), "max_abs_diff": diff,
    }  # fmt: skip
    (out / "trees.json").write_text(json.dumps(meta, indent=1))
    return meta


class CompiledTrees:
    """Raw scores from the lleaves-compiled trees of a package (same contract as RawTrees)."""

    def __init__(self, model: Any, width: int, meta: dict[str, Any]) -> None:
        """Wrap a compiled lleaves model of ``width`` features."""
        self._model = model
        self._ncol = width
        self.meta = meta

    @classmethod
    def load(cls, model_dir: Path, booster: lgb.Booster) -> CompiledTrees | None:
        """The package's compiled trees, or None when absent, stale, foreign or wrong.

        Checked before use: the object belongs to this very booster file, this machine's
        architecture and the installed lleaves, and it matches the booster on probe rows.
        """
        meta_file = model_dir / COMPILED_DIR / "trees.json"
        if not meta_file.is_file():
            return None
        try:
            import lleaves

            meta = json.loads(meta_file.read_text())
            fits = (
                meta.get("booster_sha256") == _sha256(model_dir / "booster.txt")
                and meta.get("machine") == platform.machine()
                and meta.get("lleaves") == version("lleaves")
            )
            if not fits:
                log.warning("compiled trees in %s do not fit this model or host", model_dir)
                return None
            model = lleaves.Model(model_file=str(model_dir / "booster.txt"))
            model.compile(cache=str(model_dir / COMPILED_DIR / "trees.o"), raw_score=True)
            diff = _largest_difference(model, booster, probe_rows(booster, rows=500, seed=1))
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            log.warning("compiled trees in %s not used: %s", model_dir, exc)
            return None
        if not diff <= TOLERANCE:
            log.warning("compiled trees in %s differ by %.3g: not used", model_dir, diff)
            return None
        return cls(model, booster.num_feature(), meta)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of the rows of ``x``, as :meth:`RawTrees.__call__`."""
        x = feature_matrix(x, self._ncol)
        if not len(x):
            return np.empty(0, dtype=np.float64)
        return np.asarray(self._model.predict(x, n_jobs=1), dtype=np.float64)
